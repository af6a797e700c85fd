"""Scale: ``octavia-workflow audit`` of 10,000 load balancers.

Seeds N ACTIVE load balancers with amphorae straight into a private
sandbox's database (as the plan benchmark does), on an amphora image
that a newer tagged image then supersedes, then times
``octavia-workflow audit -f json`` and reads its peak RSS (GNU time).

    .venv/bin/python benchmarks/audit_scale.py [--count 10000] [--runs 3]

Targets (issue: fleet audit): under 10 s and 300 MB.
"""

import argparse
import json
import statistics
import sys
import time

import common

from owtools.sandbox import seed
from owtools.standin import StandinState


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--count', type=int, default=10000)
    parser.add_argument('--runs', type=int, default=3)
    args = parser.parse_args()
    with common.sandbox('audit') as (box, _db, tmp):
        images = StandinState(str(box.dir / 'standin.db'))
        old = images.create_image('amphora-old', tags=['amphora'])['id']
        started = time.monotonic()
        seed.seed_db(box.db_url, args.count, zones=['az1'], image_id=old)
        seeded = time.monotonic() - started
        print(f'seeded {args.count} load balancers in {seeded:.1f} s')
        images.create_image('amphora-new', tags=['amphora'])
        conf = common.write_conf(tmp / 'ow.conf', task_flow={
            'persistence_connection': f'sqlite:///{tmp}/p.sqlite'})
        env = {'OS_CLIENT_CONFIG_FILE': str(box.dir / 'clouds.yaml')}
        rows, times, rsss = [], [], []
        for run in range(1, args.runs + 1):
            proc, seconds, rss = common.cli(
                conf, '--os-cloud', box.cloud_name, 'audit', '-f', 'json',
                env=env)
            if proc.returncode:
                sys.exit(f'audit failed: {proc.stderr.strip()}')
            doc = json.loads(proc.stdout)
            stale = doc['images']['load_balancers_not_newest']
            rows.append((run, f'{seconds:.2f}', f'{rss:.0f}',
                         doc['load_balancers']['total'], stale))
            times.append(seconds)
            rsss.append(rss)
        common.table(rows, ('run', 'seconds', 'peak RSS MiB',
                            'load balancers', 'not on newest'))
        figures = {'load_balancers': args.count,
                   'seed_seconds': round(seeded, 2),
                   'audit_seconds_median': round(statistics.median(times),
                                                 2),
                   'audit_seconds_max': round(max(times), 2),
                   'peak_rss_mib_max': round(max(rsss), 1),
                   'load_balancers_counted': rows[-1][3]}
        print(f'\naudit of {args.count} load balancers: median '
              f'{figures["audit_seconds_median"]} s, peak RSS '
              f'{figures["peak_rss_mib_max"]} MiB (targets: 10 s, 300 MB)')
        common.write_results('audit_scale', figures)


if __name__ == '__main__':
    main()
