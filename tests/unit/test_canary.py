"""canary=N: after the first N targets the job waits at an approval gate
that shows their health; nothing else starts meanwhile; approved once, it
never asks again; a crash while waiting redoes no canary target.  On a
fake cloud with a real records store, driving the job's real lanes."""

import itertools
import types

import pytest

from octavia_workflows import exceptions, states, workflow
from octavia_workflows.engine import context as ctx_mod
from octavia_workflows.engine import gates
from octavia_workflows.machinery import lanes
from unit import fakecloud

KEY = 'rotate-images:canary'


@pytest.fixture(autouse=True)
def _fast(monkeypatch):
    fakecloud.fast(monkeypatch)
    # the gate's short grace for the engine to suspend passes at once
    ticks = itertools.count(step=10.0)
    monkeypatch.setattr(ctx_mod, 'time', types.SimpleNamespace(
        monotonic=lambda: next(ticks), sleep=lambda s: None))


def _job(tmp_path, cloud, count=4, **params):
    lbs = [cloud.add_lb('SINGLE') for _ in range(count)]
    job = fakecloud.Harness(fakecloud.store(tmp_path), cloud,
                            workflow.get('rotate-images'),
                            dict({'image_tag': 'amphora',
                                  'canary_settle': 0}, **params))
    job.plan()
    return job, lbs


def _process(job):
    """A fresh conductor: context (owning the job) and the job's lanes."""
    context = job.context()
    job.records.update_job(job.job_id, owner=context.owner)
    flow = job.flow.load_factory()(job.params, job.items())
    return context, [t for t in fakecloud._tasks(flow)
                     if isinstance(t, lanes.LaneWorker)]


def _run(job, passes=100):
    """Run the lanes (one after the other) until they end; returns the
    context, or raises GateWaiting when the job stops at a gate."""
    context, workers = _process(job)
    for worker in workers:
        for _ in range(passes):
            try:
                worker.execute(context)
                break
            except exceptions.GateWaiting:
                raise
            except exceptions.NotYet:
                continue
    return context


def _states(job, lbs):
    return [job.records.get_target(job.job_id, lb)['state'] for lb in lbs]


def _waiting(job):
    return gates.parse(job.records.get_job(job.job_id)['gate'])['waiting']


def _approve(job):
    state = gates.parse(job.records.get_job(job.job_id)['gate'])
    new, key = gates.approve(state, 'T', 'ops@test')
    job.records.update_job(job.job_id, gate=gates.dump(new))
    return key


def test_the_job_waits_after_the_canary_and_goes_on_once_approved(tmp_path):
    cloud = fakecloud.Cloud()
    job, lbs = _job(tmp_path, cloud, canary=2, health_timeout=60)
    with pytest.raises(exceptions.GateWaiting):
        _run(job)
    assert _states(job, lbs) == [states.DONE] * 2 + [states.PENDING] * 2
    assert sum(cloud.calls.values()) == 2
    waiting = _waiting(job)
    assert waiting['gate'] == KEY
    assert waiting['message'].startswith(
        'canary: the first 2 target(s) are verified healthy (')
    assert f'{lbs[0]} DONE: ONLINE -> ONLINE' in waiting['message']
    assert 'continue with the other 2 target(s)' in waiting['message']
    assert 'no other target was started' in waiting['if_rejected']

    # the conductor dies while the job waits: a new one asks again and
    # redoes nothing
    with pytest.raises(exceptions.GateWaiting):
        _run(job)
    assert sum(cloud.calls.values()) == 2

    assert _approve(job) == KEY
    _run(job)
    assert _states(job, lbs) == [states.DONE] * 4
    assert sum(cloud.calls.values()) == 4
    assert all(cloud.calls[lb] == 1 for lb in lbs)
    assert _waiting(job) is None


def test_a_failed_canary_is_never_offered_as_healthy(tmp_path):
    cloud = fakecloud.Cloud()
    cloud.health_after = 'ERROR'
    job, lbs = _job(tmp_path, cloud, canary=1, health_timeout=0.01,
                    max_failures=0)
    with pytest.raises(exceptions.GateWaiting):
        _run(job)
    assert sum(cloud.calls.values()) == 1       # one load balancer broken
    assert _states(job, lbs)[0] == states.FAILED
    message = _waiting(job)['message']
    assert message.startswith('canary FAILED: 1 of the first 1 target(s) '
                              'failed')
    assert 'health regression: ONLINE -> ERROR after failover' in message
    assert 'verified healthy' not in message


def test_the_breaker_pauses_before_the_gate_and_the_gate_asks_on_resume(
        tmp_path):
    cloud = fakecloud.Cloud()
    cloud.health_after = 'ERROR'
    job, lbs = _job(tmp_path, cloud, canary=1, health_timeout=0.01,
                    max_failures=1)
    context = _run(job)                         # the breaker stops it
    assert context.pause_reason.startswith('circuit breaker')
    assert _waiting(job) is None
    assert sum(cloud.calls.values()) == 1
    with pytest.raises(exceptions.GateWaiting):     # "resume"
        _run(job)
    assert _waiting(job)['message'].startswith('canary FAILED')
    assert sum(cloud.calls.values()) == 1


def test_no_canary_means_no_gate(tmp_path):
    cloud = fakecloud.Cloud()
    job, lbs = _job(tmp_path, cloud, count=3)
    _run(job)
    assert _states(job, lbs) == [states.DONE] * 3
    assert job.records.get_job(job.job_id)['gate'] is None


def test_at_most_n_targets_start_and_a_skipped_one_gives_its_place_back(
        tmp_path):
    cloud = fakecloud.Cloud()
    job, lbs = _job(tmp_path, cloud, canary=2, concurrency=4)
    context, _ = _process(job)
    canary = lanes.Canary('rotate-images', 2)
    canary.admit(context, lbs[0])
    canary.admit(context, lbs[1])
    canary.admit(context, lbs[1])               # the same one again
    with pytest.raises(exceptions.NotYet, match='first 2 target'):
        canary.admit(context, lbs[2])
    # its re-check skipped lbs[1]: not a canary target
    job.records.update_target(job.job_id, lbs[1], state=states.SKIPPED)
    canary.admit(context, lbs[2])
    with pytest.raises(exceptions.NotYet):
        canary.admit(context, lbs[3])
    for lb in (lbs[0], lbs[2]):
        job.records.update_target(job.job_id, lb, state=states.DONE)
    with pytest.raises(exceptions.GateWaiting):
        canary.admit(context, lbs[3])
    assert 'the first 2 target(s)' in _waiting(job)['message']
    _approve(job)
    fresh = lanes.Canary('rotate-images', 2)
    fresh.admit(job.context(), lbs[3])          # approved: passes
    assert fresh.passed


def test_every_failover_runbook_has_the_canary():
    for name in ('rotate-images', 'failover-amphorae', 'rotate-certificates',
                 'evacuate-host'):
        assert 'canary' in {p.name for p in workflow.get(name).params}, name


def test_a_canary_that_regressed_after_it_was_done_is_not_healthy(
        tmp_path):
    # Octavia shows the old operating status until the health manager
    # hears from the new amphorae: DONE first, ERROR a moment later
    cloud = fakecloud.Cloud()
    job, lbs = _job(tmp_path, cloud, canary=1, health_timeout=60)
    job.drive(job.items()[0])
    assert _states(job, lbs)[0] == states.DONE
    cloud.lbs[lbs[0]]['operating_status'] = 'ERROR'
    with pytest.raises(exceptions.GateWaiting):
        _run(job)
    message = _waiting(job)['message']
    assert message.startswith('canary FAILED: 1 of the first 1 target(s)')
    assert f'{lbs[0]} DONE: ONLINE -> ONLINE, now ERROR' in message
    assert sum(cloud.calls.values()) == 1


def test_the_gate_waits_for_the_health_manager_to_report(tmp_path):
    cloud = fakecloud.Cloud()
    job, lbs = _job(tmp_path, cloud, canary=1, canary_settle=3600)
    job.drive(job.items()[0])
    context, _ = _process(job)
    with pytest.raises(exceptions.NotYet, match='letting the health '
                       'manager report'):
        lanes.Canary('rotate-images', 1).admit(context, lbs[1])
    assert _waiting(job) is None
