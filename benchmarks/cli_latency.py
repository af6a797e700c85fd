"""CLI latency: ``--help``, ``flows``, and ``list`` with 1,000 jobs.

Each command runs ``--runs`` times as a fresh process (what an operator
or a shell loop pays); the store is an SQLite file filled with N finished
jobs of 10 targets each through the project's own record layer.

    .venv/bin/python benchmarks/cli_latency.py [--jobs 1000] [--runs 10]
"""

import argparse
import pathlib
import statistics
import tempfile
import uuid

import common

from octavia_workflows.engine import persistence


def fill(url, count):
    store = persistence.Persistence(url)
    try:
        store.check()
        records = store.records
        for n in range(count):
            job_id = str(uuid.uuid4())
            records.create_job(job_id, 'selftest', {'steps': 10}, 'inline')
            records.save_plan(job_id, [
                {'target': f'step-{i}', 'action': 'step',
                 'details': {'step': i}} for i in range(1, 11)], [])
            records.transition(job_id, 'RUNNING')
            records.transition(job_id, 'SUCCESS' if n % 10 else 'FAILED')
    finally:
        store.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--jobs', type=int, default=1000)
    parser.add_argument('--runs', type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix='ow-cli-') as tmp:
        tmp = pathlib.Path(tmp)
        url = f'sqlite:///{tmp}/p.sqlite'
        fill(url, args.jobs)
        conf = common.write_conf(tmp / 'ow.conf', task_flow={
            'persistence_connection': url})
        commands = {'--help': ['--help'], 'flows': ['flows', '-f', 'value'],
                    f'list --all ({args.jobs} jobs)':
                        ['list', '--all', '-f', 'value'],
                    'list (unfinished only)': ['list', '-f', 'value']}
        rows, figures = [], {}
        for label, argv in commands.items():
            times, rss = [], []
            for _ in range(args.runs):
                proc, seconds, peak = common.cli(conf, *argv)
                if proc.returncode:
                    raise SystemExit(f'{label}: {proc.stderr.strip()}')
                times.append(seconds)
                rss.append(peak)
            lines = len(proc.stdout.splitlines())
            figures[label] = {
                'median_seconds': round(statistics.median(times), 3),
                'max_seconds': round(max(times), 3),
                'peak_rss_mib': round(max(rss), 1), 'lines': lines}
            rows.append((label, f'{statistics.median(times):.3f}',
                         f'{max(times):.3f}', f'{max(rss):.0f}', lines))
    common.table(rows, ('command', 'median s', 'max s', 'RSS MiB',
                        'lines'))
    common.write_results('cli_latency', {'jobs': args.jobs,
                                         'runs': args.runs,
                                         'commands': figures})


if __name__ == '__main__':
    main()
