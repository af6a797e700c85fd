"""Host locks on real Redis and ZooKeeper: a job run that acts on a
compute host holds ``host:<name>`` from its first target that takes it
to its end, and the host runbooks' steps wait for (and finally skip) a
host another job holds, saying why in the target's record.

The steps run against the fake cloud of the unit tests (Octavia and Nova
are not what this is about; the board is real).
"""

import time

import pytest
from unit import fakecloud

from functional.conftest import board_options
from functional.test_jobboards import _conf
from octavia_workflows import exceptions, states, workflow
from octavia_workflows.engine import coordination, jobboard
from octavia_workflows.engine.jobboard import base

pytestmark = pytest.mark.functional

EXPIRY = 2
HOST = 'host-1'


def _driver(tmp_path, board, server, namespace, made):
    conf = _conf(tmp_path, board_options(board, server, namespace, EXPIRY))
    drv = jobboard.fetch(conf)
    drv.connect()
    made.append(drv)
    return drv


@pytest.fixture
def connect(request, board, namespace, tmp_path):
    server = request.getfixturevalue(f'{board}_server')
    made = []
    yield lambda: _driver(tmp_path, board, server, namespace, made)
    for drv in made:
        drv.close()


def _locked_by(drv, key):
    """The job holding ``key`` (None: free; then it is free again)."""
    grant = drv.fleet_take('probe/x', 'probe', [key], 0)
    if grant.granted:
        drv.fleet_give('probe/x', 'probe', [key])
        return None
    return grant.holder


def test_a_host_stays_held_by_the_run_until_it_ends(connect, board):
    drv, other = connect(), connect()
    run = coordination.Fleet(drv, 'job-e')
    assert run.take('amp-1', ['lb:1', f'host:{HOST}']).granted
    run.give('amp-1')
    # the load balancer went back with the target, the host stays the
    # run's ...
    assert _locked_by(other, 'lb:1') is None
    assert _locked_by(other, f'host:{HOST}') == 'job-e'
    if board == 'redis':
        # ... also past a claim expiry, renewed with the claim (on
        # ZooKeeper it lives as long as the session: nothing to renew)
        for _ in range(2):
            run.keep()
            time.sleep(EXPIRY * 0.6)
        assert _locked_by(other, f'host:{HOST}') == 'job-e'
    # the run's next target: granted (nothing asked twice)
    assert run.take('amp-2', ['lb:2', f'host:{HOST}']).granted
    run.give('amp-2')
    assert _locked_by(other, f'host:{HOST}') == 'job-e'
    # the run ends: everything back, the release recorded
    before = time.time()
    run.give_all()
    grant = other.fleet_take('job-c/s', 'job-c', [f'host:{HOST}'], 0)
    assert grant.granted
    assert grant.released_at is not None
    assert abs(grant.released_at - before) < 5


def test_a_refused_budget_slot_leaves_the_host_with_the_run(connect):
    drv, other = connect(), connect()
    run = coordination.Fleet(drv, 'job-e', budget=1)
    assert run.take('amp-1', [f'host:{HOST}'], budgeted=False).granted
    run.give('amp-1')
    # another job has the only slot
    assert other.fleet_take('job-x/t', 'job-x', [], 1, force=True).granted
    refused = run.take('amp-2', ['lb:2', f'host:{HOST}'])
    assert (refused.granted, refused.refused) == (False, base.BUDGET)
    assert _locked_by(other, f'host:{HOST}') == 'job-e'
    run.give_all()
    assert _locked_by(other, f'host:{HOST}') is None


def test_a_new_run_of_the_same_job_takes_its_host_again(connect):
    """After a takeover the job's next target is granted the host its
    earlier run still holds; another job is not."""
    first, second, other = connect(), connect(), connect()
    dead = coordination.Fleet(first, 'job-e')
    assert dead.take('amp-1', [f'host:{HOST}']).granted
    dead.is_lost = lambda: True           # the claim moved on
    run = coordination.Fleet(second, 'job-e')
    assert run.take('amp-2', ['lb:2', f'host:{HOST}']).granted
    run.give('amp-2')
    assert _locked_by(other, f'host:{HOST}') == 'job-e'
    dead.give_all()                       # lost: gives nothing back
    assert _locked_by(other, f'host:{HOST}') == 'job-e'
    run.give_all()
    assert _locked_by(other, f'host:{HOST}') is None


# -- the host runbooks' steps ----------------------------------------------


@pytest.fixture
def redis_board(tmp_path, redis_server, namespace):
    made = []
    yield lambda: _driver(tmp_path, 'redis', redis_server, namespace, made)
    for drv in made:
        drv.close()


class Job:
    """A host runbook's job on the fake cloud, its steps driven by hand
    in one run with a fleet on the real board."""

    def __init__(self, store, cloud, name, params, drv, lock_timeout=600):
        self.harness = fakecloud.Harness(store, cloud, workflow.get(name),
                                         params)
        self.harness.plan()
        self.id = self.harness.job_id
        self.context = self.harness.context()
        self.context.fleet = coordination.Fleet(
            drv, self.id, lock_timeout=lock_timeout)
        self.items = {i['target']: i for i in self.harness.items()}

    def step(self, target):
        """One pass of ``target``'s steps: its state, or the NotYet."""
        try:
            self.harness.steps(self.items[target]).execute(self.context)
        except exceptions.NotYet as exc:
            return exc
        return self.record(target)['state']

    def drive(self, target, passes=30):
        for _ in range(passes):
            if self.step(target) in states.TARGET_FINISHED:
                return self.record(target)
        raise AssertionError(f'{target} did not end')

    def record(self, target):
        return self.harness.records.get_target(self.id, target)

    def waiting(self, target):
        return self.record(target)['details'].get('waiting')


def test_host_runbooks_wait_for_each_other_and_say_why(
        tmp_path, redis_board, monkeypatch):
    fakecloud.fast(monkeypatch)
    cloud = fakecloud.Cloud()
    cloud.add_service(HOST)
    cloud.add_lb('SINGLE')
    orphans = [cloud.add_server(HOST, f'amphora-orphan-{n}')
               for n in range(2)]
    store = fakecloud.store(tmp_path)
    drv = redis_board()
    clean = Job(store, cloud, 'cleanup-node', {'host': HOST, 'apply': True},
                drv)
    evac = Job(store, cloud, 'evacuate-host', {'host': HOST}, drv)
    disable = f'host:{HOST}'
    assert clean.drive(orphans[0])['state'] == states.DONE
    # between two of the cleanup's targets the host is still its own:
    # the evacuation waits, saying so, and changes nothing
    why = f'waiting for host:{HOST}: in use by job {clean.id}'
    assert str(evac.step(disable)) == why
    assert evac.waiting(disable) == why
    assert evac.record(disable)['state'] == states.PENDING
    assert cloud.calls[f'service:{HOST}'] == 0
    # a report of the same host (apply=false) neither waits nor blocks
    report = Job(store, cloud, 'cleanup-node', {'host': HOST}, drv)
    row = report.drive(orphans[1])
    assert row['state'] == states.SKIPPED
    assert row['error'].startswith('would delete (apply=false)')
    # past lock_timeout the evacuation gives up on the host as a whole:
    # no amphora is failed over off a host still scheduled on
    evac.context.fleet.lock_timeout = 0
    assert evac.step(disable) == states.SKIPPED
    assert evac.record(disable)['error'] == f'in use by job {clean.id}'
    for target in evac.items:
        row = evac.record(target)
        assert row['state'] == states.SKIPPED, row
        if target != disable:
            assert row['error'] == (f'not started: {HOST} is in use by job '
                                    f'{clean.id}')
    assert sum(cloud.calls.values()) == 1           # the first deletion
    # a second evacuation waits until the cleanup's run ends, then goes
    again = Job(store, cloud, 'evacuate-host', {'host': HOST}, drv)
    assert isinstance(again.step(disable), exceptions.NotYet)
    assert clean.drive(orphans[1])['state'] == states.DONE
    assert isinstance(again.step(disable), exceptions.NotYet)
    clean.context.fleet.give_all()
    assert again.drive(disable)['state'] == states.DONE
    assert again.waiting(disable) is None
    assert cloud.calls[f'service:{HOST}'] == 1
    # ... and from then on the host is the evacuation's, to its end
    orphan = cloud.add_server(HOST, 'amphora-orphan-late')
    late = Job(store, cloud, 'cleanup-node', {'host': HOST, 'apply': True},
               drv)
    why = f'waiting for host:{HOST}: in use by job {again.id}'
    assert str(late.step(orphan)) == why
    for target in again.items:
        assert again.drive(target)['state'] == states.DONE
    assert str(late.step(orphan)) == why
    assert orphan in cloud.servers
    again.context.fleet.give_all()
    assert late.drive(orphan)['state'] == states.DONE
    assert orphan not in cloud.servers
