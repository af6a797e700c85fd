"""Schedules: fire-time arithmetic (an injected clock), the overlap and
pause-on-failure decisions, and the exactly-once compare-and-set on a
real SQLite store.  Real boards and conductor processes are in
tests/functional/test_schedules.py."""

import datetime
import json
import types
import uuid

import pytest

from octavia_workflows import exceptions, states
from octavia_workflows.cli import schedules as cli_schedules
from octavia_workflows.engine import firing, jobs, schedules
from octavia_workflows.engine import persistence as pers
from octavia_workflows.engine import records as rec
from unit.test_cli import cli

T0 = datetime.datetime(2026, 11, 28, 1, 59, 58)


def at(seconds):
    return T0 + datetime.timedelta(seconds=seconds)


class Clock:
    def __init__(self, now=T0):
        self.now = now

    def __call__(self):
        return self.now

    def advance(self, seconds):
        self.now += datetime.timedelta(seconds=seconds)


class Board:
    """The one driver method the firer calls: records what it posts."""

    def __init__(self):
        self.posted = []

    def post(self, job_id, workflow):
        self.posted.append(job_id)
        return str(uuid.uuid4())


@pytest.fixture
def store(tmp_path):
    db = pers.Persistence(f'sqlite:///{tmp_path}/p.sqlite')
    db.records.create_schema()
    yield db.records
    db.engine.dispose()


# -- cron -------------------------------------------------------------------
@pytest.mark.parametrize('expr,after,expected', [
    ('0 3 * * *', T0, datetime.datetime(2026, 11, 28, 3, 0, 0)),
    ('*/5 * * * * *', T0, datetime.datetime(2026, 11, 28, 2, 0, 0)),
    ('30 0 3 * * *', T0, datetime.datetime(2026, 11, 28, 3, 0, 30)),
    ('@daily', T0, datetime.datetime(2026, 11, 29, 0, 0, 0)),
    ('0 1-5 * * sat,sun', T0, datetime.datetime(2026, 11, 28, 2, 0, 0)),
    # strictly after: a fire time itself is not "next"
    ('*/5 * * * * *', datetime.datetime(2026, 11, 28, 2, 0, 0),
     datetime.datetime(2026, 11, 28, 2, 0, 5)),
])
def test_next_fire_time_is_read_in_utc_with_seconds_first(expr, after,
                                                          expected):
    assert schedules.check_cron(expr, after) == expr
    assert schedules.next_after(expr, after) == expected


def test_latest_fire_time_includes_now():
    expr = '*/5 * * * * *'
    assert schedules.latest_at_or_before(expr, at(7)) == at(7)
    assert schedules.latest_at_or_before(
        expr, at(7) + datetime.timedelta(microseconds=400)) == at(7)
    assert schedules.latest_at_or_before(expr, at(6)) == at(2)


@pytest.mark.parametrize('expr,message', [
    ('', 'give 5 fields'),
    ('* * *', 'give 5 fields'),
    ('* * * * * * 2027', 'give 5 fields'),
    ('61 * * * *', 'invalid cron expression'),
    ('* * * * mon-funday', 'invalid cron expression'),
    ('@fortnightly', 'invalid cron expression'),
    ('H * * * *', 'invalid cron expression'),
    ('0 0 30 2 *', 'never fires'),
])
def test_malformed_cron_is_one_line_user_error(expr, message):
    with pytest.raises(schedules.InvalidSchedule) as err:
        schedules.check_cron(expr, T0)
    assert message in str(err.value)
    assert '\n' not in str(err.value)
    assert isinstance(err.value, exceptions.UserError)


@pytest.mark.parametrize('name', ['', 'b d', '-x', 'x' * 65, 'a/b'])
def test_bad_names_are_refused(name):
    with pytest.raises(schedules.InvalidSchedule):
        schedules.check_name(name)


def test_cli_overlap_choices_are_the_engine_s():
    assert cli_schedules.OVERLAPS == schedules.OVERLAPS
    assert cli_schedules.OVERLAPS[0] == schedules.OVERLAP_SKIP


# -- decisions --------------------------------------------------------------
def _schedule(**values):
    base = dict(name='s', cron='*/5 * * * * *', paused=False,
                next_fire=at(2), overlap='skip', last_fire=None,
                created_at=T0, pause_on_failure=False)
    base.update(values)
    return base


def test_not_due_or_paused_decides_nothing():
    assert schedules.decide(_schedule(), at(1)) is None
    assert schedules.decide(_schedule(paused=True), at(100)) is None


def test_due_fires_and_moves_to_the_next_fire_time():
    decision = schedules.decide(_schedule(), at(3))
    assert (decision.action, decision.fire, decision.next_fire,
            decision.missed) == ('fire', at(2), at(7), 0)


def test_missed_fire_times_post_only_the_latest():
    # no conductor from at(2) to at(30): fire times 2, 7, ..., 27 passed
    decision = schedules.decide(_schedule(), at(30))
    assert decision.action == 'fire'
    assert decision.fire == at(27)
    assert decision.next_fire == at(32)
    assert decision.missed == 5          # 2, 7, 12, 17, 22


@pytest.mark.parametrize('state,action', [
    (None, 'fire'), (states.SUCCESS, 'fire'), (states.FAILED, 'fire'),
    (states.CANCELLED, 'fire'), (states.PENDING, 'skip'),
    (states.RUNNING, 'skip'), (states.PAUSED, 'skip')])
def test_overlap_skip_waits_for_the_previous_job(state, action):
    assert schedules.decide(_schedule(), at(3), state).action == action
    assert schedules.decide(_schedule(overlap='allow'), at(3),
                            state).action == 'fire'


@pytest.mark.parametrize('job,expected', [
    (dict(state=states.FAILED, reason='2 target(s) failed'),
     'job J FAILED: 2 target(s) failed'),
    (dict(state=states.PAUSED, reason='circuit breaker: 3 failures'),
     'job J paused itself: circuit breaker: 3 failures'),
    (dict(state=states.PAUSED, reason=states.OPERATOR_PAUSE), None),
    (dict(state=states.PAUSED, reason='x',
          gate='{"waiting": {"gate": "g", "message": "ok?"}}'), None),
    (dict(state=states.SUCCESS, reason=None), None),
    (dict(state=states.CANCELLED, reason='cancelled'), None),
])
def test_which_jobs_pause_a_schedule(job, expected):
    assert schedules.failure(dict(job, id='J')) == expected


def test_resume_never_goes_back_before_the_last_fire():
    schedule = _schedule(last_fire=at(12))
    # this clock is behind the conductor that fired at(12)
    assert schedules.resume_from(schedule, at(3)) == at(17)
    assert schedules.resume_from(schedule, at(20)) == at(22)


def test_job_ids_are_per_schedule_incarnation_and_fire_time():
    one = schedules.job_id(_schedule(), at(2))
    assert one == schedules.job_id(_schedule(), at(2))
    assert one != schedules.job_id(_schedule(), at(7))
    assert one != schedules.job_id(_schedule(created_at=at(1)), at(2))


# -- records and firing on SQLite --------------------------------------------
def _create(records, clock, **kwargs):
    store = schedules.ScheduleRecords(records.engine, clock=clock)
    options = dict(name='five', workflow='selftest', cron='*/5 * * * * *',
                   parameters={'steps': 1})
    options.update(kwargs)
    return store, store.create(**options)


def _finish(records, job_id):
    records.transition(job_id, states.RUNNING, expect=(states.PENDING,))
    records.transition(job_id, states.SUCCESS, expect=(states.RUNNING,))


def _scheduled_jobs(records):
    return [j for j in records.list_jobs(include_finished=True)
            if j['schedule']]


def test_two_conductors_post_one_job_per_fire_time(store):
    clock = Clock()
    _create(store, clock)
    boards = [Board(), Board()]
    firers = [firing.Firer(store, b, 30, clock=clock, interval=0)
              for b in boards]
    for _ in range(4):
        clock.advance(5)
        for firer in firers + firers[::-1]:
            firer.tick()
        # each job finishes before the next fire time
        for job in _scheduled_jobs(store):
            if job['state'] == states.PENDING:
                _finish(store, job['id'])
    jobs = _scheduled_jobs(store)
    assert sorted(j['created_at'] for j in jobs) == [at(5 * n) for n in
                                                      range(1, 5)]
    assert sorted(boards[0].posted + boards[1].posted) == sorted(
        j['id'] for j in jobs)
    assert {j['schedule'] for j in jobs} == {'five'}
    assert all(j['board_job'] for j in jobs)


def test_overlap_skip_records_the_skipped_fire(store):
    clock = Clock()
    schedule_store, _ = _create(store, clock)
    firer = firing.Firer(store, Board(), 30, clock=clock, interval=0)
    clock.advance(5)
    firer.tick()
    first = schedule_store.get('five')
    assert first['last_job'] and first['last_fire'] == at(2)
    clock.advance(5)                 # the first job is still PENDING
    firer.tick()
    clock.advance(5)
    firer.tick()
    row = schedule_store.get('five')
    assert (row['skipped'], row['last_skipped']) == (2, at(12))
    assert row['last_job'] == first['last_job']
    assert len(_scheduled_jobs(store)) == 1
    _finish(store, first['last_job'])
    clock.advance(5)
    firer.tick()
    assert len(_scheduled_jobs(store)) == 2


def test_a_failed_job_pauses_the_schedule_until_resumed(store):
    # The job's record is written with the real clock: start there.
    clock = Clock(rec.utcnow().replace(microsecond=0))
    schedule_store, _ = _create(store, clock, pause_on_failure=True,
                                overlap='allow')
    firer = firing.Firer(store, Board(), 30, clock=clock, interval=0)
    clock.advance(5)
    firer.tick()
    job_id = schedule_store.get('five')['last_job']
    store.transition(job_id, states.FAILED, expect=(states.PENDING,),
                     reason='1 target(s) failed\nmore')
    clock.advance(5)
    firer.tick()
    row = schedule_store.get('five')
    assert row['paused']
    assert row['paused_reason'] == (f'job {job_id} FAILED: 1 target(s) '
                                    f'failed')
    assert len(_scheduled_jobs(store)) == 1
    clock.advance(30)
    firer.tick()
    assert len(_scheduled_jobs(store)) == 1      # paused: nothing posted
    resumed = schedule_store.resume('five')
    assert resumed['next_fire'] > clock.now and not resumed['paused']
    clock.advance(5)
    firer.tick()
    # the failure before the resume does not pause it again
    assert not schedule_store.get('five')['paused']
    assert len(_scheduled_jobs(store)) == 2


def test_a_job_row_left_unposted_is_posted_by_another_conductor(store):
    clock = Clock()
    schedule_store, schedule = _create(store, clock)
    clock.advance(5)
    # a conductor committed the job row and died before posting it
    decision = schedules.decide(schedule, clock.now)
    job_id = schedule_store.fire(schedule, decision, clock.now)
    assert store.get_job(job_id)['board_job'] is None
    board = Board()
    firer = firing.Firer(store, board, 30, clock=clock, interval=0)
    firer.tick()
    assert board.posted == []            # its poster may still be on it
    clock.advance(31)
    firer.tick()
    assert job_id in board.posted
    assert store.get_job(job_id)['board_job']
    # the same fire time is never handled twice
    assert schedule_store.fire(schedule, decision, clock.now) is None


def test_pause_resume_delete_refuse_what_does_not_apply(store):
    clock = Clock()
    schedule_store, _ = _create(store, clock)
    with pytest.raises(schedules.InvalidSchedule, match='exists'):
        _create(store, clock)
    with pytest.raises(schedules.InvalidSchedule, match='not paused'):
        schedule_store.resume('five')
    schedule_store.pause('five')
    with pytest.raises(schedules.InvalidSchedule, match='already paused'):
        schedule_store.pause('five')
    for call in (schedule_store.get, schedule_store.pause,
                 schedule_store.resume, schedule_store.delete):
        with pytest.raises(schedules.ScheduleNotFound):
            call('nope')
    schedule_store.delete('five')
    assert schedule_store.list() == []


# -- the CLI in-process -------------------------------------------------------
@pytest.fixture
def conf(tmp_path):
    path = tmp_path / 'ow.conf'
    path.write_text(f'[task_flow]\npersistence_connection = '
                    f'sqlite:///{tmp_path}/p.sqlite\njobboard_enabled = '
                    f'True\n')
    return str(path)


CREATE = ('schedule', 'create', 'n1', '--cron', '0 3 * * *', 'selftest')


BAD_INPUT = [
    (('schedule', 'create', 'n1', '--cron', '61 * * * *', 'selftest'),
     'invalid cron expression'),
    (('schedule', 'create', 'n1', '--cron', '* * *', 'selftest'),
     'give 5 fields'),
    (('schedule', 'create', 'n1', '--cron', '0 0 30 2 *', 'selftest'),
     'never fires'),
    (('schedule', 'create', 'n1', '--cron', '0 3 * * *', 'no-such-flow'),
     'unknown workflow'),
    (CREATE + ('--param', 'steps=many'), 'parameter steps'),
    (CREATE + ('--param', 'steps=0'), 'parameter steps'),
    (CREATE + ('--param', 'colour=red'), 'colour'),
    (CREATE + ('--param', 'steps'), 'steps'),
    (CREATE + ('--overlap', 'sometimes'), 'invalid choice'),
    (('schedule', 'create', 'n 1', '--cron', '0 3 * * *', 'selftest'),
     'invalid schedule name'),
    (('schedule', 'create', 'n1', 'selftest'), '--cron'),
    (('schedule', 'show', 'nope'), "no schedule named 'nope'"),
    (('schedule', 'pause', 'nope'), "no schedule named 'nope'"),
    (('schedule', 'resume', 'nope'), "no schedule named 'nope'"),
    (('schedule', 'delete', 'nope'), "no schedule named 'nope'"),
]


def test_bad_input_is_one_line_exit_2_and_stores_nothing(conf):
    for argv, message in BAD_INPUT:
        code, out, err = cli(conf, *argv)
        assert code == 2, (argv, out, err)
        assert len(err.strip().splitlines()) == 1 and message in err, err
        assert 'Traceback' not in err
    code, out, _ = cli(conf, 'schedule', 'list', '-f', 'json')
    assert (code, json.loads(out)) == (0, [])
    code, out, _ = cli(conf, 'list', '--all', '-f', 'json')
    assert (code, json.loads(out)) == (0, [])


def test_schedules_need_the_jobboard(tmp_path):
    path = tmp_path / 'inline.conf'
    path.write_text(f'[task_flow]\npersistence_connection = '
                    f'sqlite:///{tmp_path}/p.sqlite\n')
    code, _, err = cli(str(path), *CREATE)
    assert code == 2 and 'jobboard_enabled' in err
    code, out, _ = cli(str(path), 'schedule', 'list', '-f', 'json')
    assert (code, json.loads(out)) == (0, [])


def test_list_and_show_say_which_schedule_posted_a_job(store):
    clock = Clock()
    _create(store, clock)
    firing.Firer(store, Board(), 30, clock=clock, interval=0).tick()
    clock.advance(5)
    firing.Firer(store, Board(), 30, clock=clock, interval=0).tick()
    store.create_job('by-hand', 'selftest', {}, 'board')
    service = jobs.JobService(None, types.SimpleNamespace(records=store))
    shown = {v['id']: v['schedule'] for v in service.list()}
    assert sorted(shown.values(), key=str) == [None, 'five']
    assert service.get('by-hand')['schedule'] is None
    [scheduled] = [j for j, s in shown.items() if s]
    assert service.get(scheduled)['schedule'] == 'five'
