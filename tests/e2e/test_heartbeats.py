"""Heartbeats in the sandbox: Octavia's own health manager sets the health.

The sandbox runs stock ``octavia-health-manager`` and an amphora-agent
stand-in that sends the signed UDP heartbeats a real amphora sends; every
assertion reads what Octavia itself wrote into its database (operating
statuses, ``amphora_health``, ``listener_statistics``, amphora rows).
"""

import datetime
import uuid

import pytest

from e2e.runbookhelp import until
from owtools.sandbox import heartbeats, seed

pytestmark = pytest.mark.e2e

# Stale after heartbeat_timeout (20 s), found at the next health check
# (2 s), failed over in about a second; generous for a loaded machine.
STALE_WAIT = 60


def _active(conn, lb_id):
    until(f'{lb_id} ACTIVE', lambda: conn.load_balancer.get_load_balancer(
        lb_id).provisioning_status == 'ACTIVE')


def _lb_with_member(sandbox, monitor=True):
    """A load balancer with a listener, a pool (with a health monitor) and
    one member: (lb_id, listener_id, pool_id, member_id)."""
    conn = sandbox.connect()
    lb = conn.load_balancer
    [lb_id] = seed.seed_api(sandbox.api, 1, prefix='hb')
    listener = lb.create_listener(loadbalancer_id=lb_id, protocol='HTTP',
                                  protocol_port=80)
    _active(conn, lb_id)
    pool = lb.create_pool(listener_id=listener.id, protocol='HTTP',
                          lb_algorithm='ROUND_ROBIN')
    _active(conn, lb_id)
    if monitor:
        lb.create_health_monitor(pool_id=pool.id, type='HTTP', delay=5,
                                 timeout=3, max_retries=2)
        _active(conn, lb_id)
    member = lb.create_member(pool, address='192.0.2.10', protocol_port=80)
    _active(conn, lb_id)
    return lb_id, listener.id, pool.id, member.id


def _statuses(acc, lb_id, listener_id, pool_id, member_id):
    return (acc.operating_statuses('load_balancer', [lb_id])[lb_id],
            acc.operating_statuses('listener', [listener_id])[listener_id],
            acc.operating_statuses('pool', [pool_id])[pool_id],
            acc.operating_statuses('member', [member_id])[member_id])


def _live_amphorae(acc, lb_id):
    return [a['id'] for a in acc.amphorae(lb_id)
            if a['status'] not in ('DELETED', 'ERROR')]


def _heartbeating(acc, lb_id):
    amps = _live_amphorae(acc, lb_id)
    health = acc.amphora_health(amps)
    return amps if amps and all(a in health for a in amps) else None


def test_health_manager_sets_online_health_and_statistics(sandbox):
    acc = sandbox.accounting()
    ids = _lb_with_member(sandbox)
    assert until('ONLINE', lambda: _statuses(acc, *ids) == (
        'ONLINE', 'ONLINE', 'ONLINE', 'ONLINE'))
    [amp_id] = until('heartbeating', lambda: _heartbeating(acc, ids[0]))
    first = acc.amphora_health([amp_id])[amp_id][0]
    key = (ids[1], amp_id)
    stats = until('statistics', lambda: acc.listener_statistics([ids[1]])
                   .get(key))
    # Each heartbeat adds its deltas: the counters and the health row move.
    assert until('more statistics', lambda: acc.listener_statistics(
        [ids[1]])[key]['bytes_in'] > stats['bytes_in'])
    assert until('a later heartbeat', lambda: acc.amphora_health(
        [amp_id])[amp_id][0] > first)


def test_bad_image_after_failover_makes_members_error(sandbox):
    conn = sandbox.connect()
    acc = sandbox.accounting()
    ids = _lb_with_member(sandbox)
    lb_id, _, pool_id, member_id = ids
    until('ONLINE', lambda: _statuses(acc, *ids)[0] == 'ONLINE')
    bad = str(uuid.uuid4())       # an image id (36 characters)
    sandbox.heartbeat_knobs(bad_images=[bad])
    sandbox.inject(amphora_fields={'image_id': bad})
    try:
        conn.load_balancer.failover_load_balancer(lb_id)
        _active(conn, lb_id)
        until('member ERROR', lambda: acc.operating_statuses(
            'member', [member_id])[member_id] == 'ERROR')
    finally:
        sandbox.inject(amphora_fields={'image_id': None})
    lb_status, _, pool_status, _ = _statuses(acc, *ids)
    assert pool_status in ('ERROR', 'DEGRADED')
    assert lb_status in ('ERROR', 'DEGRADED')
    [amp] = [a for a in acc.amphorae(lb_id) if a['status'] == 'ALLOCATED']
    assert amp['image_id'] == bad
    # Back onto a good image: Octavia sets everything ONLINE again.
    sandbox.heartbeat_knobs(bad_images=[])
    conn.load_balancer.failover_load_balancer(lb_id)
    _active(conn, lb_id)
    assert until('ONLINE again', lambda: _statuses(acc, *ids) == (
        'ONLINE', 'ONLINE', 'ONLINE', 'ONLINE'))


def test_silent_load_balancer_is_failed_over_by_the_health_manager(sandbox):
    acc = sandbox.accounting()
    [lb_id, other] = seed.seed_api(sandbox.api, 2, prefix='hb-silent')
    [old] = until('heartbeating', lambda: _heartbeating(acc, lb_id))
    until('heartbeating', lambda: _heartbeating(acc, other))
    sandbox.heartbeat_knobs(silent_load_balancers=[lb_id])
    try:
        until('failed over', lambda: acc.amphorae_by_lb(
            [lb_id])[lb_id].get('DELETED'), timeout=STALE_WAIT)
    finally:
        sandbox.heartbeat_knobs(silent_load_balancers=[])
    # Nobody asked for it: the health manager did it. The old amphora is
    # gone, a new one heartbeats; the load balancer that kept sending was
    # left alone.
    _active(sandbox.connect(), lb_id)
    assert old not in _live_amphorae(acc, lb_id)
    until('new amphora heartbeating', lambda: _heartbeating(acc, lb_id))
    assert acc.amphorae_by_lb([other])[other] == {'ALLOCATED': 1}


def test_failover_threshold_marks_amphorae_failover_stopped(sandbox):
    acc = sandbox.accounting()
    health = sandbox.health()
    lb_ids = seed.seed_api(sandbox.api, 2, prefix='hb-breaker')
    amps = [until('heartbeating', lambda i=i: _heartbeating(acc, i))[0]
            for i in lb_ids]
    try:
        # Both go quiet before the restarted health manager's first check
        # (it waits one heartbeat_timeout after start): it finds two stale
        # amphorae at once, the threshold, and fails neither over.
        sandbox.heartbeat_knobs(silent_load_balancers=lb_ids)
        health.restart(failover_threshold=2)

        def stopped():
            rows = {a['id']: a['status'] for i in lb_ids
                    for a in acc.amphorae(i)}
            return all(rows.get(a) == 'FAILOVER_STOPPED' for a in amps)
        until('FAILOVER_STOPPED', stopped, timeout=STALE_WAIT)
        assert acc.amphorae_by_lb(lb_ids) == {
            i: {'FAILOVER_STOPPED': 1} for i in lb_ids}
        # Heartbeats back: Octavia returns them to ALLOCATED by itself.
        sandbox.heartbeat_knobs(silent_load_balancers=[])
        until('ALLOCATED again', lambda: acc.amphorae_by_lb(lb_ids) == {
            i: {'ALLOCATED': 1} for i in lb_ids}, timeout=STALE_WAIT)
    finally:
        sandbox.heartbeat_knobs(silent_load_balancers=[])
        health.restart(failover_threshold=None)


def test_config_push_moves_heartbeats_to_a_second_health_manager(sandbox):
    acc = sandbox.accounting()
    health = sandbox.health()
    [lb_id] = seed.seed_api(sandbox.api, 1, prefix='hb-push')
    # One amphora on an image whose agent does not reload its health
    # manager list on a configuration push (Octavia bug 2121691).
    old_image = str(uuid.uuid4())
    sandbox.inject(amphora_fields={'image_id': old_image})
    try:
        [stuck_lb] = seed.seed_api(sandbox.api, 1, prefix='hb-push-old')
    finally:
        sandbox.inject(amphora_fields={'image_id': None})
    sandbox.heartbeat_knobs(no_reload_images=[old_image])
    [amp_id] = until('heartbeating', lambda: _heartbeating(acc, lb_id))
    [stuck] = until('heartbeating', lambda: _heartbeating(acc, stuck_lb))
    main = health.address()
    second = health.add_manager('second')
    try:
        health.set_controllers([second])
        # The worker renders the agent configuration with the new list
        # and pushes it through the amphora driver.
        for amp in (amp_id, stuck):
            sandbox.api.put(f'/v2/octavia/amphorae/{amp}/config', {})

        def sending(amp):
            return heartbeats.read_status(sandbox.dir).get(
                'amphorae', {}).get(amp, {}).get('controllers')
        until('sending to the second manager',
               lambda: sending(amp_id) == [second])
        until('both pushes made', lambda: {amp_id, stuck} <= set(
            acc.configured_amphorae()))
        assert sending(stuck) == [main]
        health.reset_controllers()
        # Only the second health manager hears the first now: it stays
        # healthy for longer than heartbeat_timeout...
        since = datetime.datetime.utcnow().replace(microsecond=0)
        until('health updated by the second manager', lambda: acc
               .amphora_health([amp_id])[amp_id][0] > since
               + datetime.timedelta(seconds=22), timeout=STALE_WAIT)
        assert acc.amphorae_by_lb([lb_id])[lb_id] == {'ALLOCATED': 1}
    finally:
        sandbox.heartbeat_knobs(no_reload_images=[])
        health.reset_controllers()
        health.stop_manager('second')
    # The amphora that did not follow kept sending to the first manager
    # and is left alone.
    assert acc.amphorae_by_lb([stuck_lb])[stuck_lb] == {'ALLOCATED': 1}
