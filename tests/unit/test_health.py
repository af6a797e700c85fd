"""Health after a failover: a target is DONE only when its load balancer
serves at least as well as before (operating status), on a fake cloud."""

import pytest

from octavia_workflows import states, workflow
from octavia_workflows.machinery import health
from unit import fakecloud


@pytest.fixture(autouse=True)
def _fast(monkeypatch):
    fakecloud.fast(monkeypatch)


def _rotate(tmp_path, cloud, **params):
    lbs = [cloud.add_lb('SINGLE') for _ in range(3)]
    job = fakecloud.Harness(fakecloud.store(tmp_path), cloud,
                            workflow.get('rotate-images'),
                            dict({'image_tag': 'amphora', 'max_failures': 0},
                                 **params))
    plan = job.plan()
    for item in job.items():
        job.drive(item, passes=200)
    return job, lbs, plan


def _rows(job, lbs):
    return [job.records.get_target(job.job_id, lb) for lb in lbs]


def test_a_bad_image_fails_every_target_with_the_regression(tmp_path):
    cloud = fakecloud.Cloud()
    cloud.health_after = 'ERROR'
    job, lbs, _ = _rotate(tmp_path, cloud, health_timeout=0.01)
    for row in _rows(job, lbs):
        assert row['state'] == states.FAILED
        assert row['error'].startswith(
            'health regression: ONLINE -> ERROR after failover')
        assert row['details']['before']['operating_status'] == 'ONLINE'
        assert row['details']['after']['operating_status'] == 'ERROR'
    assert sum(cloud.calls.values()) == 3       # each failed over once


def test_health_that_comes_back_in_time_is_done(tmp_path):
    cloud = fakecloud.Cloud()
    cloud.health_after, cloud.heals_after = 'OFFLINE', 2
    job, lbs, _ = _rotate(tmp_path, cloud, health_timeout=60)
    for row in _rows(job, lbs):
        assert row['state'] == states.DONE, row
        assert row['details']['after']['operating_status'] == 'ONLINE'
        assert row['details']['health_since']


def test_not_online_before_is_judged_against_itself(tmp_path):
    cloud = fakecloud.Cloud()
    cloud.health_after = 'OFFLINE'
    lbs = [cloud.add_lb('SINGLE') for _ in range(2)]
    for lb in lbs:
        cloud.lbs[lb]['operating_status'] = 'OFFLINE'
    job = fakecloud.Harness(fakecloud.store(tmp_path), cloud,
                            workflow.get('rotate-images'),
                            {'image_tag': 'amphora', 'health_timeout': 0.01})
    plan = job.plan()
    assert any('2 load balancer(s) are not ONLINE now (OFFLINE)' in note
               for note in plan.notes)
    for item in job.items():
        job.drive(item)
    assert [r['state'] for r in _rows(job, lbs)] == [states.DONE] * 2


def test_health_timeout_zero_does_not_check(tmp_path):
    cloud = fakecloud.Cloud()
    cloud.health_after = 'ERROR'
    job, lbs, _ = _rotate(tmp_path, cloud, health_timeout=0)
    assert [r['state'] for r in _rows(job, lbs)] == [states.DONE] * 3


def test_what_counts_as_a_regression():
    assert health.regressed('ONLINE', 'ERROR')
    assert health.regressed('ONLINE', 'DEGRADED')
    assert not health.regressed('OFFLINE', 'OFFLINE')
    assert not health.regressed('DEGRADED', 'ONLINE')
    assert not health.regressed(None, 'ERROR')


def _with_listeners(cloud, lbs):
    for lb in lbs:
        cloud.lbs[lb]['listeners'] = [{'id': f'listener-{lb}'}]


def test_a_bad_image_that_shows_late_is_still_caught(tmp_path):
    """Octavia keeps ONLINE until the health manager hears from the new
    amphorae: the target watches ``health_settle`` before it is DONE."""
    cloud = fakecloud.Cloud()
    cloud.health_after, cloud.reports_after = 'ERROR', 3
    lbs = [cloud.add_lb('SINGLE') for _ in range(2)]
    _with_listeners(cloud, lbs)
    job = fakecloud.Harness(fakecloud.store(tmp_path), cloud,
                            workflow.get('rotate-images'),
                            {'image_tag': 'amphora', 'max_failures': 0,
                             'health_timeout': 0.01, 'health_settle': 600})
    job.plan()
    for item in job.items():
        job.drive(item, passes=200)
    for row in _rows(job, lbs):
        assert row['state'] == states.FAILED, row
        assert row['error'].startswith(
            'health regression: ONLINE -> ERROR after failover')


def test_health_that_stays_good_is_done_after_the_settle(tmp_path):
    cloud = fakecloud.Cloud()
    lbs = [cloud.add_lb('SINGLE') for _ in range(2)]
    _with_listeners(cloud, lbs)
    job = fakecloud.Harness(fakecloud.store(tmp_path), cloud,
                            workflow.get('rotate-images'),
                            {'image_tag': 'amphora', 'health_settle': 0.05})
    job.plan()
    for item in job.items():
        job.drive(item, passes=100000)
    for row in _rows(job, lbs):
        assert row['state'] == states.DONE, row
        finished = row['details']['verified']
        assert finished - row['details']['health_since'] >= 0.05


def test_no_listeners_no_settle(tmp_path):
    cloud = fakecloud.Cloud()
    job, lbs, _ = _rotate(tmp_path, cloud, health_settle=600)
    assert [r['state'] for r in _rows(job, lbs)] == [states.DONE] * 3
    assert all('health_since' not in r['details'] for r in _rows(job, lbs))
