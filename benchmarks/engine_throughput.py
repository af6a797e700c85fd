"""Engine throughput: selftest jobs with zero-second steps.

M jobs of S zero-second steps are posted (in-process, through the
project's JobService) to a private Redis jobboard, then 1, 2 and 4
conductor processes (``--workers 2`` each) are started and timed until
every job is SUCCESS.  Per-step overhead = wall time x conductors /
(M x S) is what persistence, claiming and fencing cost per step.  Run
with SQLite and with MariaDB persistence.

    .venv/bin/python benchmarks/engine_throughput.py [-m 40] [-s 10]
        [--conductors 1 2 4] [--stores sqlite mariadb]
"""

import argparse
import pathlib
import signal
import subprocess
import tempfile
import time

import common

from octavia_workflows import conf as ow_conf
from octavia_workflows import workflow as flows_base
from octavia_workflows.engine import jobboard, jobs, persistence
from owtools import services


def post_jobs(conf_path, count, steps):
    conf = ow_conf.load([conf_path])
    store = persistence.Persistence(ow_conf.persistence_url(conf))
    store.check()
    service = jobs.JobService(conf, store, board_factory=lambda: _board(
        conf))
    workflow = flows_base.get('selftest')
    params = workflow.validate({'steps': str(steps), 'step_seconds': '0'})
    ids = [service.create(workflow, params) for _ in range(count)]
    service.close()
    return store, ids


def _board(conf):
    driver = jobboard.fetch(conf)
    driver.connect()
    return driver


def measure(conf_path, store, ids, conductors, tmp):
    procs = []
    started = time.monotonic()
    for n in range(conductors):
        log = open(tmp / f'c{conductors}-{n}.log', 'wb')
        procs.append((subprocess.Popen(
            [common.BIN, '--config-file', conf_path, 'conductor',
             '--workers', '2', '--name', f'bench{n}'], stdout=log,
            stderr=subprocess.STDOUT), log))
    try:
        while True:
            states = [store.records.get_job(i)['state'] for i in ids]
            if all(s in ('SUCCESS', 'FAILED') for s in states):
                break
            time.sleep(0.2)
        return time.monotonic() - started, states.count('SUCCESS')
    finally:
        for proc, _log in procs:
            proc.send_signal(signal.SIGTERM)
        for proc, log in procs:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                print(f'conductor {proc.pid} ignored SIGTERM for 60 s; '
                      f'killed. Log tail:\n' + '\n'.join(pathlib.Path(
                          log.name).read_text().splitlines()[-15:]))
                proc.kill()
                proc.wait()
            log.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('-m', type=int, default=40, help='jobs')
    parser.add_argument('-s', type=int, default=10, help='steps per job')
    parser.add_argument('--conductors', type=int, nargs='+',
                        default=[1, 2, 4])
    parser.add_argument('--stores', nargs='+', default=['sqlite',
                                                        'mariadb'])
    args = parser.parse_args()
    rows, figures = [], []
    with tempfile.TemporaryDirectory(prefix='ow-engine-') as tmp:
        tmp = pathlib.Path(tmp)
        redis = services.RedisServer(tmp / 'redis').start()
        db = (services.MariaDBServer(tmp / 'mariadb').start()
              if 'mariadb' in args.stores else None)
        try:
            for store_kind in args.stores:
                for conductors in args.conductors:
                    name = f'{store_kind}{conductors}'
                    url = (f'sqlite:///{tmp}/{name}.sqlite'
                           if store_kind == 'sqlite'
                           else db.create_database(name))
                    conf_path = common.write_conf(
                        tmp / f'{name}.conf', task_flow={
                            'persistence_connection': url,
                            'jobboard_enabled': True,
                            'jobboard_backend_driver':
                                'redis_taskflow_driver',
                            'jobboard_backend_hosts': '127.0.0.1',
                            'jobboard_backend_port': redis.port,
                            'jobboard_backend_password': redis.password,
                            'jobboard_backend_namespace': name},
                        conductor={'poll_interval': 0.2})
                    common.cli(conf_path, 'db', 'upgrade')
                    store, ids = post_jobs(conf_path, args.m, args.s)
                    seconds, ok = measure(conf_path, store, ids,
                                          conductors, tmp)
                    store.close()
                    per_step = seconds * conductors / (args.m * args.s)
                    rows.append((store_kind, conductors, args.m, args.s,
                                 f'{seconds:.1f}',
                                 f'{args.m / seconds:.2f}',
                                 f'{per_step * 1000:.0f}', ok))
                    figures.append({
                        'store': store_kind, 'conductors': conductors,
                        'jobs': args.m, 'steps': args.s,
                        'seconds': round(seconds, 2),
                        'jobs_per_second': round(args.m / seconds, 3),
                        'ms_per_step_per_conductor': round(per_step * 1000,
                                                           1),
                        'succeeded': ok})
        finally:
            redis.stop()
            if db is not None:
                db.stop()
    common.table(rows, ('store', 'conductors', 'jobs', 'steps', 'seconds',
                        'jobs/s', 'ms/step', 'ok'))
    common.write_results('engine_throughput', figures)


if __name__ == '__main__':
    main()
