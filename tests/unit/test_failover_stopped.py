"""failover-amphorae status=FAILOVER_STOPPED: the paced recovery after the
health manager's circuit breaker tripped, planned down to its threshold,
re-checked before each failover, exactly once; on a fake cloud."""

import pytest

from octavia_workflows import exceptions, states, workflow
from octavia_workflows.flows import failover_amphorae as fa
from unit import fakecloud

STOPPED = 'FAILOVER_STOPPED'


@pytest.fixture(autouse=True)
def _fast(monkeypatch):
    fakecloud.fast(monkeypatch)


def _conf(tmp_path, body):
    path = tmp_path / 'octavia.conf'
    path.write_text(body)
    return str(path)


def _cloud(stale=4, healthy=1):
    cloud = fakecloud.Cloud()
    stopped = []
    for _ in range(stale):
        lb = cloud.add_lb('SINGLE')
        (amp,) = cloud.list_amphorae(loadbalancer_id=lb)
        cloud.amps[amp['id']]['status'] = STOPPED
        stopped.append(amp['id'])
    for _ in range(healthy):
        cloud.add_lb('SINGLE')
    return cloud, stopped


def _job(tmp_path, cloud, **params):
    return fakecloud.Harness(fakecloud.store(tmp_path), cloud,
                             workflow.get(fa.NAME),
                             dict({'status': STOPPED}, **params))


# -- the threshold -----------------------------------------------------------


def test_the_threshold_is_read_from_octavias_configuration(tmp_path):
    path = _conf(tmp_path, '[DEFAULT]\ndebug = true\n[health_manager]\n'
                 'heartbeat_timeout = 60\nfailover_threshold = 3\n')
    assert fa.read_threshold(path) == 3
    params = workflow.get(fa.NAME).validate(
        {'status': STOPPED, 'octavia_config': path})
    assert params['failover_threshold'] == 3
    assert fa.read_threshold(_conf(tmp_path, '[health_manager]\n')) is None


@pytest.mark.parametrize('body, message', [
    ('[health_manager]\nfailover_threshold = many\n', "is 'many', not"),
    ('[health_manager]\nfailover_threshold = 0\n', 'at least 1'),
    ('failover_threshold = 3\n', 'is not an INI file'),
])
def test_a_bad_configuration_is_one_clear_error(tmp_path, body, message):
    with pytest.raises(exceptions.InvalidParameter, match=message):
        fa.read_threshold(_conf(tmp_path, body))


def test_parameters_that_do_not_fit_are_refused(tmp_path):
    wf = workflow.get(fa.NAME)
    with pytest.raises(exceptions.InvalidParameter,
                       match='needs the health manager.s failover_threshold'):
        wf.validate({'status': STOPPED})
    with pytest.raises(exceptions.InvalidParameter, match='cannot read'):
        wf.validate({'status': STOPPED,
                     'octavia_config': str(tmp_path / 'nothing.conf')})
    with pytest.raises(exceptions.InvalidParameter, match='applies only to'):
        wf.validate({'status': 'ERROR', 'failover_threshold': 3})
    path = _conf(tmp_path, '[health_manager]\nfailover_threshold = 3\n')
    with pytest.raises(exceptions.InvalidParameter, match='give one'):
        wf.validate({'status': STOPPED, 'octavia_config': path,
                     'failover_threshold': 5})
    unset = _conf(tmp_path, '[health_manager]\n')
    with pytest.raises(exceptions.InvalidParameter, match='breaker is off'):
        wf.validate({'status': STOPPED, 'octavia_config': unset})
    assert wf.validate({'status': STOPPED, 'stop_at_threshold': False})


# -- planning ----------------------------------------------------------------


def test_the_plan_stops_where_the_health_manager_resumes(tmp_path):
    # the circuit breaker guide's example: threshold 3, four stale
    cloud, stopped = _cloud(stale=4)
    plan = _job(tmp_path, cloud, failover_threshold=3).plan()
    assert [t.target for t in plan.targets] == stopped[:2]
    left = [t for t in plan.skipped if t.reason.startswith('left to')]
    assert [t.target for t in left] == stopped[2:]
    assert 'after 2 failover(s) fewer than failover_threshold=3' in \
        left[0].reason
    assert any(n.startswith('4 amphora(e) are FAILOVER_STOPPED; the health '
                            'manager\'s failover_threshold is 3')
               and 'resumes automatic failover of all the rest at once' in n
               for n in plan.notes)
    assert any(n.startswith('stop_at_threshold=true: 2 failover(s) bring '
                            'the stale count to 2') for n in plan.notes)


def test_without_stopping_every_one_is_planned_and_the_race_is_said(
        tmp_path):
    cloud, stopped = _cloud(stale=4)
    plan = _job(tmp_path, cloud, failover_threshold=3,
                stop_at_threshold=False).plan()
    assert [t.target for t in plan.targets] == stopped
    assert any(n.startswith('stop_at_threshold=false: after the first 2')
               for n in plan.notes)


def test_below_the_threshold_nothing_is_planned(tmp_path):
    cloud, stopped = _cloud(stale=2)
    plan = _job(tmp_path, cloud, failover_threshold=3).plan()
    assert plan.targets == []
    assert {t.target for t in plan.skipped} == set(stopped)
    assert all('fails them over itself' in t.reason for t in plan.skipped)


# -- running ---------------------------------------------------------------


def test_paced_recovery_fails_over_each_planned_amphora_exactly_once(
        tmp_path):
    crash_at = 1
    while True:
        cloud, stopped = _cloud(stale=3, healthy=0)
        job = _job(tmp_path / f'k{crash_at}', cloud, failover_threshold=3)
        job.plan()
        cloud.crash_point = crash_at
        crashes = sum(job.drive(item) for item in job.items())
        row = job.records.get_target(job.job_id, stopped[0])
        assert row['state'] == states.DONE, (crash_at, row)
        assert cloud.calls[stopped[0]] == 1, crash_at
        assert all(cloud.calls[amp] == 0 for amp in stopped[1:])
        if not crashes:
            break
        crash_at += 1
    assert crash_at > 4


def test_each_target_rechecks_the_amphora_and_the_stale_count(tmp_path):
    cloud, stopped = _cloud(stale=5)
    job = _job(tmp_path, cloud, failover_threshold=3)
    assert len(job.plan().targets) == 3
    # before the job starts, one amphora heartbeats again, another one
    # that was left to the health manager too: four, then three stale
    cloud.amps[stopped[1]]['status'] = 'ALLOCATED'
    cloud.amps[stopped[4]]['status'] = 'ALLOCATED'
    for item in job.items():
        job.drive(item)
    rows = {a: job.records.get_target(job.job_id, a) for a in stopped[:3]}
    assert rows[stopped[0]]['state'] == states.DONE
    assert rows[stopped[1]]['state'] == states.SKIPPED
    assert 'no longer FAILOVER_STOPPED (its heartbeats came back)' in \
        rows[stopped[1]]['error']
    # after the first failover two are stale: below the threshold
    assert rows[stopped[2]]['state'] == states.SKIPPED
    assert 'the health manager has resumed' in rows[stopped[2]]['error']
    assert sum(cloud.calls.values()) == 1
