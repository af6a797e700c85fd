"""repair-stuck against stock Octavia: load balancers made really stuck.

Octavia's worker is SIGKILLed in the middle of slow flows (a failover,
a delete) and started again: those load balancers stay PENDING_UPDATE
and PENDING_DELETE for good.  repair-stuck brings the failover one back
ACTIVE with exactly one more failover and finishes the delete one by a
delete, across a SIGKILL of our own conductor; a freshly PENDING one
(its flow still running) and a healthy one are left alone; a stuck one
whose row Octavia wrote after planning is refused by the
compare-and-set.  Everything is counted in Octavia's own database.
"""

import datetime
import os
import signal
import time

import kombu
import pytest
import sqlalchemy as sa

from e2e.runbookhelp import RunbookCli, lb_status
from owtools.sandbox import core, seed, servicectl

pytestmark = pytest.mark.e2e

EXPIRY = 4
#: 24 s: the stuck ones get older than this, the fresh one does not (it
#: has ~20 s to spare for planning on a loaded machine).
OLDER_THAN = 0.4
SLOW = 120.0


def rows(sandbox, lb_ids):
    """{lb: (provisioning_status, updated_at)} from Octavia's database."""
    with sandbox.accounting().engine.connect() as conn:
        found = conn.execute(sa.text(
            'SELECT id, provisioning_status, updated_at FROM load_balancer '
            'WHERE id IN :ids').bindparams(
                sa.bindparam('ids', expanding=True)), {'ids': list(lb_ids)})
        return {r[0]: (r[1], r[2]) for r in found}


def amphora_rows(sandbox, lb_id):
    return {a['id']: a['status'] for a in sandbox.accounting().amphorae(lb_id)}


def utcnow():
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


def delays_seen(sandbox, point):
    """How often the sandbox drivers began an injected delay at ``point``
    (a flow is inside that driver call)."""
    try:
        text = (sandbox.log_dir / 'worker.log').read_text(errors='replace')
    except FileNotFoundError:
        return 0
    return text.count(f'sandbox: delaying {point} by')


def wait_delays(sandbox, point, count, timeout=60):
    deadline = time.monotonic() + timeout
    while delays_seen(sandbox, point) < count:
        assert time.monotonic() < deadline, f'no flow reached {point}'
        time.sleep(0.1)


def kill_worker(sandbox):
    """SIGKILL Octavia's worker (its whole process group), then start it
    again: the flows it was running are gone."""
    sandbox.state = sandbox._load_state() or sandbox.state
    pid = sandbox.state['pids']['worker']
    os.killpg(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while os.path.exists(f'/proc/{pid}') and _alive(pid):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    servicectl.stop(sandbox, 'worker')
    servicectl.start(sandbox, 'worker')
    wait_consumer(sandbox)


def wait_consumer(sandbox, timeout=180):
    """Until a worker consumes Octavia's RPC queue (the queue outlives the
    killed worker; a slow start on a loaded machine takes a while)."""
    url = sandbox.transport_url.replace('rabbit://', 'amqp://', 1)
    deadline = time.monotonic() + timeout
    while True:
        with kombu.Connection(url, connect_timeout=5) as conn:
            _, _, consumers = conn.channel().queue_declare(
                core.WORKER_QUEUE, passive=True)
        if consumers:
            return
        assert time.monotonic() < deadline, 'the worker does not consume'
        time.sleep(0.2)


def _alive(pid):
    try:
        with open(f'/proc/{pid}/stat') as fh:
            return fh.read().rsplit(')', 1)[1].split()[0] not in ('Z', 'X')
    except OSError:
        return False


def test_repair_stuck_needs_octavias_database(tmp_path):
    rb = RunbookCli(tmp_path)
    for args in (['--dry-run'], []):
        proc = rb.cli('submit', 'repair-stuck', *args, check=2)
        assert proc.stderr.strip() == (
            'octavia-workflow: error: repair-stuck needs Octavia\'s '
            'database: set [octavia_database] connection'), proc.stderr
    assert rb.cli('list', '--all', '-f', 'json', check=0).stdout.strip() \
        == '[]'


def test_repair_stuck_repairs_exactly_once_across_sigkills(
        sandbox, tmp_path, redis_server):
    rb = RunbookCli(tmp_path, 'redis', redis_server, expiry=EXPIRY,
                    groups={'octavia_database': {
                        'connection': sandbox.db_url}})
    api = sandbox.connect().load_balancer
    stuck, deleting, refused, healthy = seed.seed_api(sandbox.api, 4,
                                                      topology='SINGLE')
    try:
        # 1. three flows in the worker, killed with it: stuck for good
        builds = delays_seen(sandbox, 'compute.build')
        deletes = delays_seen(sandbox, 'compute.delete')
        sandbox.inject(delays={'compute.build': SLOW,
                               'compute.delete': SLOW})
        api.failover_load_balancer(stuck)
        api.delete_load_balancer(deleting)
        wait_delays(sandbox, 'compute.build', builds + 1)
        wait_delays(sandbox, 'compute.delete', deletes + 1)
        # the one to be refused is younger than the first: repaired after
        time.sleep(1.1)                 # updated_at has whole seconds
        api.failover_load_balancer(refused)
        wait_delays(sandbox, 'compute.build', builds + 2)
        kill_worker(sandbox)
        sandbox.clear_injection()
        first = rb.conductor('first')
        # 2. the fresh one, made once the new worker works (it builds its
        # amphora), failed over slowly just before the stuck ones are old
        [fresh] = seed.seed_api(sandbox.api, 1, topology='SINGLE',
                                timeout=120)
        lbs = [stuck, deleting, refused, fresh, healthy]
        old_at = rows(sandbox, [refused])[refused][1] + datetime.timedelta(
            seconds=OLDER_THAN * 60)
        while utcnow() < old_at - datetime.timedelta(seconds=2):
            time.sleep(0.2)
        builds = delays_seen(sandbox, 'compute.build')
        sandbox.inject(delays={'compute.build': SLOW})
        api.failover_load_balancer(fresh)
        wait_delays(sandbox, 'compute.build', builds + 1)
        # our own failovers are slow enough to kill our conductor in one
        sandbox.inject(delays={'compute.build': 3.0})
        seen = rows(sandbox, lbs)
        before = {lb: amphora_rows(sandbox, lb) for lb in lbs}
        assert {lb: s for lb, (s, _) in seen.items()} == {
            stuck: 'PENDING_UPDATE', deleting: 'PENDING_DELETE',
            refused: 'PENDING_UPDATE', fresh: 'PENDING_UPDATE',
            healthy: 'ACTIVE'}
        while utcnow() < old_at + datetime.timedelta(seconds=1):
            time.sleep(0.2)
        params = {'loadbalancers': ','.join(lbs),
                  'older_than_minutes': OLDER_THAN}
        # 3. apply=true; our conductor SIGKILLed right after the failover
        job_id = rb.submit('repair-stuck', check=None, apply='true',
                           max_failures=0, **params)['id']
        rb.wait_for(job_id, lambda j: any(
            t['target'] == stuck and t['state'] == 'RUNNING'
            for t in j['targets']), what='the first repair')
        deadline = time.monotonic() + 60
        while not any(t['target'] == stuck and t['details'].get(
                'requested_at') for t in rb.targets(job_id)):
            assert time.monotonic() < deadline, 'no failover requested'
            time.sleep(0.05)
        first.send_signal(signal.SIGKILL)
        first.wait()
        assert rows(sandbox, [stuck])[stuck][0] == 'PENDING_UPDATE'
        # Octavia writes the third one's row after planning
        with sandbox.accounting().engine.begin() as conn:
            conn.execute(sa.text('UPDATE load_balancer SET updated_at = '
                                 'UTC_TIMESTAMP() WHERE id = :i'),
                         {'i': refused})
        changed = rows(sandbox, [refused])[refused]
        rb.conductor('second')
        final = rb.wait_for(job_id, lambda j: j['state'] in (
            'SUCCESS', 'FAILED', 'CANCELLED'), timeout=120, what='the end')
    except BaseException:
        # what Octavia's worker and our conductors said (shown on failure)
        print(core.log_tail(sandbox.log_dir / 'worker.log', 40))
        for proc in rb.procs:
            print(proc.log, core.log_tail(proc.log, 40))
        raise
    finally:
        sandbox.clear_injection()
        rb.stop()
    assert final['state'] == 'FAILED', final
    assert final['reason'] == '1 target(s) failed'
    assert final['owner'].startswith('second')
    # the frozen plan: oldest first; the fresh and the healthy skipped
    planned = [(t['target'], t['action'], t['state'])
               for t in rb.targets(job_id)]
    oldest = sorted([stuck, deleting, refused],
                    key=lambda lb: (seen[lb][1], lb))
    expected = {stuck: (stuck, 'reset-failover', 'DONE'),
                deleting: (deleting, 'reset-delete', 'DONE'),
                refused: (refused, 'reset-failover', 'FAILED')}
    assert planned[:3] == [expected[lb] for lb in oldest]
    # (its failover was asked for after the first one's flow was in
    # the worker: it comes after it, and was touched before its turn)
    assert oldest.index(stuck) < oldest.index(refused)
    assert sorted(planned[3:]) == sorted([(fresh, 'skip', 'SKIPPED'),
                                          (healthy, 'skip', 'SKIPPED')])
    details = {t['target']: t['details'] for t in rb.targets(job_id)}
    assert details[stuck]['status'] == 'PENDING_UPDATE'
    assert details[stuck]['age'].endswith(' s')
    report = rb.report(job_id)
    assert report[fresh]['error'].startswith('PENDING_UPDATE for ')
    assert 'younger than older_than_minutes=0.4' in report[fresh]['error']
    assert report[healthy]['error'] == ('load balancer is ACTIVE, not '
                                        'stuck in PENDING_*')
    assert report[stuck]['attempts'] == 1
    assert report[refused]['error'].startswith(
        'compare-and-set refused: the load balancer changed after planning')
    # counted in Octavia's database
    now = rows(sandbox, lbs)
    assert now[stuck][0] == 'ACTIVE'
    assert now[deleting][0] == 'DELETED'
    assert now[refused] == changed          # untouched by us
    assert now[fresh] == seen[fresh]        # still its own flow's
    assert now[healthy] == seen[healthy]
    after = amphora_rows(sandbox, stuck)
    new = {a for a in after if a not in before[stuck]}
    assert [after[a] for a in new] == ['ALLOCATED'], (before[stuck], after)
    assert all(after[a] == 'DELETED' for a in before[stuck]
               if before[stuck][a] != 'DELETED'), (before[stuck], after)
    for lb in (refused, fresh, healthy):
        assert amphora_rows(sandbox, lb) == before[lb], lb
    # the secret never left the configuration
    password = sa.engine.make_url(sandbox.db_url).password
    outputs = [rb.cli('show', job_id, '-f', 'json', check=0).stdout,
               rb.cli('report', job_id, '-f', 'json', check=0).stdout]
    outputs += [p.log.read_text() for p in rb.procs]
    for text in outputs:
        assert sandbox.db_url not in text
        assert not password or password not in text
    # a dry run with the default hour: nothing to do, each one says why
    plan = rb.plan('repair-stuck', loadbalancers=','.join(lbs))
    assert plan['targets'] == []
    reasons = {t['target']: t['reason'] for t in plan['skipped']}
    for lb in (refused, fresh):
        assert reasons[lb].startswith('PENDING_UPDATE for ')
        assert 'younger than older_than_minutes=60' in reasons[lb]
    assert reasons[stuck] == ('load balancer is ACTIVE, not stuck in '
                              'PENDING_*')
    assert reasons[deleting] == ('load balancer is DELETED, not stuck in '
                                 'PENDING_*')
    assert any('apply=false' in n for n in plan['notes'])
    assert lb_status(sandbox, [healthy]) == {healthy: 'ACTIVE'}
