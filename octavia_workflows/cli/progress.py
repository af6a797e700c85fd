"""Following a job until it ends: a progress bar or one line per event.

On a terminal: one redrawn line with a bar, done/failed/skipped counts,
the targets in flight and an ETA.  Elsewhere (CI, logs, pipes): one
plain line per change of the job's state or of a target's state.
Ctrl-C stops following, never the job.  Following also stops when the
job waits PAUSED at an approval gate: the gate's message is printed with
the commands that answer it.
"""

import sys
import time

from octavia_workflows import states

FINAL = states.FINISHED


def _eta(job, started, now):
    progress = job['progress']
    finished = progress['done'] + progress['failed'] + progress['skipped']
    left = progress['total'] - finished
    if not finished or left <= 0 or started is None:
        return None
    return (now - started) / finished * left


def _fmt_seconds(seconds):
    seconds = int(seconds)
    return f'{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}'


def bar_line(job, eta, width=24):
    """The terminal status line for ``job`` (a ``show`` view)."""
    progress = job['progress']
    total = progress['total'] or 1
    finished = progress['done'] + progress['failed'] + progress['skipped']
    filled = int(width * finished / total)
    running = [t['target'] for t in job.get('targets', [])
               if t['state'] == states.RUNNING]
    parts = [f'[{"#" * filled}{"-" * (width - filled)}]',
             f'{finished}/{progress["total"]}',
             f'done {progress["done"]} failed {progress["failed"]} '
             f'skipped {progress["skipped"]}', job['state']]
    if running:
        shown = ', '.join(running[:3]) + (' ...' if len(running) > 3 else '')
        parts.append(f'now: {shown}')
    if eta is not None and job['state'] == states.RUNNING:
        parts.append(f'ETA {_fmt_seconds(eta)}')
    if at_gate(job):
        parts.append(f'approval needed: {job["gate"]}')
    return ' | '.join(parts)


def at_gate(job):
    """True if the job waits PAUSED at an approval gate."""
    return job['state'] == states.PAUSED and bool(job.get('gate'))


def events(previous, job):
    """Plain lines describing what changed between two views."""
    head = []
    if previous is None or previous['state'] != job['state'] or \
            previous['owner'] != job['owner']:
        line = f'job {job["id"]}: {job["state"]}'
        if job['owner'] and job['state'] == states.RUNNING:
            line += f' on {job["owner"]}'
        if job['reason'] and job['state'] != states.RUNNING:
            line += f' ({job["reason"]})'
        head.append(line)
        if at_gate(job):
            head.append(f'approval needed: {job["gate"]}')
            head.append(f'answer with "octavia-workflow approve '
                        f'{job["id"]}" or "octavia-workflow reject '
                        f'{job["id"]}"')
    before = {t['target']: t for t in (previous or {}).get('targets', [])}
    total = job['progress']['total']
    finished = sum(1 for t in before.values()
                   if t['state'] in states.TARGET_FINISHED)
    lines = []
    for target in job.get('targets', []):
        old = before.get(target['target'])
        if old is not None and old['state'] == target['state']:
            continue
        if old is None and target['state'] == states.PENDING:
            continue
        line = f'target {target["target"]}: {target["state"]}'
        if target['state'] in states.TARGET_FINISHED:
            finished += 1
            line += f' ({finished}/{total})'
        if target['error']:
            line += f': {target["error"]}'
        lines.append(line)
    if job['state'] in FINAL:
        return lines + head
    return head + lines


def follow(get_view, timeout=None, stream=None, interval=0.5, tty=None,
           until=None):
    """Print progress until the job ends or ``timeout`` passes.

    :param get_view: callable returning the job's ``show`` view.
    :param until: optional callable; following also stops once it returns
        True (after printing the last view).
    :returns: the last view, and whether the wait timed out.
    """
    stream = stream or sys.stderr
    tty = stream.isatty() if tty is None else tty
    deadline = None if timeout is None else time.monotonic() + timeout
    previous = None
    started = None
    try:
        while True:
            job = get_view()
            now = time.monotonic()
            if started is None and job['state'] == states.RUNNING:
                started = now
            if tty:
                stream.write('\r\033[K' + bar_line(job, _eta(job, started,
                                                            now)))
            else:
                for line in events(previous, job):
                    stream.write(line + '\n')
            stream.flush()
            previous = job
            if job['state'] in FINAL or at_gate(job) or (
                    until is not None and until()):
                break
            if deadline is not None and now >= deadline:
                if tty:
                    stream.write('\n')
                return job, True
            time.sleep(interval)
    except KeyboardInterrupt:
        if tty:
            stream.write('\n')
        stream.write('stopped waiting; the job carries on\n')
        raise
    if tty:
        stream.write('\n')
    return previous, False
