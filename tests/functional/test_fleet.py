"""The fleet coordination contract, on real Redis and ZooKeeper.

Every driver with the FLEET capability must: never grant more budget
slots than the budget, also to many clients racing; lock a key for one
job at a time (re-entrant for that job) and say which job holds it; give
everything back, recording when a lock was released; and let a SIGKILLed
holder's slots and locks come back within the claim expiry.
"""

import concurrent.futures
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from functional.conftest import board_options
from functional.test_jobboards import _conf
from octavia_workflows.engine import coordination, jobboard
from octavia_workflows.engine.jobboard import base

pytestmark = pytest.mark.functional

EXPIRY = 2


@pytest.fixture
def connect(request, board, namespace, tmp_path):
    server = request.getfixturevalue(f'{board}_server')
    conf = _conf(tmp_path, board_options(board, server, namespace, EXPIRY))
    made = []

    def make():
        drv = jobboard.fetch(conf)
        drv.connect()
        if not made and board == 'redis':
            _settled(drv)
        made.append(drv)
        return drv

    make.conf_file = tmp_path / 'board.conf'
    yield make
    for drv in made:
        drv.close()


def _settled(drv):
    """A Redis server grants budget slots on a new board once it has been
    up one claim expiry (it cannot tell a new board from one whose data
    it lost: doc/fleet.md)."""
    deadline = time.monotonic() + EXPIRY + 5
    while drv.client.info('server')['uptime_in_seconds'] < EXPIRY:
        assert time.monotonic() < deadline
        time.sleep(0.1)


def test_drivers_declare_fleet(connect):
    assert base.FLEET in connect().capabilities


def test_the_budget_is_never_exceeded_by_racing_clients(connect):
    drivers = [connect() for _ in range(4)]
    budget = 3
    in_flight = []
    peak = []
    guard = threading.Lock()

    def worker(n):
        drv = drivers[n % len(drivers)]
        got = 0
        for attempt in range(6):
            member = f'job-{n}/t-{attempt}'
            grant = drv.fleet_take(member, f'job-{n}', [], budget)
            if not grant.granted:
                assert grant.refused == base.BUDGET
                time.sleep(0.01)
                continue
            got += 1
            with guard:
                in_flight.append(member)
                peak.append(len(in_flight))
            time.sleep(0.02)
            with guard:
                in_flight.remove(member)
            drv.fleet_give(member, f'job-{n}', [])
        return got

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        granted = sum(pool.map(worker, range(8)))
    assert granted > budget          # slots were given back and re-used
    assert max(peak) <= budget
    assert drivers[0].fleet_in_use() == 0


def test_a_lock_is_held_by_one_job_and_says_which(connect):
    one, two = connect(), connect()
    assert one.fleet_take('job-a/lb1', 'job-a', ['lb:1'], 0).granted
    # re-entrant for the same job (another of its targets)
    assert one.fleet_take('job-a/amp1', 'job-a', ['lb:1'], 0).granted
    refused = two.fleet_take('job-b/lb1', 'job-b', ['lb:1', 'lb:2'], 0)
    assert not refused.granted
    assert (refused.refused, refused.holder, refused.key) == (
        base.LOCKED, 'job-a', 'lb:1')
    # all or nothing: lb:2 was not left locked by the refused request
    assert one.fleet_take('job-c/lb2', 'job-c', ['lb:2'], 0).granted
    before = time.time()
    one.fleet_give('job-a/lb1', 'job-a', ['lb:1'])
    grant = two.fleet_take('job-b/lb1', 'job-b', ['lb:1'], 0)
    assert grant.granted
    assert grant.released_at is not None
    assert abs(grant.released_at - before) < 5


def test_a_take_refused_for_the_budget_leaves_its_locks_free(connect):
    # a fresh board: no lock was ever given back before this refusal
    one, two = connect(), connect()
    assert one.fleet_take('job-d/a', 'job-d', ['lb:1'], 1,
                          force=True).granted
    refused = two.fleet_take('job-e/a', 'job-e', ['lb:2'], 1)
    assert not refused.granted and refused.refused == base.BUDGET
    locked = one.fleet_take('job-f/b', 'job-f', ['lb:2'], 0)
    assert locked.granted, f'lb:2 left locked by {locked.holder}'


def test_a_refused_lock_takes_no_budget_slot(connect):
    drv = connect()
    assert drv.fleet_take('job-a/x', 'job-a', ['lb:x'], 1).granted
    assert not drv.fleet_take('job-b/x', 'job-b', ['lb:x'], 2).granted
    assert drv.fleet_in_use() == 1
    assert not drv.fleet_take('job-b/y', 'job-b', ['lb:y'], 1).granted
    # forced (a target adopted in flight): counted whatever the budget
    assert drv.fleet_take('job-b/y', 'job-b', ['lb:y'], 1,
                          force=True).granted
    assert drv.fleet_in_use() == 2


def test_fleet_of_a_run_keeps_keys_other_targets_still_hold(connect):
    drv, other = connect(), connect()
    fleet = coordination.Fleet(drv, 'job-a', budget=5)
    assert fleet.take('amp-1', ['lb:1']).granted
    assert fleet.take('amp-2', ['lb:1']).granted
    fleet.give('amp-1')
    assert not other.fleet_take('job-b/t', 'job-b', ['lb:1'], 0).granted
    fleet.give('amp-2')
    assert other.fleet_take('job-b/t', 'job-b', ['lb:1'], 0).granted
    assert drv.fleet_in_use() == 0


def test_leases_are_exclusive(connect):
    one, two = connect(), connect()
    assert one.try_lease('fleet-audit', 'c1', 30)
    assert one.try_lease('fleet-audit', 'c1', 30)
    assert not two.try_lease('fleet-audit', 'c2', 30)
    one.release_lease('fleet-audit', 'c1')
    assert two.try_lease('fleet-audit', 'c2', 30)


HOLDER = textwrap.dedent('''
    import sys, time
    from octavia_workflows import conf as ow_conf
    from octavia_workflows.engine import jobboard
    drv = jobboard.fetch(ow_conf.load([sys.argv[1]]))
    drv.connect()
    assert drv.fleet_take('job-dead/lb9', 'job-dead', ['lb:9'], 1).granted
    assert drv.try_lease('fleet-audit', 'dead', 2)
    print('held', flush=True)
    time.sleep(600)
''')


def test_a_killed_holder_gives_everything_back_within_the_expiry(connect):
    proc = subprocess.Popen([sys.executable, '-c', HOLDER,
                             str(connect.conf_file)],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == 'held'
        drv = connect()
        refused = drv.fleet_take('job-x/lb9', 'job-x', ['lb:9'], 1)
        assert not refused.granted and refused.holder == 'job-dead'
        assert drv.fleet_in_use() == 1
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        killed = time.monotonic()
        while not drv.fleet_take('job-x/lb9', 'job-x', ['lb:9'], 1).granted:
            assert time.monotonic() - killed < EXPIRY + 5
            time.sleep(0.2)
        assert drv.fleet_in_use() == 1     # ours now, theirs gone
        assert drv.try_lease('fleet-audit', 'alive', 60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
