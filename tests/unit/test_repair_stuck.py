"""repair-stuck: planning (pure), the compare-and-set on a real database
(SQLite, Octavia's ``load_balancer`` columns), and exactly once across a
crash at every point -- around every record write, the reset and the
API call -- on the fake cloud whose load balancers live in that table."""

import datetime
import os
import pathlib
import shutil
import tempfile

import pytest
import sqlalchemy as sa

from octavia_workflows import conf as conf_mod
from octavia_workflows import exceptions, states, workflow
from octavia_workflows.cloud import octavia_db, octavia_jobs
from octavia_workflows.engine import context as ctx_mod
from octavia_workflows.flows import repair_stuck
from unit import fakecloud

NOW = datetime.datetime(2026, 12, 2, 12, 0, 0)


def row(lb_id, status='PENDING_UPDATE', minutes=90, never_updated=False):
    changed = NOW - datetime.timedelta(minutes=minutes)
    return {'id': lb_id, 'name': f'n-{lb_id}', 'project_id': 'p1',
            'provisioning_status': status, 'operating_status': 'ONLINE',
            'created_at': changed if never_updated else changed
            - datetime.timedelta(days=1),
            'updated_at': None if never_updated else changed}


# -- planning ---------------------------------------------------------------


def test_select_takes_old_ones_oldest_first_and_skips_young_and_busy():
    rows = [row('young', minutes=5), row('old', minutes=90),
            row('older', 'PENDING_DELETE', minutes=600),
            row('created', 'PENDING_CREATE', minutes=61, never_updated=True),
            row('busy', minutes=120)]
    targets, skipped = repair_stuck.select(
        rows, NOW, 60, {'busy': 'Octavia job x is claimed by worker-1'})
    assert [(t.target, t.action) for t in targets] == [
        ('older', repair_stuck.DELETE), ('old', repair_stuck.FAILOVER),
        ('created', repair_stuck.FAILOVER)]
    assert targets[0].details['age'] == '10 h 0 min'
    assert targets[1].details['seen_updated_at'] == '2026-12-02T10:30:00'
    assert targets[2].details['seen_updated_at'] is None     # never updated
    assert targets[2].details['age'] == '61 min'
    reasons = {t.target: t.reason for t in skipped}
    assert reasons == {
        'busy': 'Octavia job x is claimed by worker-1',
        'young': 'PENDING_UPDATE for 5 min only (younger than '
                 'older_than_minutes=60): Octavia may still be working on '
                 'it'}


def test_fractional_minutes_and_zero():
    rows = [row('a', minutes=0.5), row('b', minutes=0.1)]
    targets, skipped = repair_stuck.select(rows, NOW, 0.25)
    assert [t.target for t in targets] == ['a']
    assert [t.target for t in skipped] == ['b']
    targets, skipped = repair_stuck.select(rows, NOW, 0)
    assert [t.target for t in targets] == ['a', 'b'] and not skipped


def test_age_text():
    assert [repair_stuck.age_text(s) for s in (3, 119, 600, 7300,
                                                200000)] == [
        '3 s', '119 s', '10 min', '2 h 1 min', '2 d 7 h']


def test_named_load_balancers_that_are_not_stuck_are_reported():
    skipped = repair_stuck.not_stuck(
        ['a', 'gone', 'ok'], [row('a')],
        {'gone': None, 'ok': dict(row('ok'), provisioning_status='ACTIVE')})
    assert [(t.target, t.reason) for t in skipped] == [
        ('gone', 'load balancer not found'),
        ('ok', 'load balancer is ACTIVE, not stuck in PENDING_*')]


def test_parameters_default_to_report_only_after_an_hour():
    params = workflow.get('repair-stuck').validate({})
    assert params['apply'] is False and params['older_than_minutes'] == 60
    with pytest.raises(exceptions.InvalidParameter):
        workflow.get('repair-stuck').validate({'older_than_minutes': '-1'})


def test_without_octavia_database_it_refuses_in_one_line():
    conf = conf_mod.load([])
    context = ctx_mod.PlanContext({}, conf=conf)
    flow = workflow.get('repair-stuck')
    for call in (lambda: flow.preflight(context, {}, True),
                 lambda: flow.plan(context, flow.validate({}))):
        with pytest.raises(exceptions.ConfigError) as err:
            call()
        assert str(err.value) == ('repair-stuck needs Octavia\'s database: '
                                  'set [octavia_database] connection')


def test_a_bad_url_is_refused_without_repeating_it():
    with pytest.raises(exceptions.ConfigError) as err:
        octavia_db.OctaviaDatabase('not a url :secret-pass@')
    assert 'secret-pass' not in str(err.value)


# -- Octavia's jobboard (the parts that need no board) ------------------------


def test_octavia_job_details_name_their_load_balancers():
    # as Octavia's controller worker posts them: {'store': flow store}
    details = {'store': {'loadbalancer_id': 'lb-1', 'loadbalancer': {
        'loadbalancer_id': 'lb-1', 'vip_address': '10.0.0.1'},
        'amphora': {'id': 'amp-1', 'load_balancer_id': 'lb-2'},
        'build_type_priority': 40}}
    assert octavia_jobs.load_balancers_of(details) == {'lb-1', 'lb-2'}
    assert octavia_jobs.load_balancers_of({'store': {}}) == set()
    assert octavia_jobs.load_balancers_of(None) == set()


def test_board_conf_mirrors_octavias_and_drops_unset_values():
    conf = conf_mod.load([])
    settings = dict(conf.octavia_jobboard.items())
    settings.update(jobboard_enabled=True, jobboard_backend_password='pw',
                    jobboard_backend_hosts=['h1', 'h2'])
    redis = octavia_jobs.board_conf(settings)
    assert redis['namespace'] == 'octavia_jobboard'
    assert redis['host'] == 'h1' and redis['sentinel_fallbacks'] == [
        'h2:6379']
    assert redis['password'] == 'pw' and 'ssl_keyfile' not in redis
    assert 'pw' not in octavia_jobs.describe(settings)
    settings['jobboard_backend_driver'] = octavia_jobs.ZOOKEEPER
    settings['jobboard_backend_port'] = 2181
    assert octavia_jobs.board_conf(settings) == {
        'board': 'zookeeper', 'path': '/octavia_jobboard',
        'hosts': 'h1:2181,h2:2181'}
    assert octavia_jobs.busy_load_balancers(
        dict(settings, jobboard_enabled=False)) == {}


# -- the compare-and-set, on a real database ------------------------------


#: Octavia's ``load_balancer`` columns the runbook reads and writes (typed
#: as Octavia's models type them, so SQLite stores times as SQLAlchemy
#: does).
LB_TABLE = sa.Table(
    'load_balancer', sa.MetaData(),
    sa.Column('id', sa.String(36), primary_key=True),
    sa.Column('project_id', sa.String(36)), sa.Column('name', sa.String(255)),
    sa.Column('provisioning_status', sa.String(16)),
    sa.Column('operating_status', sa.String(16)),
    sa.Column('topology', sa.String(36)), sa.Column('provider', sa.String(64)),
    sa.Column('created_at', sa.DateTime), sa.Column('updated_at', sa.DateTime))


def octavia_table(url):
    engine = sa.create_engine(url)
    LB_TABLE.create(engine)
    return engine


def insert(engine, lb_id, status, updated_at):
    with engine.begin() as conn:
        conn.execute(LB_TABLE.insert().values(
            id=lb_id, project_id='p1', provisioning_status=status,
            operating_status='ONLINE', created_at=updated_at,
            updated_at=updated_at))


def touch(engine, lb_id, status=None):
    """Octavia writes the row: ``updated_at`` now (and a status)."""
    values = {'updated_at': octavia_db.utcnow()}
    if status:
        values['provisioning_status'] = status
    with engine.begin() as conn:
        conn.execute(LB_TABLE.update().where(LB_TABLE.c.id == lb_id)
                     .values(**values))


def test_compare_and_set_changes_the_row_once_and_only_as_seen(tmp_path):
    url = f'sqlite:///{tmp_path}/octavia.sqlite'
    engine = octavia_table(url)
    seen = datetime.datetime(2026, 12, 1, 8, 0, 0)
    insert(engine, 'a', 'PENDING_UPDATE', seen)
    insert(engine, 'b', 'PENDING_UPDATE', seen)
    db = octavia_db.OctaviaDatabase(url)
    stamp = datetime.datetime(2026, 12, 2, 9, 0, 0)
    assert db.reset_to_error('a', 'PENDING_UPDATE', seen, stamp) is True
    assert db.reset_to_error('a', 'PENDING_UPDATE', seen, stamp) is False
    got = db.get_load_balancer('a')
    assert (got['provisioning_status'], got['updated_at']) == ('ERROR',
                                                               stamp)
    # the row changed after planning: refused, untouched
    later = seen + datetime.timedelta(seconds=1)
    assert db.reset_to_error('b', 'PENDING_UPDATE', later, stamp) is False
    assert db.reset_to_error('b', 'PENDING_DELETE', seen, stamp) is False
    assert db.get_load_balancer('b')['provisioning_status'] == \
        'PENDING_UPDATE'
    assert db.get_load_balancer('nope') is None
    assert [r['id'] for r in db.pending_load_balancers()] == ['b']
    assert db.pending_load_balancers(project='other') == []
    db.close()


# -- exactly once, crash at every point ------------------------------


class StuckCloud(fakecloud.Cloud):
    """The fake cloud with its load balancers' status in Octavia's table:
    Octavia fails over ACTIVE or ERROR ones (409 while PENDING_*) and
    deletes them the same way."""

    def __init__(self, engine):
        super().__init__()
        self.engine = engine
        self._deleting = {}

    def add_stuck(self, status, hours=3):
        lb_id = self.add_lb('SINGLE')
        insert(self.engine, lb_id, status,
               octavia_db.utcnow() - datetime.timedelta(hours=hours))
        self.lbs[lb_id]['provisioning_status'] = status
        return lb_id

    def _row_status(self, lb_id):
        with self.engine.connect() as conn:
            return conn.execute(sa.select(LB_TABLE.c.provisioning_status)
                                .where(LB_TABLE.c.id == lb_id)).scalar()

    def _write(self, lb_id, status):
        touch(self.engine, lb_id, status)
        self.lbs[lb_id]['provisioning_status'] = status

    def get_load_balancer(self, lb_id):
        status = self._row_status(lb_id)
        if status in (None, 'DELETED'):
            raise exceptions.CloudNotFound(f'load balancer {lb_id}', 404)
        if lb_id in self._deleting:
            self._deleting[lb_id] -= 1
            if self._deleting[lb_id] <= 0:
                del self._deleting[lb_id]
                self._write(lb_id, 'DELETED')
                raise exceptions.CloudNotFound(f'load balancer {lb_id}',
                                               404)
        self.lbs[lb_id]['provisioning_status'] = status
        lb = super().get_load_balancer(lb_id)
        if lb['provisioning_status'] != status:
            self._write(lb_id, lb['provisioning_status'])
        return lb

    def _busy(self, lb_id):
        if self._row_status(lb_id) not in ('ACTIVE', 'ERROR'):
            raise exceptions.CloudConflict(f'load balancer {lb_id} is busy',
                                           409)
        self.lbs[lb_id]['provisioning_status'] = 'ACTIVE'

    def failover_load_balancer(self, lb_id):
        # as the fake's, with the row written before the call returns
        self.get_load_balancer(lb_id)
        self._busy(lb_id)
        self._change(lb_id)
        for amp in [a for a in self.amps.values()
                    if a['loadbalancer_id'] == lb_id]:
            del self.amps[amp['id']]
            self._amphora(lb_id, amp['role'])
        self._write(lb_id, 'PENDING_UPDATE')
        self._pending[lb_id] = self.SETTLE_READS
        self._done()

    def delete_load_balancer(self, lb_id, cascade=False):
        self.get_load_balancer(lb_id)
        self._busy(lb_id)
        assert cascade
        self._change(lb_id)
        self._write(lb_id, 'PENDING_DELETE')
        self._deleting[lb_id] = self.SETTLE_READS
        self._done()


class Harness(fakecloud.Harness):
    """The fake-cloud harness with a configuration naming Octavia's
    database (the steps read it from ``context.conf``)."""

    def __init__(self, *args, conf=None, **kwargs):
        self.conf = conf
        super().__init__(*args, **kwargs)

    def plan(self):
        plan = self.flow.plan(ctx_mod.PlanContext(
            self.params, cloud_factory=lambda name: self.cloud,
            conf=self.conf), self.params)
        self.records.save_plan(self.job_id,
                               [t.as_dict() for t in plan.targets],
                               [t.as_dict() for t in plan.skipped])
        return plan

    def context(self):
        context = super().context()
        context.conf = self.conf
        return context


@pytest.fixture
def crashing_reset(monkeypatch):
    """The real compare-and-set, with crash points before and after it;
    a reset that changed the row is counted as ``reset:<lb>``."""
    clouds = []
    real = octavia_db.OctaviaDatabase.reset_to_error

    def reset(self, lb_id, *args):
        cloud = clouds[-1]
        cloud.point()
        changed = real(self, lb_id, *args)
        if changed:
            cloud.calls[f'reset:{lb_id}'] += 1
        cloud.point()
        return changed

    monkeypatch.setattr(octavia_db.OctaviaDatabase, 'reset_to_error', reset)
    fakecloud.fast(monkeypatch)
    return clouds


@pytest.fixture
def place(tmp_path):
    """Where the SQLite files go: memory-backed when the machine has it
    (each record write commits; on a busy disk that is most of the
    time), else the test's directory."""
    shm = pathlib.Path('/dev/shm')
    if not shm.is_dir() or not os.access(shm, os.W_OK):
        yield tmp_path
        return
    directory = pathlib.Path(tempfile.mkdtemp(prefix='ow-unit-', dir=shm))
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


class Setting:
    """One Octavia table, records store and configuration for a test's
    jobs (each job its own load balancers and job id)."""

    def __init__(self, directory):
        self.url = f'sqlite:///{directory}/octavia.sqlite'
        self.engine = octavia_table(self.url)
        self.store = fakecloud.store(directory)
        self.conf = conf_mod.load([])
        self.conf.set_override('connection', self.url,
                               group='octavia_database')

    def job(self, clouds, apply=True,
            kinds=('PENDING_UPDATE', 'PENDING_DELETE')):
        """A job over one new stuck load balancer per status in
        ``kinds`` (the first the oldest)."""
        cloud = StuckCloud(self.engine)
        clouds.append(cloud)
        lbs = [cloud.add_stuck(kind, hours=9 - n)
               for n, kind in enumerate(kinds)]
        job = Harness(self.store, cloud, workflow.get('repair-stuck'),
                      {'apply': apply, 'max_failures': 0,
                       'loadbalancers': ','.join(lbs)}, conf=self.conf)
        return (cloud, job) + tuple(lbs)


@pytest.mark.parametrize('kind,outcome', [('PENDING_UPDATE', 'ACTIVE'),
                                          ('PENDING_DELETE', 'DELETED')])
def test_every_repair_happens_exactly_once_across_crashes(
        place, crashing_reset, kind, outcome):
    setting = Setting(place)
    crash_at = 1
    while True:
        cloud, job, lb_id = setting.job(crashing_reset, kinds=(kind,))
        assert [t.target for t in job.plan().targets] == [lb_id]
        cloud.points = 0
        cloud.crash_point = crash_at
        crashes = sum(job.drive(item) for item in job.items())
        target = job.records.get_target(job.job_id, lb_id)
        assert target['state'] == states.DONE, (crash_at, target)
        assert cloud.calls[f'reset:{lb_id}'] == 1, crash_at
        assert cloud.calls[lb_id] == 1, crash_at
        assert cloud._row_status(lb_id) == outcome
        if not crashes:
            break
        crash_at += 1
    # around: begin, the stamp, the reset, its record, the intent, the
    # call, the request's record...
    assert crash_at > 8, crash_at


def test_report_only_changes_nothing(place, crashing_reset):
    cloud, job, update, delete = Setting(place).job(crashing_reset,
                                                    apply=False)
    job.plan()
    for item in job.items():
        job.drive(item)
    rows = {t['target']: t for t in job.records.get_targets(job.job_id)}
    assert rows[update]['state'] == rows[delete]['state'] == states.SKIPPED
    assert rows[update]['error'].startswith(
        'would reset it to ERROR and fail it over (apply=false)')
    assert rows[delete]['error'].startswith(
        'would reset it to ERROR and delete it (apply=false)')
    assert sum(cloud.calls.values()) == 0
    assert cloud._row_status(update) == 'PENDING_UPDATE'


def test_a_row_changed_after_planning_is_refused(place, crashing_reset):
    cloud, job, update, delete = Setting(place).job(crashing_reset)
    job.plan()
    touch(cloud.engine, update)         # Octavia wrote the row since
    item = next(i for i in job.items() if i['target'] == update)
    job.drive(item)
    target = job.records.get_target(job.job_id, update)
    assert target['state'] == states.FAILED
    assert target['error'].startswith(
        'compare-and-set refused: the load balancer changed after planning')
    assert target['error'].endswith('nothing changed')
    assert sum(cloud.calls.values()) == 0
    assert cloud._row_status(update) == 'PENDING_UPDATE'

