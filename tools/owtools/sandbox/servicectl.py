"""Stop and start a sandbox's Octavia services, like ``systemctl`` would.

For the cold-upgrade runbook's tests: its service command templates call
this instead of ``systemctl``::

    python -m owtools.sandbox.servicectl --dir SANDBOX_DIR --log FILE \\
        stop|start SERVICE [--host HOST] [--fail-once FILE]

- ``api`` and ``worker`` are the sandbox's own processes: ``stop`` ends
  the recorded PID (only if it is still that process) and ``start``
  spawns it again with the same command line and records the new PID in
  the sandbox's state file, so ``tools/sandbox stop`` and the test
  fixtures stop it later.  ``start worker`` returns once the worker
  consumes its RPC queue.  Both are idempotent (stop of a stopped
  service, start of a running one: nothing to do, exit 0);
- ``housekeeping`` and ``health-manager`` are not run by the sandbox:
  the call is only logged;
- every call appends ``<verb> <service> <host>`` to ``--log``, so tests
  can check the order;
- ``--fail-once FILE``: if FILE exists and holds ``<verb> <service>``,
  delete it and fail (exit 1) without doing anything: failure injection.
"""

import argparse
import sys
import time

from owtools.sandbox import core, procs

SANDBOX_SERVICES = ('api', 'worker')
KNOWN = SANDBOX_SERVICES + ('housekeeping', 'health-manager')


def _argv(box, service):
    conf = str(box.conf_path)
    if service == 'worker':
        return [box._bin('octavia-worker'), '--config-file', conf,
                '--log-file', str(box.log_dir / 'worker.log')]
    return [sys.executable, '-m', 'owtools.sandbox.apiserver',
            '--config-file', conf, '--log-file', str(box.log_dir /
                                                     'api.log')]


def stop(box, service):
    box.state = box._load_state() or box.state
    pid = box.state.get('pids', {}).get(service)
    started = box.state.get('starts', {}).get(service)
    if pid and procs.is_same(pid, started):
        procs.stop_pids({pid: started})
    box.state.get('pids', {}).pop(service, None)
    box.state.get('starts', {}).pop(service, None)
    (box.run_dir / f'{service}.pid').unlink(missing_ok=True)
    box._save_state()


def start(box, service, timeout=60.0):
    box.state = box._load_state() or box.state
    if box._alive(service):
        return
    box.state.setdefault('pids', {})
    box.state.setdefault('starts', {})
    box._spawn(service, _argv(box, service))
    box._save_state()
    if service != 'worker':
        return
    deadline = time.monotonic() + timeout
    while not box.worker_consuming():
        if not procs.alive(box.state['pids']['worker']):
            raise SystemExit('worker exited during start-up; see '
                             f'{box.log_dir}')
        if time.monotonic() > deadline:
            raise SystemExit('worker does not consume its queue')
        time.sleep(0.2)


def main(argv=None):
    parser = argparse.ArgumentParser(prog='servicectl')
    parser.add_argument('--dir', required=True, help='sandbox directory')
    parser.add_argument('--log', help='append "<verb> <service> <host>"')
    parser.add_argument('--host', default='-')
    parser.add_argument('--fail-once', metavar='FILE')
    parser.add_argument('verb', choices=('stop', 'start'))
    parser.add_argument('service', choices=KNOWN)
    args = parser.parse_args(argv)
    if args.log:
        with open(args.log, 'a', encoding='utf-8') as handle:
            handle.write(f'{args.verb} {args.service} {args.host}\n')
    if args.fail_once:
        from pathlib import Path

        marker = Path(args.fail_once)
        if marker.exists() and marker.read_text().strip() == \
                f'{args.verb} {args.service}':
            marker.unlink()
            print(f'injected failure: {args.verb} {args.service}')
            return 1
    if args.service not in SANDBOX_SERVICES:
        print(f'{args.service}: not run by the sandbox; nothing to do')
        return 0
    box = core.Sandbox(directory=args.dir)
    box.name = box.state.get('name', box.name)
    if args.verb == 'stop':
        stop(box, args.service)
    else:
        start(box, args.service)
    print(f'{args.verb} {args.service}: done')
    return 0


if __name__ == '__main__':
    sys.exit(main())
