"""Scale: plan (dry-run) of rotate-images over 10,000 load balancers.

Seeds N ACTIVE load balancers with amphorae straight into a private
sandbox's database, tags a new amphora image, then times
``octavia-workflow submit rotate-images --param image_tag=amphora
--dry-run`` and reads its peak RSS (GNU time).  Also times the seeding.

    .venv/bin/python benchmarks/plan_scale.py [--count 10000] [--runs 3]
"""

import argparse
import statistics
import sys
import time

import common

from owtools.sandbox import seed


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--count', type=int, default=10000)
    parser.add_argument('--runs', type=int, default=3)
    args = parser.parse_args()
    with common.sandbox('plan') as (box, _db, tmp):
        started = time.monotonic()
        seed.seed_db(box.db_url, args.count, zones=['az1'])
        seeded = time.monotonic() - started
        print(f'seeded {args.count} load balancers in {seeded:.1f} s')
        conn = box.connect()
        conn.image.create_image(name='amphora-new', disk_format='qcow2',
                                container_format='bare', data=b'new',
                                tags=['amphora'])
        conf = common.write_conf(tmp / 'ow.conf', task_flow={
            'persistence_connection': f'sqlite:///{tmp}/p.sqlite'})
        env = {'OS_CLIENT_CONFIG_FILE': str(box.dir / 'clouds.yaml')}
        rows, times, rsss = [], [], []
        for run in range(1, args.runs + 1):
            proc, seconds, rss = common.cli(
                conf, '--os-cloud', box.cloud_name, 'submit',
                'rotate-images', '--param', 'image_tag=amphora',
                '--dry-run', '-f', 'value', env=env)
            if proc.returncode:
                sys.exit(f'dry-run failed: {proc.stderr.strip()}')
            targets = sum(1 for line in proc.stdout.splitlines()
                          if ' act ' in f' {line} ')
            rows.append((run, f'{seconds:.2f}', f'{rss:.0f}', targets))
            times.append(seconds)
            rsss.append(rss)
        common.table(rows, ('run', 'seconds', 'peak RSS MiB', 'targets'))
        figures = {'load_balancers': args.count,
                   'seed_seconds': round(seeded, 2),
                   'dry_run_seconds_median': round(statistics.median(times),
                                                   2),
                   'dry_run_seconds_max': round(max(times), 2),
                   'peak_rss_mib_max': round(max(rsss), 1),
                   'targets_planned': rows[-1][3]}
        print(f'\ndry-run of {args.count} load balancers: median '
              f'{figures["dry_run_seconds_median"]} s, peak RSS '
              f'{figures["peak_rss_mib_max"]} MiB (limits: 10 s, 400 MB)')
        common.write_results('plan_scale', figures)


if __name__ == '__main__':
    main()
