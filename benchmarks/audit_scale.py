"""Scale: ``octavia-workflow audit`` of 10,000 load balancers.

Seeds N ACTIVE load balancers with amphorae straight into a private
sandbox's database (as the plan benchmark does), on an amphora image
that a newer tagged image then supersedes, then times
``octavia-workflow audit -f json`` and reads its peak RSS and CPU time
(GNU time): the CPU time is the audit's own work, the rest of the wall
time is Octavia's API paging through the listings.

    .venv/bin/python benchmarks/audit_scale.py [--count 10000] [--runs 3]

Targets (issue: fleet audit): under 10 s and 300 MB.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import common

from owtools.sandbox import seed
from owtools.standin import StandinState


def audit(conf, cloud, env):
    """Run ``audit -f json``; returns (CompletedProcess, wall seconds,
    peak RSS MiB, CPU seconds of the audit process itself)."""
    cmd = ['/usr/bin/time', '-f', '%M %U %S', common.BIN, '--config-file',
           conf, '--os-cloud', cloud, 'audit', '-f', 'json']
    started = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3600,
                          env=dict(os.environ, **env))
    seconds = time.monotonic() - started
    rss, user, system = proc.stderr.strip().splitlines()[-1].split()
    return proc, seconds, int(rss) / 1024, float(user) + float(system)


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
        rows, times, cpus, rsss, plans = [], [], [], [], []
        for run in range(1, args.runs + 1):
            proc, seconds, rss, cpu = audit(conf, box.cloud_name, env)
            if proc.returncode:
                sys.exit(f'audit failed: {proc.stderr.strip()}')
            # The same two listings, planned by rotate-images: what the
            # API paging alone costs on this machine at this moment.
            plan, plan_seconds, _ = common.cli(
                conf, '--os-cloud', box.cloud_name, 'submit',
                'rotate-images', '--param', 'image_tag=amphora',
                '--dry-run', '-f', 'value', env=env)
            if plan.returncode:
                sys.exit(f'dry-run failed: {plan.stderr.strip()}')
            plans.append(plan_seconds)
            doc = json.loads(proc.stdout)
            stale = doc['images']['load_balancers_not_newest']
            rows.append((run, f'{seconds:.2f}', f'{cpu:.2f}', f'{rss:.0f}',
                         doc['load_balancers']['total'], stale))
            times.append(seconds)
            cpus.append(cpu)
            rsss.append(rss)
        common.table(rows, ('run', 'seconds', 'CLI CPU s', 'peak RSS MiB',
                            'load balancers', 'not on newest'))
        print(f'reference: rotate-images --dry-run over the same fleet, '
              f'run after each audit: {", ".join(f"{p:.2f}" for p in plans)}'
              f' s')
        figures = {'load_balancers': args.count,
                   'plan_dry_run_seconds_median': round(
                       statistics.median(plans), 2),
                   'seed_seconds': round(seeded, 2),
                   'audit_seconds_median': round(statistics.median(times),
                                                 2),
                   'audit_seconds_max': round(max(times), 2),
                   'cli_cpu_seconds_median': round(statistics.median(cpus),
                                                   2),
                   'peak_rss_mib_max': round(max(rsss), 1),
                   'load_average_1min': round(os.getloadavg()[0], 1),
                   'load_balancers_counted': rows[-1][3]}
        print(f'\naudit of {args.count} load balancers: median '
              f'{figures["audit_seconds_median"]} s, peak RSS '
              f'{figures["peak_rss_mib_max"]} MiB (targets: 10 s, 300 MB); '
              f'the audit process itself used '
              f'{figures["cli_cpu_seconds_median"]} CPU s, the rest is the '
              f'API paging (load average {figures["load_average_1min"]})')
        common.write_results('audit_scale', figures)


if __name__ == '__main__':
    main()
