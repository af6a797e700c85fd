"""Scale: rotate-images over 10,000 load balancers through one conductor.

For each size N (default 1,000 and 10,000), on a fresh private sandbox
started with zero-second failovers (``fast_failovers``: the worker
finishes each load-balancer failover in Octavia's database at once, see
``owtools.sandbox.fastfailover``; the Octavia API, MariaDB, RabbitMQ,
openstacksdk, the conductor and ``rotate-images`` are the real ones; the
sandbox's health manager is off):

- N ACTIVE SINGLE load balancers with one amphora each are seeded into
  Octavia's database (as ``plan_scale.py`` does: no listeners), and a new
  image tagged ``amphora`` replaces the old one's tag;
- one conductor (Redis jobboard; MariaDB persistence on the sandbox's
  MariaDB server, or ``--store sqlite``; under ``/usr/bin/time`` for its
  peak RSS and CPU) runs ``rotate-images image_tag=amphora
  concurrency=C health_settle=0 max_failures=0`` (``interval`` stays 0:
  no pacing; the seeded load balancers have no listeners, so no health
  settle either way).

Printed per size: the plan (the conductor's claim to its "plan frozen"
log line: Octavia API paging), the time from the first target's start
to the last target's end (from the targets' own records), seconds per
target, the conductor's peak RSS, its RSS and CPU over that span and the
CPU of the API, worker, MariaDB and RabbitMQ per target, the persistence
rows and bytes per target, failovers counted in Octavia's database, and
how long ``show -f json``, ``report -f json`` and ``list --all`` take on
the finished job, and the machine's mean 1-minute load over the span
(other work on the machine shows in the times, far less in the CPU
figures).  Then the ratio of the time per target at the largest
size to that at the smallest (flat bookkeeping: near 1).

    .venv/bin/python benchmarks/rotate_scale.py [--sizes 1000 10000]
        [--concurrency 8] [--store mariadb|sqlite]
"""

import argparse
import contextlib
import datetime
import json
import os
import pathlib
import re
import signal
import subprocess
import tempfile
import threading
import time

import common
from rotation_overhead import stored_per_job
import sqlalchemy as sa

from owtools import services
from owtools.sandbox import Sandbox, seed

TICK = os.sysconf('SC_CLK_TCK')
LIMIT_RSS_MIB = 300 * 1000 * 1000 / 2 ** 20
LIMIT_RATIO = 1.2


@contextlib.contextmanager
def fast_sandbox(tmp):
    """A private sandbox with zero-second failovers and no health
    manager, Octavia's debug logging off."""
    os.environ['OW_SANDBOX_HEALTH'] = 'off'
    db = services.MariaDBServer(tmp / 'mariadb').start()
    box = Sandbox('rotscale', directory=tmp / 'sandbox')
    try:
        box.start(db_url=db.create_database('octavia'), user_clouds=False,
                  fast_failovers=True, debug=False)
        yield box, db
    finally:
        box.stop(quiet=True)
        db.stop()


def _tree(pid):
    """``pid`` and its descendants."""
    pids, todo = [], [pid]
    while todo:
        current = todo.pop()
        pids.append(current)
        for task in pathlib.Path(f'/proc/{current}/task').glob('*'):
            with contextlib.suppress(OSError, ValueError):
                todo += [int(p) for p in
                         (task / 'children').read_text().split()]
    return pids


def cpu_seconds(pid):
    """User + system CPU seconds of ``pid`` and its descendants."""
    total = 0
    for each in _tree(pid):
        with contextlib.suppress(OSError, IndexError):
            fields = pathlib.Path(f'/proc/{each}/stat').read_text() \
                .rsplit(')', 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / TICK


def rss_mib(pid):
    with contextlib.suppress(OSError):
        for line in pathlib.Path(f'/proc/{pid}/status').read_text() \
                .splitlines():
            if line.startswith('VmRSS:'):
                return int(line.split()[1]) / 1024
    return None


class Sampler(threading.Thread):
    """CPU of some processes, the conductor's RSS and the machine's
    load (1-minute average) every 0.25 s."""

    def __init__(self, pids, conductor):
        super().__init__(daemon=True)
        self.pids, self.conductor = pids, conductor
        self.samples = []
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            cpu = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
            self.samples.append((time.time(), cpu, rss_mib(self.conductor),
                                 os.getloadavg()[0]))
            self.stop.wait(0.25)

    def at(self, when):
        """The sample nearest to ``when`` (epoch)."""
        return min(self.samples, key=lambda s: abs(s[0] - when))

    def load(self, first, last):
        """(mean, max) of the 1-minute load between two epochs."""
        loads = [s[3] for s in self.samples if first <= s[0] <= last]
        if not loads:
            return None, None
        return round(sum(loads) / len(loads), 2), round(max(loads), 2)


def _conductor_pid(proc):
    """The conductor process under /usr/bin/time."""
    children = pathlib.Path(f'/proc/{proc.pid}/task/{proc.pid}/children')
    for _ in range(100):
        with contextlib.suppress(OSError, ValueError):
            pids = children.read_text().split()
            if pids:
                return int(pids[0])
        time.sleep(0.05)
    raise SystemExit('the conductor did not start')


def _log_time(log, pattern):
    """Epoch of the first conductor log line matching ``pattern``."""
    for line in log.read_text(errors='replace').splitlines():
        if re.search(pattern, line):
            stamp = datetime.datetime.strptime(line[:23],
                                               '%Y-%m-%d %H:%M:%S,%f')
            return stamp.timestamp()
    return None


def _span(engine, job_id):
    """Targets by state, first start, last end, median target seconds."""
    query = sa.text('SELECT state, details, finished_at FROM ow_targets '
                    'WHERE job_id = :id')
    by_state, starts, ends, durations = {}, [], [], []
    with engine.connect() as db:
        for state, details, finished_at in db.execute(query,
                                                      {'id': job_id}):
            by_state[state] = by_state.get(state, 0) + 1
            d = json.loads(details) if isinstance(details, str) else details
            if d.get('started'):
                starts.append(d['started'])
            end = d.get('verified')
            if end is None and finished_at is not None:
                end = finished_at.replace(
                    tzinfo=datetime.timezone.utc).timestamp()
            if end is not None:
                ends.append(end)
            if d.get('started') and d.get('verified'):
                durations.append(d['verified'] - d['started'])
    durations.sort()
    median = durations[len(durations) // 2] if durations else None
    return by_state, min(starts), max(ends), median


def run_size(size, concurrency, store):
    with tempfile.TemporaryDirectory(prefix='ow-rotscale-') as tmp:
        tmp = pathlib.Path(tmp)
        with fast_sandbox(tmp) as (box, db):
            return _run(box, db, tmp, size, concurrency, store)


def _run(box, db, tmp, size, concurrency, store):
    started = time.monotonic()
    lb_ids = seed.seed_db(box.db_url, size, zones=['az1'])
    seeded = time.monotonic() - started
    conn = box.connect()
    for image in conn.image.images(tag='amphora'):
        conn.image.remove_tag(image, 'amphora')
    conn.image.create_image(name='amphora-new', disk_format='qcow2',
                            container_format='bare', data=b'new',
                            tags=['amphora'])
    redis = services.RedisServer(tmp / 'redis').start()
    try:
        persistence = (db.create_database('ow') if store == 'mariadb'
                       else f'sqlite:///{tmp}/p.sqlite')
        conf = common.board_conf(tmp / 'ow.conf', redis, persistence)
        env = {'OS_CLIENT_CONFIG_FILE': str(box.clouds_yaml)}
        common.cli(conf, 'db', 'upgrade', env=env)
        engine = sa.create_engine(persistence)
        try:
            result = _rotate(box, db, redis, tmp, conf, env, engine, size,
                             concurrency)
            result.update(seed_seconds=round(seeded, 2), store=store)
            done = box.accounting().failovers_by_lb(lb_ids)
            result['failed_over_once'] = sum(1 for n in done.values()
                                             if n == 1)
            result['failed_over_other'] = size - result['failed_over_once']
            for name, args in (('show_s', ('show', result['job'], '-f',
                                            'json')),
                               ('report_json_s', ('report', result['job'],
                                                  '-f', 'json')),
                               ('list_s', ('list', '--all'))):
                proc, seconds, _ = common.cli(conf, *args, env=env)
                result[name] = (round(seconds, 2) if proc.returncode == 0
                                else None)
            return result
        finally:
            engine.dispose()
    finally:
        redis.stop()


def _rotate(box, db, redis, tmp, conf, env, engine, size, concurrency):
    log_path = tmp / 'conductor.log'
    log = open(log_path, 'wb')
    usage = tmp / 'conductor.time'
    proc = subprocess.Popen(
        ['/usr/bin/time', '-f', '%M %U %S', '-o', str(usage), common.BIN,
         '--config-file', conf, 'conductor', '--workers', '1', '--name',
         'scale'], stdout=log, stderr=subprocess.STDOUT,
        env=dict(os.environ, **env))
    pid = _conductor_pid(proc)
    pids = {'conductor': pid, 'api': box.pids()['api'],
            'worker': box.pids()['worker'], 'mariadb': db.pid,
            'rabbitmq': box.backing_service('rabbitmq').pid,
            'redis': redis.pid}
    sampler = Sampler(pids, pid)
    sampler.start()
    try:
        sub, _, _ = common.cli(
            conf, '--os-cloud', box.cloud_name, 'submit', 'rotate-images',
            '--param', 'image_tag=amphora', '--param',
            f'concurrency={concurrency}', '--param', 'health_settle=0',
            '--param', 'max_failures=0', '-f', 'value', '-c', 'id', env=env)
        if sub.returncode:
            raise SystemExit(f'submit failed: {sub.stderr.strip()}')
        job_id = sub.stdout.strip()
        query = sa.text('SELECT state FROM ow_jobs WHERE id = :id')
        while True:
            with engine.connect() as conn:
                state = conn.execute(query, {'id': job_id}).scalar()
            if state in ('SUCCESS', 'FAILED', 'CANCELLED', 'PAUSED'):
                break
            time.sleep(1.0)
        time.sleep(0.5)
    finally:
        sampler.stop.set()
        sampler.join()
        os.kill(pid, signal.SIGTERM)
        proc.wait(timeout=120)
        log.close()
    by_state, first, last, median = _span(engine, job_id)
    span = last - first
    begin, end = sampler.at(first), sampler.at(last)
    cpu = {name: round((end[1][name] - begin[1][name]) / size * 1000, 2)
           for name in pids}
    peak, user, system = usage.read_text().split()[-3:]
    claimed = _log_time(log_path, rf'job {job_id}: claimed by')
    frozen = _log_time(log_path, rf'job {job_id}: plan frozen')
    rows, data = stored_per_job(engine, job_id)
    load_mean, load_max = sampler.load(first, last)
    return {
        'targets': size, 'job': job_id, 'state': state,
        'targets_by_state': by_state, 'concurrency': concurrency,
        'plan_seconds': round(frozen - claimed, 2) if claimed and frozen
        else None,
        'span_seconds': round(span, 2),
        'ms_per_target': round(span / size * 1000, 2),
        'median_target_seconds': round(median, 3) if median else None,
        'peak_rss_mib': round(int(peak) / 1024, 1),
        'rss_at_first_start_mib': round(begin[2] or 0, 1),
        'rss_at_last_end_mib': round(end[2] or 0, 1),
        'conductor_cpu_total_s': round(float(user) + float(system), 1),
        'cpu_ms_per_target': cpu,
        'rows_per_target': round(rows / size, 3),
        'bytes_per_target': round(data / size),
        'load_mean': load_mean, 'load_max': load_max,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--sizes', type=int, nargs='+',
                        default=[1000, 10000])
    parser.add_argument('--concurrency', type=int, default=8)
    parser.add_argument('--store', choices=('mariadb', 'sqlite'),
                        default='mariadb')
    args = parser.parse_args()
    figures = {}
    for size in args.sizes:
        load = os.getloadavg()
        figures[size] = run_size(size, args.concurrency, args.store)
        figures[size]['load_before'] = [round(x, 2) for x in load]
        figures[size]['load_after'] = [round(x, 2) for x in
                                       os.getloadavg()]
        print(size, json.dumps(figures[size]), flush=True)
    rows = [(n, f['state'], f['plan_seconds'], f['span_seconds'],
             f['ms_per_target'], f['peak_rss_mib'],
             f'{f["rss_at_first_start_mib"]}->{f["rss_at_last_end_mib"]}',
             f['cpu_ms_per_target']['conductor'],
             f['cpu_ms_per_target']['api'], f['rows_per_target'],
             f['bytes_per_target'], f['show_s'], f['report_json_s'],
             f['list_s'], f['failed_over_once'], f['load_mean'])
            for n, f in figures.items()]
    print()
    common.table(rows, ('targets', 'state', 'plan s', 'span s', 'ms/target',
                        'peak RSS MiB', 'RSS span MiB', 'cond CPU ms/t',
                        'API CPU ms/t', 'rows/target', 'bytes/target',
                        'show s', 'report s', 'list s', 'failed over once',
                        'load'))
    small, large = min(figures), max(figures)
    ratio = figures[large]['ms_per_target'] / figures[small]['ms_per_target']
    peak = max(f['peak_rss_mib'] for f in figures.values())
    print(f'time per target at {large} / at {small}: {ratio:.3f} (limit '
          f'{LIMIT_RATIO}); conductor peak RSS {peak} MiB (limit '
          f'{LIMIT_RSS_MIB:.0f} MiB = 300 MB)')
    figures['per_target_ratio'] = round(ratio, 3)
    common.write_results('rotate_scale', figures)


if __name__ == '__main__':
    main()
