"""The failover runbooks against the sandbox (stock Octavia, no-op drivers).

Effects are counted in Octavia's own database (sandbox accounting): a
load balancer failed over once has exactly one DELETED amphora per live
amphora.  Conductors are real ``octavia-workflow conductor`` processes
on real Redis and ZooKeeper jobboards, killed with SIGKILL mid-run.
"""

import json
import signal
import time
import uuid

import pytest
import sqlalchemy as sa

from e2e.runbookhelp import RunbookCli, failovers, lb_status, live_amphorae
from octavia_workflows.engine import records as rec
from octavia_workflows.machinery import readahead
from owtools.sandbox import seed

pytestmark = pytest.mark.e2e

#: Claim expiry (s): a SIGKILLed conductor's job is taken over this fast.
EXPIRY = 4
IMAGE_TAG = 'amphora'


# -- helpers -------------------------------------------------------------


@pytest.fixture
def runbooks(tmp_path, request):
    made = []

    def make(board=None):
        server = request.getfixturevalue(f'{board}_server') if board else None
        made.append(RunbookCli(tmp_path, board, server, expiry=EXPIRY))
        return made[-1]

    yield make
    for item in made:
        item.stop()


def new_image(sandbox):
    """A newer image carrying the amphora tag: every existing amphora is
    now on an old image, and new ones boot from this one."""
    from owtools.standin import StandinState

    state = StandinState(str(sandbox.dir / 'standin.db'))
    image = state.create_image(f'amphora-{uuid.uuid4().hex[:6]}',
                               tags=[IMAGE_TAG])
    return image['id']


def sql(sandbox, statement, **params):
    with sandbox.accounting().engine.begin() as conn:
        conn.execute(sa.text(statement), params)


def wait_pending(sandbox, lb_ids, timeout=60):
    """Return as soon as one of ``lb_ids`` is PENDING_UPDATE (i.e. right
    after a failover call)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = lb_status(sandbox, lb_ids)
        if 'PENDING_UPDATE' in status.values():
            return
        time.sleep(0.02)
    raise AssertionError('no failover started')


# -- tests ---------------------------------------------------------------


def test_dry_run_lists_targets_and_skips_and_changes_nothing(
        sandbox, runbooks):
    rb = runbooks()
    single = seed.seed_api(sandbox.api, 1, topology='SINGLE')
    pair = seed.seed_api(sandbox.api, 1, topology='ACTIVE_STANDBY')
    [busy] = seed.seed_api(sandbox.api, 1)
    image = new_image(sandbox)
    sandbox.inject(delays={'compute.build': 4.0})
    try:
        sandbox.connect().load_balancer.failover_load_balancer(busy)
        wait_pending(sandbox, [busy])
        proc = rb.cli('--os-cloud', 'sandbox', 'submit', 'rotate-images',
                      '--param', f'image_tag={IMAGE_TAG}', '--param',
                      f'loadbalancers={",".join(single + pair + [busy])}',
                      '--dry-run', '-f', 'json', check=0)
    finally:
        sandbox.clear_injection()
    plan = json.loads(proc.stdout)
    targets = {t['target']: t['details'] for t in plan['targets']}
    # Plan order is (created_at, id): created in the same second, the two
    # may come in either order.
    assert sorted(targets) == sorted(single + pair)
    assert targets[single[0]]['topology'] == 'SINGLE'
    assert targets[single[0]]['outage'] == 'short outage (SINGLE)'
    assert targets[pair[0]]['topology'] == 'ACTIVE_STANDBY'
    assert 'outage' not in targets[pair[0]]
    for details in targets.values():
        assert details['project'] == seed.DEFAULT_PROJECT
        assert details['az'] and details['image']
        assert details['image'] != image
        assert details['want_image'] == image
    assert [(t['target'], t['reason']) for t in plan['skipped']] == [
        (busy, 'load balancer is PENDING_UPDATE')]
    assert any('short outage' in note for note in plan['notes'])
    # nothing was posted or changed
    assert rb.cli('list', '--all', '-f', 'json', check=0).stdout.strip() \
        == '[]'
    assert failovers(sandbox, single + pair) == {
        single[0]: (1, 0), pair[0]: (2, 0)}
    seed_wait = time.monotonic() + 30
    while lb_status(sandbox, [busy])[busy] != 'ACTIVE':
        assert time.monotonic() < seed_wait
        time.sleep(0.1)


@pytest.mark.parametrize('board', ['redis', 'zookeeper'])
def test_rotate_images_exactly_once_across_sigkill(sandbox, runbooks,
                                                   board):
    """SIGKILL the owning conductor right after a failover call and again
    while waiting: every load balancer is failed over exactly once."""
    rb = runbooks(board)
    singles = seed.seed_api(sandbox.api, 3, topology='SINGLE')
    pairs = seed.seed_api(sandbox.api, 2, topology='ACTIVE_STANDBY')
    lbs = singles + pairs
    image = new_image(sandbox)
    sandbox.inject(delays={'compute.build': 0.8})
    try:
        first = rb.conductor('first')
        job = rb.submit('rotate-images', check=0, image_tag=IMAGE_TAG,
                        loadbalancers=','.join(lbs), concurrency=2,
                        interval=0.3)
        job_id = job['id']
        # 1. right after a failover call
        wait_pending(sandbox, lbs)
        first.send_signal(signal.SIGKILL)
        first.wait()
        second = rb.conductor('second')
        # 2. while the new owner waits for a later failover
        done = rb.wait_for(
            job_id, lambda j: j['progress']['done'] >= 2
            and j['owner'] and j['owner'].startswith('second'),
            what='second conductor progressing')['progress']['done']
        rb.wait_for(job_id, lambda j: j['progress']['done'] > done
                    or any(t['state'] == 'RUNNING' for t in j['targets']),
                    what='a target in flight')
        wait_pending(sandbox, lbs)
        second.send_signal(signal.SIGKILL)
        second.wait()
        rb.conductor('third')
        final = rb.wait_for(job_id, lambda j: j['state'] in (
            'SUCCESS', 'FAILED', 'CANCELLED'), timeout=120, what='the end')
    finally:
        sandbox.clear_injection()
    assert final['state'] == 'SUCCESS', final
    assert final['owner'].startswith('third')
    assert final['progress'] == {'total': 5, 'done': 5, 'failed': 0,
                                 'skipped': 0, 'running': 0}
    # exactly once, counted in Octavia's database
    counts = failovers(sandbox, lbs)
    assert counts == {**{lb: (1, 1) for lb in singles},
                      **{lb: (2, 2) for lb in pairs}}
    report = rb.report(job_id)
    for lb_id in lbs:
        row = report[lb_id]
        assert row['state'] == 'DONE' and row['error'] == ''
        assert row['after']['images'] == [image]
        assert image not in row['before']['images']
        assert not set(row['before']['amphorae']) & set(
            row['after']['amphorae'])
        live = {a['id'] for a in live_amphorae(sandbox, lb_id)}
        assert set(row['after']['amphorae']) == live
        assert row['duration'] is not None
    # pacing held across both takeovers: starts >= interval apart and
    # never more than `concurrency` targets in flight
    rows = rb.targets(job_id)
    starts = sorted(r['details']['started'] for r in rows)
    assert all(b - a >= 0.3 - 1e-3 for a, b in zip(starts, starts[1:],
                                                    strict=False))
    # in flight: from the start until the failover was seen done and
    # verified (the slot is freed then; the record ends a moment later)
    assert all(r['details']['started'] <= r['details']['verified']
               <= _epoch(r['finished_at']) + 1.0 for r in rows)
    spans = [(r['details']['started'], r['details']['verified'])
             for r in rows]
    for moment in starts:
        in_flight = sum(1 for s, f in spans if s <= moment < f)
        assert in_flight <= 2
    # every target was re-checked before its call, on reads at most
    # MAX_AGE old at its start; some on reads made ahead
    for r in rows:
        d = r['details']
        assert d['started'] - readahead.MAX_AGE <= d['rechecked'] \
            <= d['requested_at']
    assert any(r['details']['rechecked'] < r['details']['started']
               for r in rows)


def _epoch(value):
    import calendar

    return calendar.timegm(value.timetuple()) + value.microsecond / 1e6


def test_breaker_pauses_resume_continues_cancel_ends_cleanly(
        sandbox, runbooks):
    rb = runbooks('redis')
    seeded = seed.seed_api(sandbox.api, 5, topology='SINGLE')
    new_image(sandbox)
    rb.conductor('breaker')
    sandbox.inject(fail={'compute.build': 1.0})
    try:
        job_id = rb.submit('rotate-images', check=0, image_tag=IMAGE_TAG,
                           loadbalancers=','.join(seeded),
                           max_failures=2)['id']
        paused = rb.wait_for(job_id, lambda j: j['state'] == 'PAUSED',
                             what='breaker pause')
    finally:
        sandbox.clear_injection()
    assert 'circuit breaker: 2 target(s) failed' in paused['reason']
    assert paused['paused_by'] == 'job'
    # wait returns at once on a job that paused itself: exit 5, with the
    # reason and the commands that continue or end it
    waited = rb.cli('wait', job_id, '--timeout', '30', check=5)
    assert 'the job paused itself: circuit breaker' in waited.stderr
    assert f'octavia-workflow resume {job_id}' in waited.stderr
    assert f'octavia-workflow cancel {job_id}' in waited.stderr
    lbs = [t['target'] for t in paused['targets']]   # plan order
    assert sorted(lbs) == sorted(seeded)
    report = rb.report(job_id)
    assert [report[lb]['state'] for lb in lbs] == [
        'FAILED', 'FAILED', 'PENDING', 'PENDING', 'PENDING']
    for lb_id in lbs[:2]:
        assert 'ERROR after its failover' in report[lb_id]['error']
        assert report[lb_id]['before']['amphorae']
    # resume: the third target runs; cancel while it is in flight (its
    # build is long enough for the cancel to be seen before it ends: the
    # fourth target is waiting, ready, for its slot)
    sandbox.inject(delays={'compute.build': 6.0})
    try:
        rb.cli('resume', job_id, check=0)
        rb.wait_for(job_id, lambda j: j['targets'][2]['state'] == 'RUNNING',
                    what='third target in flight')
        wait_pending(sandbox, [lbs[2]])
        rb.cli('cancel', job_id, check=0)
        assert lb_status(sandbox, [lbs[2]]) == {lbs[2]: 'PENDING_UPDATE'}, \
            'the cancel came after the third failover ended'
        final = rb.wait_for(job_id, lambda j: j['state'] == 'CANCELLED',
                            what='cancelled')
    finally:
        sandbox.clear_injection()
    states = {t['target']: t['state'] for t in final['targets']}
    assert states == {lbs[0]: 'FAILED', lbs[1]: 'FAILED', lbs[2]: 'DONE',
                      lbs[3]: 'SKIPPED', lbs[4]: 'SKIPPED'}
    report = rb.report(job_id)
    assert report[lbs[3]]['error'] == 'job cancelled'
    # nothing half-done: the in-flight one finished, the rest untouched
    assert lb_status(sandbox, lbs[2:]) == {lb: 'ACTIVE' for lb in lbs[2:]}
    counts = failovers(sandbox, lbs[2:])
    assert counts == {lbs[2]: (1, 1), lbs[3]: (1, 0), lbs[4]: (1, 0)}


def test_failover_amphorae_restores_error_amphorae(sandbox, runbooks):
    """status=ERROR: an ERROR amphora of an ACTIVE pair gets an amphora
    failover; a SINGLE load balancer in ERROR gets a load-balancer
    failover (Octavia refuses amphora failover unless ACTIVE)."""
    rb = runbooks()
    [pair] = seed.seed_api(sandbox.api, 1, topology='ACTIVE_STANDBY')
    [single] = seed.seed_api(sandbox.api, 1, topology='SINGLE')
    [healthy] = seed.seed_api(sandbox.api, 1, topology='SINGLE')
    master = next(a for a in live_amphorae(sandbox, pair)
                  if a['role'] == 'MASTER')
    [lone] = live_amphorae(sandbox, single)
    sql(sandbox, "UPDATE amphora SET status='ERROR' WHERE id IN (:a, :b)",
        a=master['id'], b=lone['id'])
    sql(sandbox, "UPDATE load_balancer SET provisioning_status='ERROR' "
        "WHERE id=:lb", lb=single)
    view = rb.submit('failover-amphorae', check=0, status='ERROR',
                     loadbalancers=f'{pair},{single},{healthy}')
    assert view['state'] == 'SUCCESS', view
    report = rb.report(view['id'])
    assert set(report) == {master['id'], lone['id']}
    assert report[master['id']]['action'] == 'amphora-failover'
    assert report[lone['id']]['action'] == 'lb-failover'
    assert all(r['state'] == 'DONE' for r in report.values())
    assert failovers(sandbox, [pair, single, healthy]) == {
        pair: (2, 1), single: (1, 1), healthy: (1, 0)}
    assert lb_status(sandbox, [pair, single]) == {pair: 'ACTIVE',
                                                  single: 'ACTIVE'}
    # the standby was left alone
    assert any(a['role'] == 'BACKUP' and a['id'] in
               report[master['id']]['after']['amphorae']
               for a in sandbox.accounting().amphorae(pair))


def test_rotate_certificates_within_days(sandbox, runbooks):
    rb = runbooks()
    [pair] = seed.seed_api(sandbox.api, 1, topology='ACTIVE_STANDBY')
    [single] = seed.seed_api(sandbox.api, 1, topology='SINGLE')
    backup = next(a for a in live_amphorae(sandbox, pair)
                  if a['role'] == 'BACKUP')
    sql(sandbox, 'UPDATE amphora SET cert_expiration = '
        'DATE_ADD(UTC_TIMESTAMP(), INTERVAL 300 DAY) WHERE '
        'load_balancer_id IN (:a, :b)', a=pair, b=single)
    sql(sandbox, 'UPDATE amphora SET cert_expiration = '
        'DATE_ADD(UTC_TIMESTAMP(), INTERVAL 2 DAY) WHERE id=:i',
        i=backup['id'])
    params = {'within_days': 10, 'loadbalancers': f'{pair},{single}'}
    plan = json.loads(rb.cli(
        'submit', 'rotate-certificates', '--dry-run', '-f', 'json',
        *[f'--param={k}={v}' for k, v in params.items()], check=0).stdout)
    assert [t['target'] for t in plan['targets']] == [backup['id']]
    assert {t['reason'].split(' until ')[0] for t in plan['skipped']} == {
        'certificate valid'}
    view = rb.submit('rotate-certificates', check=0, **params)
    assert view['state'] == 'SUCCESS', view
    assert failovers(sandbox, [pair, single]) == {
        pair: (2, 1), single: (1, 0)}
    roles = sorted(a['role'] for a in live_amphorae(sandbox, pair))
    assert roles == ['BACKUP', 'MASTER']


def test_bad_input_exits_2_without_traceback(sandbox, runbooks):
    rb = runbooks()
    for args in (['rotate-images'],
                 ['rotate-images', '--param', 'image_tag=no-such-tag'],
                 ['rotate-images', '--param', 'image_id=x', '--param',
                  'image_tag=y'],
                 ['rotate-images', '--param', 'older_than_days=1',
                  '--param', 'flavor=no-such-flavor'],
                 ['failover-amphorae', '--param', 'status=BROKEN']):
        proc = rb.cli('submit', *args, '--dry-run')
        assert proc.returncode == 2, (args, proc.stderr)
        assert 'Traceback' not in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert rb.cli('list', '--all', '-f', 'json', check=0).stdout.strip() \
        == '[]'


def test_act_step_recognises_its_own_earlier_call(sandbox, runbooks):
    """The crash windows around the failover call, made deterministic:
    target A has its intent recorded and its failover already issued (the
    conductor died right after the call), target B has only its intent
    recorded (it died right before the call).  Resumed, A is only waited
    for and B is failed over: each exactly once."""
    rb = runbooks()
    seeded = seed.seed_api(sandbox.api, 3, topology='SINGLE')
    new_image(sandbox)
    sandbox.inject(fail={'compute.build': 1.0})
    try:
        view = rb.submit('rotate-images', image_tag=IMAGE_TAG,
                         loadbalancers=','.join(seeded), max_failures=1)
    finally:
        sandbox.clear_injection()
    assert view['state'] == 'PAUSED', view
    job_id = view['id']
    pending = [t['target'] for t in rb.targets(job_id)
               if t['state'] == 'PENDING']
    assert len(pending) == 2
    issued, intended = pending
    engine = sa.create_engine(rb.url)
    records = rec.Records(engine)
    now = time.time()
    for lb_id in pending:
        amps = live_amphorae(sandbox, lb_id)
        records.update_target(
            job_id, lb_id, state='RUNNING', add_attempt=True,
            started_at=rec.utcnow(), merge_details={
                'started': now, 'intent': now,
                'before': {'amphorae': [a['id'] for a in amps],
                           'images': sorted({a['image_id'] for a in amps})}})
    engine.dispose()
    sandbox.inject(delays={'compute.build': 1.0})
    try:
        sandbox.connect().load_balancer.failover_load_balancer(issued)
        proc = rb.cli('resume', job_id, '-f', 'json')
    finally:
        sandbox.clear_injection()
    final = json.loads(proc.stdout)
    assert final['state'] == 'FAILED'           # the first target failed
    assert final['reason'] == '1 target(s) failed'
    rows = {t['target']: t for t in rb.targets(job_id)}
    assert rows[issued]['state'] == rows[intended]['state'] == 'DONE'
    assert rows[issued]['details'].get('recovered') is True
    assert 'recovered' not in rows[intended]['details']
    assert failovers(sandbox, pending) == {issued: (1, 1),
                                                  intended: (1, 1)}
