"""reconfigure-amphorae verifies its effect: after each push, a heartbeat
recorded in Octavia's amphora_health (a real SQLite table here, written as
the health manager writes it) -- or the amphora FAILS; the plan warns about
agents too old to follow (Octavia bug 2121691); on a fake cloud."""

import datetime
import sqlite3
import types

import pytest

from octavia_workflows import exceptions, states, workflow
from octavia_workflows.engine import context as ctx_mod
from octavia_workflows.flows import reconfigure_amphorae as ra
from octavia_workflows.machinery import amphora_health
from unit import fakecloud

NAME = 'reconfigure-amphorae'


@pytest.fixture(autouse=True)
def _fast(monkeypatch):
    fakecloud.fast(monkeypatch)


class Octavia(fakecloud.Cloud):
    """The fake cloud with Octavia's amphora_health table: an amphora in
    ``follows`` heartbeats to the new health manager once configured."""

    def __init__(self, path):
        super().__init__()
        self.db = str(path)
        self.follows = set()
        with sqlite3.connect(self.db) as conn:
            conn.execute('CREATE TABLE amphora_health (amphora_id '
                         'VARCHAR(36) PRIMARY KEY, last_update DATETIME '
                         'NOT NULL, busy BOOLEAN NOT NULL)')
        self.clock = datetime.datetime(2026, 12, 1, 10, 0, 0)

    def heartbeat(self, amp_id):
        self.clock += datetime.timedelta(seconds=1)
        with sqlite3.connect(self.db) as conn:
            conn.execute('REPLACE INTO amphora_health VALUES (?, ?, 0)',
                         (amp_id, self.clock.isoformat(sep=' ')))

    def configure_amphora(self, amp_id):
        super().configure_amphora(amp_id)
        if amp_id in self.follows:
            self.heartbeat(amp_id)

    def get_image(self, image_id):
        built = {'img-old': '2025-03-01T00:00:00Z'}.get(image_id)
        return {'id': image_id, 'created_at': built}


def _conf(url):
    return types.SimpleNamespace(
        octavia_database=types.SimpleNamespace(connection=url))


class Harness(fakecloud.Harness):
    def __init__(self, *args, conf=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.conf = conf

    def context(self):
        context = super().context()
        context.conf = self.conf
        return context


def _job(tmp_path, cloud, **params):
    url = f'sqlite:///{cloud.db}'
    return Harness(fakecloud.store(tmp_path), cloud, workflow.get(NAME),
                   dict({'health_managers_stopped': True}, **params),
                   conf=_conf(url))


def test_an_amphora_whose_heartbeats_do_not_move_fails(tmp_path):
    cloud = Octavia(tmp_path / 'octavia.db')
    good, bad = cloud.add_lb(), cloud.add_lb()
    (good_amp,) = cloud.list_amphorae(loadbalancer_id=good)
    (bad_amp,) = cloud.list_amphorae(loadbalancer_id=bad)
    for amp in (good_amp, bad_amp):
        cloud.heartbeat(amp['id'])      # heard from before the adoption
    cloud.follows.add(good_amp['id'])
    job = _job(tmp_path, cloud, heartbeat_timeout=0.05, max_failures=0)
    job.plan()
    for item in job.items():
        job.drive(item, passes=100000)
    ok = job.records.get_target(job.job_id, good_amp['id'])
    assert ok['state'] == states.DONE, ok
    after = ok['details']['after']
    assert after['last_heartbeat'] > ok['details']['before'][
        'last_heartbeat']
    assert any('recorded a heartbeat' in c for c in after['confirmed'])
    assert after['not_confirmed'] == []
    failed = job.records.get_target(job.job_id, bad_amp['id'])
    assert failed['state'] == states.FAILED
    assert failed['error'].startswith(
        f'no heartbeat from amphora {bad_amp["id"]} reached a health manager '
        f'within 0.05 s of the configuration push (last recorded: 2026-')
    assert 'bug 2121691' in failed['error']
    assert cloud.calls[bad_amp['id']] == 1      # pushed once, not again


def test_never_heard_from_and_failover_stopped_amphorae_are_pushed(
        tmp_path):
    cloud = Octavia(tmp_path / 'octavia.db')
    lb = cloud.add_lb('ACTIVE_STANDBY')
    amps = [a['id'] for a in cloud.list_amphorae(loadbalancer_id=lb)]
    cloud.follows.update(amps)
    # a guarded health manager marked it stale: it needs the push most
    cloud.amps[amps[1]]['status'] = 'FAILOVER_STOPPED'
    job = _job(tmp_path, cloud)
    job.plan()
    for item in job.items():
        job.drive(item)
    for amp in amps:
        row = job.records.get_target(job.job_id, amp)
        assert row['state'] == states.DONE
        assert row['details']['before']['last_heartbeat'] is None


def test_every_push_is_counted_and_verified_across_crashes(tmp_path):
    crash_at = 1
    while True:
        cloud = Octavia(tmp_path / f'octavia-{crash_at}.db')
        lb = cloud.add_lb()
        (amp,) = cloud.list_amphorae(loadbalancer_id=lb)
        cloud.follows.add(amp['id'])
        job = _job(tmp_path / f'k{crash_at}', cloud)
        job.plan()
        cloud.crash_point = crash_at
        crashes = job.drive(job.items()[0])
        row = job.records.get_target(job.job_id, amp['id'])
        assert row['state'] == states.DONE, (crash_at, row)
        seen = cloud.calls[amp['id']]
        assert 1 <= seen <= row['details']['after']['calls'] <= seen + \
            crashes
        if not crashes:
            break
        crash_at += 1
    assert crash_at > 4


def test_verifying_without_octavias_database_is_refused(tmp_path):
    wf = workflow.get(NAME)
    params = wf.validate({'health_managers_stopped': 'true'})
    assert params['heartbeat_timeout'] == 60.0
    bare = ctx_mod.PlanContext(params, conf=_conf(None))
    with pytest.raises(exceptions.InvalidParameter,
                       match=r'set \[octavia_database\] connection'):
        wf.preflight(bare, params, False)
    wf.preflight(bare, params, True)                # a dry run explains
    notes = ra.plan_notes(params, [], _conf(None))
    assert any(n.startswith('NOT READY') for n in notes)
    wf.preflight(bare, dict(params, heartbeat_timeout=0.0), False)

    class Job(ctx_mod.PlanContext):
        def cloud(self):
            raise AssertionError('the cloud must not be touched')

    job = Job(params, conf=_conf(None))
    job.job_id = 'job-1'
    with pytest.raises(exceptions.InvalidParameter, match='heartbeat'):
        ra.plan(job, params)


def test_the_plan_warns_about_agents_older_than_the_fix(tmp_path):
    cloud = Octavia(tmp_path / 'octavia.db')
    cloud.add_lb('ACTIVE_STANDBY', image='img-old')
    cloud.add_lb('SINGLE', image='img-2026')
    notes = _job(tmp_path, cloud).plan().notes
    (old,) = [n for n in notes if 'built before 2025-09-17' in n]
    assert old.startswith('2 amphora(e) run images built before 2025-09-17 '
                          '(img-old built 2025-03-01T00:00:00Z)')
    assert 'bug 2121691, fixed in 15.1.0 (2024.2), 16.0.1 (2025.1), ' \
        '17.0.0 (2025.2) and later' in old
    assert any(n.startswith('1 amphora(e) run images of unknown age')
               for n in notes)


def test_reading_amphora_health_fails_clearly_and_keeps_the_secret(
        tmp_path):
    with pytest.raises(exceptions.CloudUnreachable):
        amphora_health.last_updates(
            f'sqlite:///{tmp_path}/no/such/dir/octavia.db', ['a'])
    with pytest.raises(exceptions.CloudRequestError) as info:
        amphora_health.last_updates('nosuchdriver://octavia:s3cret@h/db',
                                    ['a'])
    assert 's3cret' not in str(info.value)
    assert amphora_health.moved(None, '2026-01-01 00:00:01')
    assert not amphora_health.moved('2026-01-01 00:00:01', None)
    assert not amphora_health.moved('2026-01-01 00:00:01',
                                    '2026-01-01 00:00:01')
    assert amphora_health.moved('2026-01-01 00:00:01',
                                '2026-01-01T00:00:02')
