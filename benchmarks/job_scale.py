"""Job scale: one job of thousands of targets through one conductor.

For each size N (default 1,000 and 10,000): a private Redis jobboard and
an SQLite store; one ``conductor`` process (under ``/usr/bin/time`` for
its peak RSS) runs one ``selftest`` job of N zero-second steps.  Printed
per size: the conductor's wall time from the job's start to its end,
seconds per target (wall, and the conductor's own CPU time, which a
loaded machine does not inflate; the load average is printed beside
it), peak RSS, the persistence rows and bytes per
target, and how long ``show``, ``report -f json`` and ``list`` take on
the finished job.  Then the ratio of the time per target at the largest
size to that at the smallest, wall and CPU (flat bookkeeping: near 1).
The script polls the job's state by its primary key only (a count over
its targets, polled often, would slow the conductor as the job grows).

With ``--takeover`` (one more run of the largest size): the first
conductor is killed with SIGKILL once half the steps are done; a second
conductor is
started, and the figure is the time from the kill until it finishes a
step that was not done before (bounded by the claim expiry), with the
count of steps that ran twice (at most the one in flight).  Finally
``purge`` removes the job and the rows left are counted.

    .venv/bin/python benchmarks/job_scale.py [--sizes 1000 10000]
        [--takeover] [--expiry 10]
"""

import argparse
import os
import pathlib
import signal
import sqlite3
import subprocess
import tempfile
import time

import common

from owtools import services


def _conf(tmp, redis, expiry):
    return common.write_conf(tmp / 'ow.conf', task_flow={
        'persistence_connection': f'sqlite:///{tmp}/p.sqlite',
        'jobboard_enabled': True,
        'jobboard_backend_driver': 'redis_taskflow_driver',
        'jobboard_backend_hosts': '127.0.0.1',
        'jobboard_backend_port': redis.port,
        'jobboard_backend_password': redis.password,
        'jobboard_expiration_time': expiry},
        conductor={'poll_interval': 0.2})


def _conductor(conf, tmp, name):
    log = open(tmp / f'{name}.log', 'wb')
    rss = tmp / f'{name}.rss'
    proc = subprocess.Popen(
        ['/usr/bin/time', '-f', '%M', '-o', str(rss), common.BIN,
         '--config-file', conf, 'conductor', '--name', name],
        stdout=log, stderr=subprocess.STDOUT)
    return proc, log, rss


def _children(proc):
    # /usr/bin/time's child is the conductor
    children = pathlib.Path(f'/proc/{proc.pid}/task/{proc.pid}/children')
    try:
        return [int(p) for p in children.read_text().split()]
    except OSError:
        return []


def _cpu(proc):
    """CPU seconds (user + system) the conductor has used so far: the
    figure a loaded machine does not inflate the way it does wall time."""
    total = 0.0
    for pid in _children(proc):
        try:
            fields = pathlib.Path(f'/proc/{pid}/stat').read_text().rsplit(
                ')', 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf(
            'SC_CLK_TCK')
    return total


def _stop(proc, sig=signal.SIGTERM):
    # /usr/bin/time forwards nothing: signal its child, the conductor
    for pid in _children(proc):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass
    proc.wait(timeout=120)


def _db(tmp):
    return sqlite3.connect(tmp / 'p.sqlite')


def _state(tmp, job_id):
    """The job's state: one primary-key read (polled often, it must not
    slow the conductor down as the job grows)."""
    with _db(tmp) as db:
        state = db.execute('select state from ow_jobs where id=?',
                           (job_id,)).fetchone()
    return state[0] if state else None


def _done(tmp, job_id):
    """Targets DONE (a count over the job's rows: polled seldom)."""
    with _db(tmp) as db:
        return db.execute("select count(*) from ow_targets where job_id=? "
                          "and state='DONE'", (job_id,)).fetchone()[0]


def _store(tmp, job_id):
    """(rows, bytes) the job holds in our tables and TaskFlow's."""
    with _db(tmp) as db:
        rows = db.execute('select count(*), sum(length(details)) from '
                          'ow_targets where job_id=?', (job_id,)).fetchone()
        tf = 0
        for table in ('atomdetails', 'flowdetails', 'logbooks'):
            try:
                tf += db.execute(f'select count(*) from {table}').fetchone()[0]
            except sqlite3.OperationalError:
                pass
    return rows[0] + 1 + tf, (rows[1] or 0), tf


def _time_cli(conf, *args):
    proc, seconds, _ = common.cli(conf, *args)
    return seconds if proc.returncode == 0 else None


def run_size(size, expiry, takeover):
    with tempfile.TemporaryDirectory(prefix='ow-scale-') as tmp:
        tmp = pathlib.Path(tmp)
        redis = services.RedisServer(tmp / 'redis').start()
        try:
            conf = _conf(tmp, redis, expiry)
            common.cli(conf, 'db', 'upgrade')
            record = tmp / 'steps.txt'
            first, log, rss_file = _conductor(conf, tmp, 'alpha')
            proc, _, _ = common.cli(
                conf, 'submit', 'selftest', '--param', f'steps={size}',
                '--param', 'step_seconds=0', '--param',
                f'record_to={record}', '-f', 'value', '-c', 'id')
            job_id = proc.stdout.strip()
            began = None
            cpu_began = 0.0
            result = {'targets': size}
            killed = None
            counted = 0.0
            while True:
                state = _state(tmp, job_id)
                if began is None and state == 'RUNNING':
                    began = time.monotonic()
                    cpu_began = _cpu(first)
                if state in ('SUCCESS', 'FAILED'):
                    cpu = _cpu(first) - cpu_began
                    break
                if (takeover and killed is None
                        and time.monotonic() - counted > 0.5):
                    counted = time.monotonic()
                    done = _done(tmp, job_id)
                else:
                    done = 0
                if takeover and killed is None and done >= size // 2:
                    _stop(first, signal.SIGKILL)
                    killed = time.monotonic()
                    lines_before = len(record.read_text().splitlines())
                    first, log, rss_file = _conductor(conf, tmp, 'beta')
                if killed and 'takeover_seconds' not in result:
                    lines = len(record.read_text().splitlines())
                    if lines > lines_before:
                        result['takeover_seconds'] = round(
                            time.monotonic() - killed, 2)
                time.sleep(0.05)
            wall = time.monotonic() - (began or time.monotonic())
            _stop(first)
            log.close()
            steps = [int(line.split()[1]) for line in
                     record.read_text().splitlines()]
            result.update(
                state=state, wall_seconds=round(wall, 2),
                load=round(os.getloadavg()[0], 1),
                ms_per_target=round(wall / size * 1000, 2),
                cpu_ms_per_target=(None if killed else
                                   round(cpu / size * 1000, 2)),
                peak_rss_mib=round(int(rss_file.read_text().split()[-1])
                                   / 1024, 1),
                ran_twice=len(steps) - len(set(steps)),
                missing=size - len(set(steps)))
            rows, data_bytes, tf_rows = _store(tmp, job_id)
            result.update(rows_per_target=round(rows / size, 3),
                          detail_bytes_per_target=round(data_bytes / size, 1),
                          taskflow_rows=tf_rows)
            result['show_s'] = _time_cli(conf, 'show', job_id, '-f', 'json')
            result['report_json_s'] = _time_cli(conf, 'report', job_id, '-f',
                                                'json')
            result['list_s'] = _time_cli(conf, 'list', '--all')
            with _db(tmp) as db:
                db.execute('update ow_jobs set updated_at=? where id=?',
                           ('2000-01-01 00:00:00', job_id))
            common.cli(conf, 'purge', '--older-than', '1')
            with _db(tmp) as db:
                result['rows_after_purge'] = db.execute(
                    'select count(*) from ow_targets where job_id=?',
                    (job_id,)).fetchone()[0] + db.execute(
                    'select count(*) from ow_jobs where id=?',
                    (job_id,)).fetchone()[0]
            return result
        finally:
            redis.stop()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--sizes', type=int, nargs='+',
                        default=[1000, 10000])
    parser.add_argument('--takeover', action='store_true')
    parser.add_argument('--expiry', type=int, default=10)
    args = parser.parse_args()
    figures = {}
    for size in args.sizes:
        figures[size] = run_size(size, args.expiry, False)
        print(size, figures[size], flush=True)
    rows = [(n, f['state'], f['wall_seconds'], f['ms_per_target'],
             f['cpu_ms_per_target'], f['load'], f['peak_rss_mib'],
             f['rows_per_target'],
             f['detail_bytes_per_target'], f['show_s'] and round(
                 f['show_s'], 2), f['report_json_s'] and round(
                 f['report_json_s'], 2), f['list_s'] and round(
                 f['list_s'], 2), f['rows_after_purge'])
            for n, f in figures.items()]
    common.table(rows, ('targets', 'state', 'wall s', 'ms/target',
                        'CPU ms/target', 'load', 'peak RSS MiB',
                        'rows/target', 'bytes/target',
                        'show s', 'report s', 'list s', 'rows purged-left'))
    small, large = min(figures), max(figures)
    ratio = figures[large]['ms_per_target'] / figures[small]['ms_per_target']
    cpu_ratio = (figures[large]['cpu_ms_per_target']
                 / figures[small]['cpu_ms_per_target'])
    print(f'time per target at {large} / at {small}: {ratio:.2f} wall, '
          f'{cpu_ratio:.2f} CPU (the conductor\'s own; wall time also '
          f'counts what else the machine runs: see the load)')
    figures['per_target_ratio'] = round(ratio, 3)
    figures['cpu_per_target_ratio'] = round(cpu_ratio, 3)
    if args.takeover:
        f = figures['takeover'] = run_size(large, args.expiry, True)
        print(f'takeover at {large} (SIGKILL at half): next new step '
              f'{f.get("takeover_seconds")} s after the kill (claim expiry '
              f'{args.expiry} s); {f["ran_twice"]} step(s) ran twice, '
              f'{f["missing"]} missing; the job ended {f["state"]}')
    common.write_results('job_scale', figures)


if __name__ == '__main__':
    main()
