"""Resume latency: SIGKILL the owning conductor, time until the next step.

Two conductors share a private Redis or ZooKeeper jobboard and an SQLite
store; a ``selftest`` job (0.2 s steps, ``record_to``) runs on one of
them.  At a random moment the owner is killed with SIGKILL; the figure is
the time from the kill until the other conductor starts a step (the
first new ``record_to`` line, minus the step's own 0.2 s).  Expected:
about ``jobboard_expiration_time`` (the claim's remaining life) plus the
poll interval.

    .venv/bin/python benchmarks/resume_latency.py [-r 20] [--expiry 10]
        [--boards redis zookeeper]
"""

import argparse
import pathlib
import random
import signal
import statistics
import subprocess
import tempfile
import time

import common

from owtools import services

STEP = 0.2


def _lines(path):
    try:
        return path.read_text().splitlines()
    except FileNotFoundError:
        return []


def one_run(conf, tmp, run):
    record = tmp / f'steps-{run}.txt'
    procs = {}
    for name in ('alpha', 'beta'):
        log = open(tmp / f'{name}-{run}.log', 'wb')
        procs[name] = (subprocess.Popen(
            [common.BIN, '--config-file', conf, 'conductor', '--name',
             name], stdout=log, stderr=subprocess.STDOUT), log)
    try:
        proc, _, _ = common.cli(conf, 'submit', 'selftest', '--param',
                                'steps=400', '--param',
                                f'step_seconds={STEP}', '--param',
                                f'record_to={record}', '-f', 'value', '-c',
                                'id')
        job_id = proc.stdout.strip()
        while len(_lines(record)) < 3:
            time.sleep(0.02)
        time.sleep(random.uniform(0, STEP))
        owner = None
        for name in procs:
            text = (tmp / f'{name}-{run}.log').read_text(errors='replace')
            if f'job {job_id}: claimed by' in text:
                owner = name
        victim = procs[owner][0]
        seen = len(_lines(record))
        victim.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        victim.wait()
        seen = max(seen, len(_lines(record)))
        deadline = killed + 120
        while len(_lines(record)) <= seen and time.monotonic() < deadline:
            time.sleep(0.01)
        return time.monotonic() - killed - STEP
    finally:
        for proc, log in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
            proc.wait()
            log.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('-r', '--runs', type=int, default=20)
    parser.add_argument('--expiry', type=int, default=10)
    parser.add_argument('--boards', nargs='+',
                        default=['redis', 'zookeeper'])
    args = parser.parse_args()
    rows, figures = [], {}
    for board in args.boards:
        with tempfile.TemporaryDirectory(prefix='ow-resume-') as tmp:
            tmp = pathlib.Path(tmp)
            cls = services.SERVICES[board]
            server = cls(tmp / board).start()
            try:
                task_flow = {
                    'persistence_connection': f'sqlite:///{tmp}/p.sqlite',
                    'jobboard_enabled': True,
                    'jobboard_backend_driver': f'{board}_taskflow_driver',
                    'jobboard_backend_hosts': '127.0.0.1',
                    'jobboard_backend_port': server.port,
                    'jobboard_expiration_time': args.expiry}
                if board == 'redis':
                    task_flow['jobboard_backend_password'] = server.password
                conf = common.write_conf(tmp / 'ow.conf',
                                         task_flow=task_flow,
                                         conductor={'poll_interval': 0.5})
                common.cli(conf, 'db', 'upgrade')
                samples = [one_run(conf, tmp, run)
                           for run in range(args.runs)]
            finally:
                server.stop()
        figures[board] = {
            'expiry': args.expiry, 'runs': args.runs,
            'median_seconds': round(statistics.median(samples), 2),
            'max_seconds': round(max(samples), 2),
            'min_seconds': round(min(samples), 2)}
        rows.append((board, args.expiry, args.runs,
                     f'{statistics.median(samples):.2f}',
                     f'{min(samples):.2f}', f'{max(samples):.2f}'))
    common.table(rows, ('board', 'expiry s', 'runs', 'median s', 'min s',
                        'max s'))
    common.write_results('resume_latency', figures)


if __name__ == '__main__':
    main()
