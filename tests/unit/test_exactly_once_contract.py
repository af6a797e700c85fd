"""Exactly once, proven on a fake cloud: the contract every runbook that
changes the cloud must keep.

For each runbook, each target's steps are driven to their end with the
"process" dying (:class:`fakecloud.Crash`) at crash point k -- before and
after every write to the target's record and every cloud-changing call,
so also between recording the intent and making the call, and between
the call and recording it -- for every k until a run passes no more
points.  After each crash a fresh context, run state and step objects
continue the target, as a conductor taking the job over would.  The
cloud must have seen exactly one cloud-changing call for the target, and
the target must end DONE.

``reconfigure-amphorae`` documents a different contract: its push is
harmless to repeat and is sent again when a crash leaves its outcome
unknown, counted before it is sent.  So there: the calls the cloud saw
never exceed the calls the record reports, the record reports at most
one more per crash, and an accepted push is never sent again.
"""

import pytest

from octavia_workflows import states, workflow
from unit import fakecloud

HOST = 'host-1'


def _rotate(cloud):
    cloud.add_lb('SINGLE')
    cloud.add_lb('ACTIVE_STANDBY')
    return {'image_tag': 'amphora'}


def _amphorae(cloud):
    lb = cloud.add_lb('ACTIVE_STANDBY')
    return {'amphorae': ','.join(a['id'] for a in cloud.list_amphorae(
        loadbalancer_id=lb))}


def _certificates(cloud):
    cloud.add_lb('SINGLE')
    return {'all': True}


def _evacuate(cloud):
    cloud.add_service(HOST)
    cloud.add_lb('SINGLE')
    return {'host': HOST}


def _cleanup(cloud):
    cloud.add_service(HOST)
    cloud.add_server(HOST, 'amphora-orphan-1')
    cloud.add_server(HOST, 'amphora-orphan-2')
    return {'host': HOST, 'apply': True}


RUNBOOKS = {
    'rotate-images': _rotate,
    'failover-amphorae': _amphorae,
    'rotate-certificates': _certificates,
    'evacuate-host': _evacuate,
    'cleanup-node': _cleanup,
}


def _changed(cloud, item):
    """The cloud resource a target's one call changes."""
    details = item['details']
    if item['action'] == 'lb-failover':
        return details['lb']
    if item['action'] == 'disable-compute-service':
        return f'service:{details["host"]}'
    if item['action'] == 'verify-host-empty':
        return None
    return item['target']


def _run(tmp_path, name, crash_at):
    cloud = fakecloud.Cloud()
    params = RUNBOOKS[name](cloud)
    job = fakecloud.Harness(fakecloud.store(tmp_path), cloud,
                            workflow.get(name), params)
    plan = job.plan()
    assert plan.targets, f'{name}: nothing planned'
    cloud.points = 0
    cloud.crash_point = crash_at
    crashes = 0
    for item in job.items():
        crashes += job.drive(item)
    return cloud, job, crashes


@pytest.fixture(autouse=True)
def _fast(monkeypatch):
    fakecloud.fast(monkeypatch)


@pytest.mark.parametrize('name', sorted(RUNBOOKS))
def test_every_target_changes_the_cloud_exactly_once(tmp_path, name):
    crash_at = 1
    while True:
        cloud, job, crashes = _run(tmp_path / f'k{crash_at}', name, crash_at)
        for item in job.items():
            row = job.records.get_target(job.job_id, item['target'])
            assert row['state'] == states.DONE, (name, crash_at, row)
            what = _changed(cloud, item)
            if what is not None:
                assert cloud.calls[what] == 1, (
                    f'{name}: {item["target"]} changed {cloud.calls[what]} '
                    f'times with a crash at point {crash_at}')
        if not crashes:
            break           # the run passed fewer than crash_at points
        crash_at += 1
    # every runbook has points between intent and call, call and record
    assert crash_at > 4, f'{name}: only {crash_at - 1} crash points'


def test_reconfigure_counts_every_push_it_may_have_sent(tmp_path):
    crash_at = 1
    while True:
        cloud = fakecloud.Cloud()
        lb = cloud.add_lb('ACTIVE_STANDBY')
        job = fakecloud.Harness(
            fakecloud.store(tmp_path / f'k{crash_at}'), cloud,
            workflow.get('reconfigure-amphorae'),
            {'health_managers_stopped': True, 'heartbeat_timeout': 0})
        job.plan()
        cloud.crash_point = crash_at
        crashes = sum(job.drive(item) for item in job.items())
        assert len(job.items()) == len(cloud.list_amphorae(
            loadbalancer_id=lb))
        for item in job.items():
            row = job.records.get_target(job.job_id, item['target'])
            assert row['state'] == states.DONE, row
            reported = row['details']['after']['calls']
            seen = cloud.calls[item['target']]
            assert 1 <= seen <= reported <= seen + crashes, (
                crash_at, seen, reported)
            assert row['attempts'] == reported
        if not crashes:
            break
        crash_at += 1
    assert crash_at > 4


def test_a_crash_point_really_stops_a_target(tmp_path):
    # the harness can fail: without resuming from the record, a second
    # "process" calls the cloud again
    cloud, job, crashes = _run(tmp_path, 'rotate-images', None)
    assert not crashes
    item = job.items()[0]
    row = job.records.get_target(job.job_id, item['target'])
    assert row['state'] == states.DONE
    assert sum(cloud.calls.values()) == len(job.items())
