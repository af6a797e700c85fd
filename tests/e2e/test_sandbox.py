"""The sandbox cloud itself: stock Octavia with no-op drivers.

Real Octavia API and worker, real MariaDB and RabbitMQ, reached through
openstacksdk and the clouds.yaml entry the sandbox writes.
"""

import os
import subprocess
import sys
import time

import pytest

from owtools.sandbox import Sandbox, seed

pytestmark = pytest.mark.e2e


def _wait_active(conn, lb_id, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lb = conn.load_balancer.get_load_balancer(lb_id)
        if lb.provisioning_status in ('ACTIVE', 'ERROR'):
            return lb.provisioning_status
        time.sleep(0.1)
    raise AssertionError(f'{lb_id} not settled after {timeout} s')


def _wait_amphorae_settled(conn, lb_id, timeout=30):
    transient = ('PENDING_CREATE', 'PENDING_DELETE', 'BOOTING')
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        amps = list(conn.load_balancer.amphorae(loadbalancer_id=lb_id))
        if not any(a.status in transient for a in amps):
            return
        time.sleep(0.1)
    raise AssertionError(f'amphorae of {lb_id} not settled in {timeout} s')


def test_clouds_yaml_reaches_the_api(sandbox):
    conn = sandbox.connect()
    names = {f.name for f in conn.load_balancer.flavors()}
    assert {'single', 'active-standby'} <= names


def test_seeded_topologies_have_their_amphorae(sandbox):
    api = sandbox.api
    single = seed.seed_api(api, 2, topology='SINGLE')
    pair = seed.seed_api(api, 1, topology='ACTIVE_STANDBY')
    by_lb = sandbox.accounting().amphorae_by_lb(single + pair)
    assert [by_lb[i] for i in single] == [{'ALLOCATED': 1}] * 2
    assert by_lb[pair[0]] == {'ALLOCATED': 2}
    roles = {a['role'] for a in sandbox.accounting().amphorae(pair[0])}
    assert roles == {'MASTER', 'BACKUP'}


def test_delay_and_fields_are_injected_without_restart(sandbox):
    conn = sandbox.connect()
    [lb_id] = seed.seed_api(sandbox.api, 1)
    sandbox.inject(delays={'compute.build': 2.0},
                   amphora_fields={'compute_flavor': 'flavor-x'})
    try:
        started = time.monotonic()
        conn.load_balancer.failover_load_balancer(lb_id)
        assert _wait_active(conn, lb_id) == 'ACTIVE'
        took = time.monotonic() - started
    finally:
        sandbox.clear_injection()
    assert took >= 2.0
    assert sandbox.accounting().failovers_by_lb([lb_id]) == {lb_id: 1}
    live = [a for a in sandbox.accounting().amphorae(lb_id)
            if a['status'] != 'DELETED']
    assert [a['compute_flavor'] for a in live] == ['flavor-x']


def test_injected_failure_ends_failover_in_error(sandbox):
    conn = sandbox.connect()
    [lb_id] = seed.seed_api(sandbox.api, 1)
    sandbox.inject(fail={'compute.build': 1.0})
    try:
        conn.load_balancer.failover_load_balancer(lb_id)
        assert _wait_active(conn, lb_id) == 'ERROR'
    finally:
        sandbox.clear_injection()
    # the worker marks the load balancer ERROR before its failed flow has
    # finished reverting (the new amphora is still being cleaned up): a
    # second failover started meanwhile can trip over it
    _wait_amphorae_settled(conn, lb_id)
    conn.load_balancer.failover_load_balancer(lb_id)
    assert _wait_active(conn, lb_id) == 'ACTIVE'


def test_amphora_images_match_the_standin(sandbox):
    conn = sandbox.connect()
    [lb_id] = seed.seed_api(sandbox.api, 1)
    amp = next(iter(conn.load_balancer.amphorae(loadbalancer_id=lb_id)))
    image_ids = {i.id for i in conn.image.images()}
    assert amp.image_id in image_ids


def test_configure_calls_are_accounted(sandbox):
    conn = sandbox.connect()
    [lb_id] = seed.seed_api(sandbox.api, 1)
    amp = next(iter(conn.load_balancer.amphorae(loadbalancer_id=lb_id)))
    conn.load_balancer.configure_amphora(amp.id)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if sandbox.accounting().configured_amphorae().get(amp.id):
            break
        time.sleep(0.1)
    assert sandbox.accounting().configured_amphorae()[amp.id] == 1


def test_seed_db_inserts_active_load_balancers(sandbox):
    started = time.monotonic()
    ids = seed.seed_db(sandbox.db_url, 300, topology='ACTIVE_STANDBY',
                       zones=['az1', 'az2'])
    assert time.monotonic() - started < 30
    conn = sandbox.connect()
    lb = conn.load_balancer.get_load_balancer(ids[-1])
    assert lb.provisioning_status == 'ACTIVE'
    amps = list(conn.load_balancer.amphorae(loadbalancer_id=ids[0]))
    assert sorted(a.role for a in amps) == ['BACKUP', 'MASTER']


def test_a_second_sandbox_runs_side_by_side(sandbox, tmp_path):
    other = Sandbox('second', directory=tmp_path / 'second')
    other.start(user_clouds=False)
    try:
        assert other.api_url != sandbox.api_url
        [lb_id] = seed.seed_api(other.api, 1)
        assert lb_id not in sandbox.accounting().amphorae_by_lb()
        pids = other.pids()
    finally:
        other.stop()
    assert not other.running()
    # the session's sandbox is untouched by the other one's stop
    assert sandbox.running()
    for pid in pids.values():
        proc = subprocess.run(['kill', '-0', str(pid)], capture_output=True,
                              check=False)
        assert proc.returncode != 0


def test_command_line_bad_usage_exits_2():
    tools = os.path.join(os.path.dirname(__file__), '..', '..', 'tools')
    proc = subprocess.run([sys.executable, '-m', 'owtools.sandbox',
                           'inject', '--delay', 'nonsense'],
                          capture_output=True, text=True, check=False,
                          env=dict(os.environ, PYTHONPATH=tools))
    assert proc.returncode == 2
    assert 'Traceback' not in proc.stderr
