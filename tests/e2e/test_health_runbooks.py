"""Health-aware runbooks on the heartbeating sandbox: Octavia's real health
manager and its real circuit breaker, counted in Octavia's own database.

- The health manager's breaker trips for real (``failover_threshold``):
  ``failover-amphorae status=FAILOVER_STOPPED`` fails over only the
  amphorae that bring the stale count below the threshold, exactly once
  across a conductor SIGKILL, and leaves the rest to the health
  manager.
- ``canary=2`` on a good image: the job waits at the canary gate after
  two load balancers, a conductor killed meanwhile redoes nothing, and on
  ``approve`` the rotation finishes with every load balancer ONLINE (as
  Octavia's health manager reports it).
"""

import contextlib
import signal
import time
import uuid

import pytest
import sqlalchemy as sa

from e2e.runbookhelp import RunbookCli, failovers, lb_status, until
from owtools.sandbox import seed
from owtools.standin import StandinState

pytestmark = pytest.mark.e2e

EXPIRY = 4
#: Stale after heartbeat_timeout (20 s), found at the next check (2 s),
#: failed over in about a second; generous for a loaded machine.
STALE_WAIT = 90
STOPPED = 'FAILOVER_STOPPED'
IMAGE_TAG = 'amphora'
FINISHED = ('SUCCESS', 'FAILED', 'CANCELLED')


@pytest.fixture
def rb(tmp_path, request):
    made = RunbookCli(tmp_path, 'redis', request.getfixturevalue(
        'redis_server'), expiry=EXPIRY)
    yield made
    made.stop()


def _rows(sandbox, statement, **params):
    with sandbox.accounting().engine.connect() as conn:
        query = sa.text(statement)
        for name, value in params.items():
            if isinstance(value, (list, tuple)):
                query = query.bindparams(sa.bindparam(name, expanding=True))
        return conn.execute(query, params).fetchall()


def _amphorae(sandbox, lb_ids):
    """{lb: [(amphora id, status)]} of the live amphorae."""
    found = {lb: [] for lb in lb_ids}
    for lb, amp, status in _rows(
            sandbox, 'SELECT load_balancer_id, id, status FROM amphora WHERE '
            'load_balancer_id IN :lbs AND status != :gone',
            lbs=list(lb_ids), gone='DELETED'):
        found[lb].append((amp, status))
    return found


def _heartbeating(sandbox, lb_ids):
    amps = [a for lb in _amphorae(sandbox, lb_ids).values() for a, _ in lb]
    seen = {r[0] for r in _rows(
        sandbox, 'SELECT amphora_id FROM amphora_health WHERE amphora_id '
        'IN :ids', ids=amps)} if amps else set()
    return amps if amps and set(amps) <= seen else None


def _operating(sandbox, lb_ids):
    return dict(_rows(sandbox, 'SELECT id, operating_status FROM '
                      'load_balancer WHERE id IN :ids', ids=list(lb_ids)))


def _fleet_stopped(sandbox):
    return _rows(sandbox, 'SELECT count(*) FROM amphora WHERE status = '
                 ':s', s=STOPPED)[0][0]


def _wait_pending(sandbox, lb_ids, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if 'PENDING_UPDATE' in lb_status(sandbox, lb_ids).values():
            return
        time.sleep(0.02)
    raise AssertionError('no failover started')


def test_failover_stopped_recovers_paced_down_to_the_threshold(sandbox, rb):
    health = sandbox.health()
    lbs = seed.seed_api(sandbox.api, 4, prefix='fs')
    old = until('heartbeating', lambda: _heartbeating(sandbox, lbs))
    try:
        # all four go quiet before the restarted health manager's first
        # check: four stale at once, threshold three -- the breaker trips
        sandbox.heartbeat_knobs(silent_amphorae=old)
        health.restart(failover_threshold=3, timeout=120)
        until('FAILOVER_STOPPED', lambda: all(
            s == STOPPED for lb in _amphorae(sandbox, lbs).values()
            for _, s in lb), timeout=STALE_WAIT)
        assert failovers(sandbox, lbs) == {lb: (1, 0) for lb in lbs}
        stale = _fleet_stopped(sandbox)
        room = stale - 3 + 1
        assert room >= 1

        first = rb.conductor('first')
        job = rb.submit('failover-amphorae', check=0, status=STOPPED,
                        failover_threshold=3, loadbalancers=','.join(lbs),
                        interval=1, health_timeout=60)
        job_id = job['id']
        _wait_pending(sandbox, lbs)          # right after the first call
        first.send_signal(signal.SIGKILL)
        first.wait()
        rb.conductor('second')
        final = rb.wait_for(job_id, lambda j: j['state'] in FINISHED,
                            timeout=120, what='the end')
        assert final['state'] == 'SUCCESS', final
        report = rb.report(job_id)
        done = [t for t, r in report.items() if r['state'] == 'DONE']
        left = [t for t, r in report.items() if r['state'] == 'SKIPPED']
        assert len(done) == min(room, 4)
        assert all('left to the health manager' in report[t]['error']
                   for t in left)
        ours = [lb for lb in lbs
                if any(a in done for a, _ in _amphorae_ever(sandbox, lb))]
        assert len(ours) == len(done)
        # exactly once each, counted in Octavia's database
        assert failovers(sandbox, ours) == {lb: (1, 1) for lb in ours}
    finally:
        sandbox.heartbeat_knobs(clear=True)
        health.restart(failover_threshold=None, timeout=120)


def _amphorae_ever(sandbox, lb):
    return [tuple(r) for r in _rows(
        sandbox, 'SELECT id, status FROM amphora WHERE load_balancer_id = '
        ':lb', lb=lb)]


def _new_image(sandbox):
    """A newer image carrying the amphora tag (new amphorae boot from
    it)."""
    state = StandinState(str(sandbox.dir / 'standin.db'))
    return state.create_image(f'amphora-{uuid.uuid4().hex[:6]}',
                              tags=[IMAGE_TAG])['id']


def test_canary_waits_after_two_and_finishes_online_on_approve(sandbox, rb):
    lbs = seed.seed_api(sandbox.api, 3, prefix='canary')
    until('heartbeating', lambda: _heartbeating(sandbox, lbs))
    until('ONLINE', lambda: set(_operating(sandbox, lbs).values()) ==
           {'ONLINE'})
    _new_image(sandbox)
    first = rb.conductor('first')
    job = rb.submit('rotate-images', check=0, image_tag=IMAGE_TAG,
                    loadbalancers=','.join(lbs), canary=2,
                    canary_settle=6, health_timeout=60, max_failures=1)
    job_id = job['id']
    view = rb.wait_for(job_id, lambda j: j['state'] in FINISHED + (
        'PAUSED',), timeout=120, what='the canary gate')
    assert view['state'] == 'PAUSED', view
    assert view['gate'].startswith('canary: the first 2 target(s) are '
                                   'verified healthy')
    assert 'ONLINE -> ONLINE' in view['gate']
    counts = failovers(sandbox, lbs)
    assert sorted(counts.values()) == [(1, 0), (1, 1), (1, 1)]
    # the conductor dies while the job waits: nothing is redone
    first.send_signal(signal.SIGKILL)
    first.wait()
    rb.conductor('second')
    time.sleep(EXPIRY + 1)
    assert failovers(sandbox, lbs) == counts
    assert rb.show(job_id)['state'] == 'PAUSED'
    rb.cli('approve', job_id, check=0)
    final = rb.wait_for(job_id, lambda j: j['state'] in FINISHED,
                        timeout=120, what='the end')
    assert final['state'] == 'SUCCESS', final
    assert failovers(sandbox, lbs) == {lb: (1, 1) for lb in lbs}
    report = rb.report(job_id)
    assert all(report[lb]['after']['operating_status'] == 'ONLINE'
               for lb in lbs)
    until('every load balancer ONLINE', lambda: set(_operating(
        sandbox, lbs).values()) == {'ONLINE'})


def _active(conn, lb_id):
    until(f'{lb_id} ACTIVE', lambda: conn.load_balancer.get_load_balancer(
        lb_id).provisioning_status == 'ACTIVE')


def _lb_with_member(sandbox):
    """A load balancer with a listener, a monitored pool and a member (a
    bad image makes that member ERROR)."""
    conn = sandbox.connect()
    lb = conn.load_balancer
    [lb_id] = seed.seed_api(sandbox.api, 1, prefix='bad')
    listener = lb.create_listener(loadbalancer_id=lb_id, protocol='HTTP',
                                  protocol_port=80)
    _active(conn, lb_id)
    pool = lb.create_pool(listener_id=listener.id, protocol='HTTP',
                          lb_algorithm='ROUND_ROBIN')
    _active(conn, lb_id)
    lb.create_health_monitor(pool_id=pool.id, type='HTTP', delay=5,
                             timeout=3, max_retries=2)
    _active(conn, lb_id)
    lb.create_member(pool, address='192.0.2.10', protocol_port=80)
    _active(conn, lb_id)
    return lb_id


@contextlib.contextmanager
def _bad_image(sandbox):
    """A new image carrying a tag of its own whose amphorae report their
    members DOWN; yields the tag (new amphorae boot from it)."""
    tag = f'bad-{uuid.uuid4().hex[:6]}'
    bad = StandinState(str(sandbox.dir / 'standin.db')).create_image(
        tag, tags=[tag])['id']
    sandbox.heartbeat_knobs(bad_images=[bad])
    sandbox.inject(amphora_fields={'image_id': bad})
    try:
        yield tag
    finally:
        sandbox.inject(amphora_fields={'image_id': None})
        sandbox.heartbeat_knobs(clear=True)


def test_canary_on_a_bad_image_breaks_one_and_says_so(sandbox, rb):
    lbs = [_lb_with_member(sandbox) for _ in range(3)]
    until('ONLINE', lambda: set(_operating(sandbox, lbs).values()) ==
           {'ONLINE'})
    with _bad_image(sandbox) as tag:
        rb.conductor('canary')
        job = rb.submit('rotate-images', check=0, image_tag=tag,
                        loadbalancers=','.join(lbs), canary=1,
                        canary_settle=10, health_timeout=5, max_failures=5,
                        health_settle=8)
        view = rb.wait_for(job['id'], lambda j: j['state'] in FINISHED + (
            'PAUSED',), timeout=180, what='the canary gate')
    assert view['state'] == 'PAUSED', view
    assert view['gate'].startswith('canary FAILED: 1 of the first 1 '
                                   'target(s)'), view['gate']
    # one load balancer broken, the others untouched (Octavia's database)
    counts = failovers(sandbox, lbs)
    assert sorted(counts.values()) == [(1, 0), (1, 0), (1, 1)]
    [broken] = [lb for lb in lbs if counts[lb] == (1, 1)]
    assert _operating(sandbox, [broken])[broken] in ('ERROR', 'DEGRADED')
    rb.cli('reject', job['id'], check=0)
    assert rb.show(job['id'])['state'] == 'CANCELLED'
    assert failovers(sandbox, lbs) == counts


def test_a_bad_image_breaks_max_failures_and_pauses(sandbox, rb):
    """Rotation onto a bad image with max_failures=2: Octavia's health
    manager turns the failed-over load balancers ERROR only once it hears
    from the new amphorae; each target watches for that (health_settle),
    FAILS with the regression, and the breaker pauses the job after
    exactly two broken load balancers, also across a conductor SIGKILL."""
    lbs = [_lb_with_member(sandbox) for _ in range(3)]
    until('ONLINE', lambda: set(_operating(sandbox, lbs).values()) ==
           {'ONLINE'})
    with _bad_image(sandbox) as tag:
        first = rb.conductor('first')
        job = rb.submit('rotate-images', check=0, image_tag=tag,
                        loadbalancers=','.join(lbs), max_failures=2,
                        health_timeout=5, health_settle=8)
        rb.wait_for(job['id'], lambda j: j['progress']['failed'] >= 1,
                    timeout=120, what='the first regression')
        first.send_signal(signal.SIGKILL)
        first.wait()
        rb.conductor('second')
        waited = rb.cli('wait', job['id'], '--timeout', '180')
        view = rb.show(job['id'])
    assert waited.returncode == 5, (waited.stdout, waited.stderr)
    assert view['state'] == 'PAUSED' and view['paused_by'] == 'job', view
    assert view['progress']['failed'] == 2, view
    failed = [t for t in view['targets'] if t['state'] == 'FAILED']
    assert all(t['error'].startswith('health regression: ONLINE -> ')
               for t in failed), failed
    counts = failovers(sandbox, lbs)
    assert sorted(counts.values()) == [(1, 0), (1, 1), (1, 1)], counts
    broken = [lb for lb in lbs if counts[lb] == (1, 1)]
    assert set(_operating(sandbox, broken).values()) <= {'ERROR',
                                                          'DEGRADED'}


def test_reconfigure_moves_heartbeats_and_reports_one_that_does_not_follow(
        sandbox, tmp_path):
    """The adoption procedure: a second health manager, the new list
    pushed to every amphora; Octavia's amphora_health shows each one's
    heartbeats arrive -- except from an amphora that stays silent, which
    FAILS and is pushed only once."""
    from owtools.sandbox import heartbeats

    health = sandbox.health()
    lbs = seed.seed_api(sandbox.api, 2, prefix='reconf')
    until('heartbeating', lambda: _heartbeating(sandbox, lbs))
    amps = _amphorae(sandbox, lbs)
    follows, silent = amps[lbs[0]][0][0], amps[lbs[1]][0][0]
    rb = RunbookCli(tmp_path, groups={
        'octavia_database': {'connection': sandbox.db_url}})
    try:
        # the new health manager, guarded by its breaker while amphorae
        # move (stale ones are marked FAILOVER_STOPPED, not failed over);
        # the old one stopped: only the new one can record a heartbeat
        health.configure(failover_threshold=1)
        second = health.add_manager('reconf', timeout=120)
        health.set_controllers([second])
        health._stop_key('health-manager')
        sandbox.heartbeat_knobs(silent_amphorae=[silent])
        proc = rb.cli('submit', 'reconfigure-amphorae', '-f', 'json',
                      *rb.params({'loadbalancers': ','.join(lbs),
                                  'health_managers_stopped': 'true',
                                  'heartbeat_timeout': 20,
                                  'max_failures': 0}), timeout=300)
        assert proc.returncode == 1, proc.stderr     # one target FAILED
        [job] = rb.jobs()
        report = rb.report(job['id'])
        ok, failed = report[follows], report[silent]
        assert ok['state'] == 'DONE', ok
        assert ok['after']['last_heartbeat'] > (
            ok['before']['last_heartbeat'] or '')
        entry = heartbeats.read_status(sandbox.dir)['amphorae'][follows]
        assert entry['controllers'] == [second]
        assert failed['state'] == 'FAILED'
        assert failed['error'].startswith(
            f'no heartbeat from amphora {silent} reached a health manager '
            f'within 20 s of the configuration push')
        assert failed['after']['calls'] == 1
        configured = sandbox.accounting().configured_amphorae()
        assert configured.get(follows) == 1 and configured.get(silent) == 1
    finally:
        sandbox.heartbeat_knobs(clear=True)
        health.reset_controllers()
        with contextlib.suppress(Exception):
            health.stop_manager('reconf')
        health.restart(failover_threshold=None, timeout=120)
        rb.stop()
