"""Following a job until it ends: a progress bar or one line per event.

On a terminal: one redrawn line with a bar, done/failed/skipped counts,
the targets in flight and an ETA.  Elsewhere (CI, logs, pipes): one
plain line per change of the job's state or of a target's state.
Ctrl-C stops following, never the job.  Following also stops when the
job waits PAUSED at an approval gate: the gate's message is printed with
the commands that answer it.

Log records (warnings of a foreground run, for one) written to the same
stream while a job is followed come out on lines of their own, never
inside a progress line: on a terminal the bar is cleared, the record
printed and the bar drawn again below it.
"""

import contextlib
import logging
import sys
import threading
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


def self_paused(job):
    """True if the job paused itself (circuit breaker)."""
    return job.get('paused_by') == states.BY_JOB


def stop_lines(job):
    """The approval gate a job waits at, or why it paused itself, and
    the commands that continue or end it."""
    if self_paused(job):
        return [f'the job paused itself: {job["reason"]}',
                f'see "octavia-workflow report {job["id"]}"; continue with '
                f'"octavia-workflow resume {job["id"]}" or end it with '
                f'"octavia-workflow cancel {job["id"]}"']
    if not at_gate(job):
        return []
    return [f'approval needed: {job["gate"]}',
            f'answer with "octavia-workflow approve {job["id"]}" or '
            f'"octavia-workflow reject {job["id"]}"']


def events(previous, job, seen=None, running=None):
    """Plain lines describing what changed between two views.

    :param seen: when ``previous`` is None, a view taken before the run
        started: targets finished in it are not reported again.
    :param running: the targets whose RUNNING line was printed (updated
        here): a target that ends without one (it started and ended
        between two looks, e.g. resumed past an approval) gets its
        RUNNING line first, so every run reads RUNNING then DONE.
    """
    running = set() if running is None else running
    head = []
    if previous is None or previous['state'] != job['state'] or \
            previous['owner'] != job['owner']:
        line = f'job {job["id"]}: {job["state"]}'
        if job['owner'] and job['state'] == states.RUNNING:
            line += f' on {job["owner"]}'
        if job['reason'] and job['state'] != states.RUNNING:
            line += f' ({job["reason"]})'
        head.append(line)
        head.extend(stop_lines(job))
    before = {t['target']: t
              for t in (previous or seen or {}).get('targets', [])}
    total = job['progress']['total']
    finished = sum(1 for t in before.values()
                   if t['state'] in states.TARGET_FINISHED)
    lines = []
    for target in job.get('targets', []):
        old = before.get(target['target'])
        waiting = target.get('waiting')
        if waiting and (old or {}).get('waiting') != waiting:
            # a target held back: maintenance window, fleet budget, lock
            lines.append(f'target {target["target"]}: {waiting}')
        if old is not None and old['state'] == target['state']:
            continue
        if old is None and target['state'] == states.PENDING:
            continue
        line = f'target {target["target"]}: {target["state"]}'
        if target['state'] == states.RUNNING:
            running.add(target['target'])
        elif (target['state'] in (states.DONE, states.FAILED)
              and old is not None
              and target['target'] not in running):
            running.add(target['target'])
            lines.append(f'target {target["target"]}: {states.RUNNING}')
        if target['state'] in states.TARGET_FINISHED:
            finished += 1
            line += f' ({finished}/{total})'
        if target['error']:
            line += f': {target["error"]}'
        lines.append(line)
    if job['state'] in FINAL:
        return lines + head
    return head + lines


class _Output:
    """The follower's stream, shared with the log records written to it.

    One lock orders progress and log writes, so neither ever lands in
    the middle of the other's line.  On a terminal the bar (the last
    line, redrawn in place) is cleared before a record is written and
    drawn again after it.
    """

    def __init__(self, stream):
        self.stream = stream
        self.lock = threading.RLock()
        self.bar = None

    # file-like, for logging handlers
    def write(self, text):
        with self.lock:
            if self.bar is not None:
                self.stream.write('\r\033[K')
            self.stream.write(text)
            if self.bar is not None and text.endswith('\n'):
                self.stream.write(self.bar)
            self.stream.flush()

    def flush(self):
        with self.lock:
            self.stream.flush()

    def line(self, text):
        with self.lock:
            self.end_bar()
            self.stream.write(text + '\n')
            self.stream.flush()

    def draw(self, text):
        with self.lock:
            self.bar = text
            self.stream.write('\r\033[K' + text)
            self.stream.flush()

    def end_bar(self):
        with self.lock:
            if self.bar is not None:
                self.bar = None
                self.stream.write('\n')
                self.stream.flush()

    @contextlib.contextmanager
    def taking_logs(self):
        """Route the root logger's handlers on our stream through us."""
        handlers = [h for h in logging.getLogger().handlers
                    if isinstance(h, logging.StreamHandler)
                    and getattr(h, 'stream', None) is self.stream]
        for handler in handlers:
            handler.setStream(self)
        try:
            yield self
        finally:
            for handler in handlers:
                if handler.stream is self:
                    handler.setStream(self.stream)
            self.end_bar()


def follow(get_view, timeout=None, stream=None, interval=0.5, tty=None,
           until=None, initial=None):
    """Print progress until the job ends or ``timeout`` passes.

    :param get_view: callable returning the job's ``show`` view.
    :param until: optional callable; following also stops once it returns
        True (after printing the last view).
    :param initial: optional view taken before the run started (a
        foreground run): what had finished then is not printed again.
    :returns: the last view, and whether the wait timed out.
    """
    stream = stream or sys.stderr
    tty = stream.isatty() if tty is None else tty
    deadline = None if timeout is None else time.monotonic() + timeout
    previous = None
    started = None
    running = set()
    with _Output(stream).taking_logs() as out:
        try:
            while True:
                # Asked before the look, so the last view is taken after
                # the run ended.
                ended = until is not None and until()
                job = get_view()
                now = time.monotonic()
                if started is None and job['state'] == states.RUNNING:
                    started = now
                if tty:
                    out.draw(bar_line(job, _eta(job, started, now)))
                else:
                    for line in events(previous, job, seen=initial,
                                       running=running):
                        out.line(line)
                previous = job
                if (job['state'] in FINAL or at_gate(job)
                        or self_paused(job) or ended):
                    if tty:
                        for line in stop_lines(job):
                            out.line(line)
                    break
                if deadline is not None and now >= deadline:
                    return job, True
                time.sleep(interval)
        except KeyboardInterrupt:
            out.line('stopped waiting; the job carries on')
            raise
    return previous, False
