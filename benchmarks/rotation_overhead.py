"""Rotation overhead: a conductor vs a plain openstacksdk thread-pool loop.

On one private sandbox, for each concurrency C: seed 2*N SINGLE load
balancers, tag a new amphora image, then

- plain: N of them failed over by a ThreadPoolExecutor(C) script that
  calls failover and polls the load balancer every 0.25 s until ACTIVE
  (no persistence, no jobboard, no pacing, no fencing);
- conductor: the other N rotated by ``rotate-images`` (``loadbalancers=``
  those ids, ``concurrency=C``) through a real conductor on a Redis
  jobboard with MariaDB persistence, timed from just before ``submit`` to
  the job's SUCCESS (CLI start-up, posting and claiming included; the
  job's state is read every 0.1 s, so the end is seen within 0.1 s).

Prints wall times and the ratio conductor/plain per concurrency, the
conductor's peak RSS during its run, the persistence rows and bytes
the job stored per target (our records plus TaskFlow's logbook), and
the mean time Octavia took per failover as each side saw it (plain:
from the call's return until seen settled; conductor: from the target's
``requested_at`` until ``verified``, i.e. one amphora read more): when
those differ, the sandbox ran at a different speed for the two sides,
and the ratio says as much about that as about the conductor.

Where the machine's two cores went is printed per round and side: the
CPU seconds of Octavia's worker, API, health manager, MariaDB, the
conductor, Redis, the stand-in and this script (the plain loop runs in
it) -- at concurrency 4 the Octavia worker is the bottleneck, so CPU
the conductor's side spends elsewhere slows its failovers.

The job's fixed cost is printed per round: from just before ``submit``
to its first failover call (the earliest target's recorded ``intent``:
CLI start, posting, claim, planning and the first re-check), and from
its last target's verification to its SUCCESS.

With ``--rounds R`` each concurrency is measured R times on fresh load
balancers, the side that goes first alternating from round to round;
the ratio printed is total conductor time over total plain time.  Use
it where the sandbox's own timing varies: a no-op failover takes about
as long as two 0.25 s polls, so whether it is seen at the second or
the third poll shifts a plain run of 30 load balancers by up to 10 %.

    .venv/bin/python benchmarks/rotation_overhead.py [-n 100] [-c 1 4 8]
        [--build-delay SECONDS] [--rounds R] [--conductor-log PATH]
"""

import argparse
import concurrent.futures
import json
import os
import signal
import subprocess
import sys
import time

import common
import sqlalchemy as sa

from owtools import services
from owtools.sandbox import seed


def plain_rotation(conn, lb_ids, concurrency):
    """(wall seconds, final states, seconds from each failover call's
    return until the load balancer was seen settled)."""
    def one(lb_id):
        conn.load_balancer.failover_load_balancer(lb_id)
        called = time.monotonic()
        while True:
            time.sleep(0.25)
            status = conn.load_balancer.get_load_balancer(
                lb_id).provisioning_status
            if status in ('ACTIVE', 'ERROR'):
                return status, time.monotonic() - called

    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(one, lb_ids))
    return (time.monotonic() - started, [r[0] for r in results],
            [r[1] for r in results])


def seen_durations(engine, job_id):
    """Seconds from each target's failover call (``requested_at``) until
    it was seen settled and verified (``verified``), from its record."""
    query = sa.text('SELECT details FROM ow_targets WHERE job_id = :id')
    with engine.connect() as db:
        rows = [json.loads(d) for d in
                db.execute(query, {'id': job_id}).scalars()]
    return [d['verified'] - d['requested_at'] for d in rows
            if d.get('verified') and d.get('requested_at')]


def fixed_cost(engine, job_id, submitted, ended):
    """The job's fixed cost from its records: seconds from just before
    ``submit`` to its first cloud-changing call (the earliest target's
    ``intent``: the CLI process, posting, claim, planning, first
    re-check), and from its last verification (``verified``) until its
    SUCCESS was seen (within the 0.05 s poll)."""
    query = sa.text('SELECT details FROM ow_targets WHERE job_id = :id')
    with engine.connect() as db:
        rows = [json.loads(d) for d in
                db.execute(query, {'id': job_id}).scalars()]
    calls = [d.get('intent') or d.get('requested_at') for d in rows]
    calls = [c for c in calls if c]
    verified = [d['verified'] for d in rows if d.get('verified')]
    return (round(min(calls) - submitted, 3) if calls else None,
            round(ended - max(verified), 3) if verified else None)


def phases(engine, job_id, concurrency):
    """Mean seconds of each part of a target's run, from its record:
    ``start->intent`` (admitted: re-check, the begin and intent writes),
    ``intent->call`` (fence + the failover call), ``call->verified``
    (Octavia's work, seen settled, verified) and ``gap`` (a lane's
    previous target verified -> its next one started: the end write, the
    next start's reads and checks).  Lanes take the next target as they
    come free, so each target after the first ``concurrency`` is matched
    with the latest verification before its start not yet matched."""
    query = sa.text('SELECT details FROM ow_targets WHERE job_id = :id')
    keys = ('started', 'intent', 'requested_at', 'verified')
    with engine.connect() as db:
        done = [d for d in (json.loads(r[0]) for r in
                            db.execute(query, {'id': job_id}))
                if all(d.get(k) for k in keys)]
    done.sort(key=lambda d: d['started'])
    parts = {'start->intent': [d['intent'] - d['started'] for d in done],
             'intent->call': [d['requested_at'] - d['intent']
                              for d in done],
             'call->verified': [d['verified'] - d['requested_at']
                                for d in done],
             'gap': []}
    freed = []
    for n, d in enumerate(done):
        if n >= concurrency:
            before = [v for v in freed if v <= d['started']]
            if before:
                latest = max(before)
                freed.remove(latest)
                parts['gap'].append(d['started'] - latest)
        freed.append(d['verified'])
    return {k: round(sum(v) / len(v), 4) if v else None
            for k, v in parts.items()}


#: Process roles by a piece of their command line (first match wins).
ROLES = (('octavia-worker', 'worker'), ('apiserver', 'api'),
         ('health-manager', 'health'), ('heartbeats', 'health'),
         ('mariadbd', 'mariadb'), (' conductor ', 'conductor'),
         ('standin', 'standin'), ('redis-server', 'redis'))


def cpu_by_role(root):
    """CPU seconds (user + system) used so far by the processes whose
    command line names ``root`` (the benchmark's directory) and their
    children (Octavia's workers rename themselves), by role, plus this
    script's own."""
    tick = os.sysconf('SC_CLK_TCK')
    procs = {}
    for pid in filter(str.isdigit, os.listdir('/proc')):
        try:
            with open(f'/proc/{pid}/cmdline', 'rb') as handle:
                cmdline = handle.read().replace(b'\0', b' ').decode(
                    errors='replace')
            with open(f'/proc/{pid}/stat', encoding='ascii') as handle:
                fields = handle.read().rsplit(')', 1)[1].split()
        except OSError:
            continue
        procs[pid] = (cmdline, fields[1],
                      (int(fields[11]) + int(fields[12])) / tick)

    def role(pid, depth=0):
        """Its own role by its command line, if it or an ancestor names
        ``root``; else (a renamed child) its parent's; None: not ours."""
        cmdline, parent, _ = procs[pid]
        inherited = None
        if str(root) not in cmdline:
            if parent not in procs or depth >= 5:
                return None
            inherited = role(parent, depth + 1)
            if inherited is None:
                return None
        own = next((r for key, r in ROLES if key in f' {cmdline} '), None)
        return own or inherited or 'other'

    used = {}
    for pid, (_, _, seconds) in procs.items():
        found = role(pid)
        if found is not None:
            used[found] = used.get(found, 0.0) + seconds
    times = os.times()
    used['this script'] = times.user + times.system
    return used


def cpu_spent(before, after):
    """CPU seconds per role between two :func:`cpu_by_role` readings
    (processes that ended in between count as nothing)."""
    return {role: round(after.get(role, 0.0) - before.get(role, 0.0), 2)
            for role in sorted(set(before) | set(after))}


def rss_mib(pid):
    """Resident set size of ``pid`` in MiB (from /proc)."""
    with open(f'/proc/{pid}/status', encoding='ascii') as status:
        for line in status:
            if line.startswith('VmRSS:'):
                return int(line.split()[1]) / 1024
    return 0.0


def stored_per_job(engine, job_id):
    """(rows, bytes) the job left in the persistence tables: our records
    and TaskFlow's logbook, flow and atom details (logbooks are kept for
    this count: ``jobboard_save_logbook = True``)."""
    meta = sa.MetaData()
    meta.reflect(engine, only=('ow_jobs', 'ow_targets', 'logbooks',
                               'flowdetails', 'atomdetails'))
    t = meta.tables
    queries = (t['ow_jobs'].select().where(t['ow_jobs'].c.id == job_id),
               t['ow_targets'].select().where(
                   t['ow_targets'].c.job_id == job_id),
               t['logbooks'].select().where(t['logbooks'].c.uuid == job_id),
               t['flowdetails'].select().where(
                   t['flowdetails'].c.parent_uuid == job_id),
               t['atomdetails'].select().where(
                   t['atomdetails'].c.parent_uuid == job_id))
    rows = size = 0
    with engine.connect() as db:
        for query in queries:
            for row in db.execute(query):
                rows += 1
                size += sum(len(str(v)) for v in row if v is not None)
    return rows, size


def conductor_rotation(conf, env, engine, lb_ids, concurrency, pid):
    started = time.monotonic()
    submitted = time.time()
    peak = rss_mib(pid)
    proc, _, _ = common.cli(
        conf, '--os-cloud', 'bench', 'submit', 'rotate-images',
        '--param', 'image_tag=amphora',
        '--param', 'loadbalancers=' + ','.join(lb_ids),
        '--param', f'concurrency={concurrency}', '--param', 'max_failures=0',
        '-f', 'value', '-c', 'id', env=env)
    if proc.returncode:
        sys.exit(f'submit failed: {proc.stderr.strip()}')
    cli_seconds = time.time() - submitted
    job_id = proc.stdout.strip()
    query = sa.text('SELECT state FROM ow_jobs WHERE id = :id')
    while True:
        with engine.connect() as db:
            state = db.execute(query, {'id': job_id}).scalar()
        peak = max(peak, rss_mib(pid))
        if state in ('SUCCESS', 'FAILED', 'CANCELLED', 'PAUSED'):
            return (time.monotonic() - started, state, job_id, peak,
                    fixed_cost(engine, job_id, submitted, time.time()),
                    cli_seconds)
        time.sleep(0.05)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('-n', type=int, default=100,
                        help='load balancers per side (default 100)')
    parser.add_argument('-c', type=int, nargs='+', default=[1, 4, 8],
                        help='concurrencies (default 1 4 8)')
    parser.add_argument('--build-delay', type=float, default=0.0,
                        help='injected compute build delay in seconds')
    parser.add_argument('--rounds', type=int, default=1,
                        help='measurements per concurrency, alternating '
                        'which side goes first (default 1)')
    parser.add_argument('--conductor-log', metavar='PATH', default=None,
                        help='keep the conductor\'s log in PATH (default: '
                        'deleted with the sandbox)')
    args = parser.parse_args()
    rows, figures = [], []
    with common.sandbox('bench') as (box, db, tmp):
        redis = services.RedisServer(tmp / 'redis').start()
        conn = box.connect()
        if args.build_delay:
            box.inject(delays={'compute.build': args.build_delay})
        persistence = db.create_database('octavia_persistence')
        conf = common.board_conf(tmp / 'ow.conf', redis, persistence)
        env = {'OS_CLIENT_CONFIG_FILE': str(box.dir / 'clouds.yaml')}
        common.cli(conf, 'db', 'upgrade', env=env)
        log = open(args.conductor_log or tmp / 'conductor.log', 'wb')
        conductor = subprocess.Popen(
            [common.BIN, '--config-file', conf, 'conductor', '--workers',
             '1', '--name', 'bench'], stdout=log, stderr=subprocess.STDOUT,
            env=dict(os.environ, **env))
        engine = sa.create_engine(persistence)
        try:
            for concurrency in args.c:
                for round_ in range(args.rounds):
                    figures.append(one_round(
                        box, conn, conf, env, engine, conductor.pid,
                        args.n, concurrency, round_))
                rows.append(summary(figures, concurrency, args.n))
        finally:
            conductor.send_signal(signal.SIGTERM)
            conductor.wait(timeout=60)
            log.close()
            engine.dispose()
            redis.stop()
    print()
    common.table(rows, ('concurrency', 'N', 'rounds', 'plain s',
                        'conductor s', 'ratio', 'ratio range', 'jobs',
                        'failovers', 'conductor RSS MiB', 'rows/target',
                        'bytes/target', 'failover s plain/conductor',
                        'submit->1st call s (max)',
                        'last verify->SUCCESS s (max)'))
    common.write_results('rotation_overhead', {
        'build_delay': args.build_delay, 'rounds': args.rounds,
        'runs': figures})


def one_round(box, conn, conf, env, engine, pid, n, concurrency, round_):
    """Seed 2*n load balancers and a new image, rotate half plainly and
    half through the conductor (plain first in even rounds)."""
    ids = seed.seed_api(box.api, 2 * n, concurrency=8)
    for image in conn.image.images(tag='amphora'):
        conn.image.remove_tag(image, 'amphora')
    conn.image.create_image(
        name=f'amphora-c{concurrency}-r{round_}', disk_format='qcow2',
        container_format='bare', data=b'x', tags=['amphora'])
    cpu = {}

    def plain_side():
        before = cpu_by_role(box.dir.parent)
        result = plain_rotation(conn, ids[:n], concurrency)
        cpu['plain'] = cpu_spent(before, cpu_by_role(box.dir.parent))
        return result

    if round_ % 2 == 0:
        plain, states, plain_seen = plain_side()
    before = cpu_by_role(box.dir.parent)
    ours, state, job_id, peak, (to_call, to_end), cli = conductor_rotation(
        conf, env, engine, ids[n:], concurrency, pid)
    cpu['conductor'] = cpu_spent(before, cpu_by_role(box.dir.parent))
    if round_ % 2 == 1:
        plain, states, plain_seen = plain_side()
    ours_seen = seen_durations(engine, job_id)
    print(f'c={concurrency} round {round_}: plain {plain:.2f} s, '
          f'conductor {ours:.2f} s, submit->1st call {to_call} s '
          f'(the submit process {cli:.3f} s), '
          f'per target {phases(engine, job_id, concurrency)}', flush=True)
    print(f'  CPU s during the plain loop {cpu["plain"]}; during the '
          f'conductor\'s run {cpu["conductor"]}', flush=True)
    stored_rows, stored_bytes = stored_per_job(engine, job_id)
    done = sum(box.accounting().failovers_by_lb(ids[n:]).values())
    return {'concurrency': concurrency, 'n': n, 'round': round_,
            'plain_seconds': round(plain, 2),
            'conductor_seconds': round(ours, 2),
            'ratio': round(ours / plain, 3),
            'plain_failover_mean_s': round(sum(plain_seen) / n, 3),
            'conductor_failover_mean_s': round(
                sum(ours_seen) / max(1, len(ours_seen)), 3),
            'job_state': state, 'job': job_id,
            'submit_to_first_call_s': to_call,
            'submit_process_s': round(cli, 3),
            'last_verified_to_success_s': to_end,
            'plain_errors': states.count('ERROR'),
            'failovers_counted': done,
            'conductor_peak_rss_mib': round(peak, 1),
            'cpu_seconds_plain': cpu['plain'],
            'cpu_seconds_conductor': cpu['conductor'],
            'stored_rows_per_target': round(stored_rows / n, 2),
            'stored_bytes_per_target': round(stored_bytes / n)}


def summary(figures, concurrency, n):
    """One table row: the rounds of ``concurrency`` taken together."""
    runs = [f for f in figures if f['concurrency'] == concurrency]
    plain = sum(f['plain_seconds'] for f in runs)
    ours = sum(f['conductor_seconds'] for f in runs)
    ratios = [f['ratio'] for f in runs]
    states = sorted({f['job_state'] for f in runs})
    return (concurrency, n, len(runs), f'{plain:.1f}', f'{ours:.1f}',
            f'{ours / plain:.3f}', f'{min(ratios):.3f}-{max(ratios):.3f}',
            ','.join(states),
            f'{sum(f["failovers_counted"] for f in runs):.0f}',
            f'{max(f["conductor_peak_rss_mib"] for f in runs):.0f}',
            f'{runs[-1]["stored_rows_per_target"]:.1f}',
            f'{runs[-1]["stored_bytes_per_target"]}',
            f'{_mean(runs, "plain_failover_mean_s"):.3f}/'
            f'{_mean(runs, "conductor_failover_mean_s"):.3f}',
            _worst(runs, 'submit_to_first_call_s'),
            _worst(runs, 'last_verified_to_success_s'))


def _mean(runs, key):
    return sum(f[key] for f in runs) / len(runs)


def _worst(runs, key):
    seen = [f[key] for f in runs if f[key] is not None]
    return f'{max(seen):.2f}' if seen else '-'


if __name__ == '__main__':
    main()
