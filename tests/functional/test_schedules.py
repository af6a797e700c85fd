"""Schedules through the real CLI and real conductor processes on real
Redis and ZooKeeper boards and MariaDB/PostgreSQL stores.

The exactly-once test fires every 5 seconds (a six-field cron
expression, seconds first) for about 20 seconds across three
conductors, SIGKILLs the one that has just posted a job, and checks
that every fire time in the window got exactly one job, each run to the
end.  It polls the store directly (a CLI call costs a second).
"""

import datetime
import json
import re
import signal
import time

import pytest

from octavia_workflows import conf as ow_conf
from octavia_workflows.engine import persistence, schedules

pytestmark = pytest.mark.functional

EVERY = 5                     # seconds between fire times
WINDOW = 20                   # seconds the schedule runs


def _schedules(dep):
    return json.loads(dep.cli('schedule', 'list', '-f', 'json',
                              check=0).stdout)


def _jobs(dep):
    return json.loads(dep.cli('list', '--all', '-f', 'json',
                              check=0).stdout)


def _time(text):
    return datetime.datetime.strptime(text, '%Y-%m-%dT%H:%M:%SZ')


def _bad(dep, *args):
    proc = dep.cli('schedule', *args)
    assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and 'Traceback' not in proc.stderr, proc.stderr
    return lines[0]


def test_schedule_commands_and_bad_input_store_nothing(make_deployment):
    """Every bad input is in the unit tier (in-process); here the real
    console script on a real board and MariaDB."""
    dep = make_deployment('zookeeper', 'mariadb')
    create = ('create', 'nightly', '--cron', '0 3 * * *', 'selftest')
    bad = {
        ('create', 'n1', '--cron', '61 * * * *', 'selftest'):
            'invalid cron expression',
        ('create', 'n1', '--cron', '0 3 * * *', 'no-such-flow'):
            'unknown workflow',
        ('create', 'n1', '--cron', '0 3 * * *', 'selftest', '--param',
         'steps=many'): 'parameter steps',
    }
    for args, message in bad.items():
        assert message in _bad(dep, *args), args
    assert _schedules(dep) == []

    shown = json.loads(dep.cli('schedule', *create, '--param', 'steps=2',
                               '--pause-on-failure', '-f', 'json',
                               check=0).stdout)
    assert shown['state'] == 'active' and shown['timezone'] == 'UTC'
    assert shown['parameters']['steps'] == 2
    assert shown['overlap'] == 'skip' and shown['pause_on_failure'] is True
    next_fire = _time(shown['next_fire'])
    created = _time(shown['created_at'])
    assert (next_fire.hour, next_fire.minute, next_fire.second) == (3, 0, 0)
    assert created < next_fire <= created + datetime.timedelta(days=1)
    assert 'exists' in _bad(dep, *create)
    assert [s['name'] for s in _schedules(dep)] == ['nightly']

    paused = json.loads(dep.cli('schedule', 'pause', 'nightly', '-f',
                                'json', check=0).stdout)
    assert paused['state'] == 'paused'
    assert paused['paused_reason'] == 'paused by the operator'
    assert 'already paused' in _bad(dep, 'pause', 'nightly')
    resumed = json.loads(dep.cli('schedule', 'resume', 'nightly', '-f',
                                 'json', check=0).stdout)
    assert resumed['state'] == 'active' and resumed['paused_reason'] is None
    assert resumed['next_fire'] == shown['next_fire']
    assert 'not paused' in _bad(dep, 'resume', 'nightly')
    assert "no schedule named 'nope'" in _bad(dep, 'show', 'nope')
    assert 'nightly' in dep.cli('schedule', 'list', check=0).stdout
    assert dep.cli('schedule', 'delete', 'nightly',
                   check=0).stdout.strip() == 'schedule nightly deleted'
    assert _schedules(dep) == []
    assert dep.cli('schedule', 'list', check=0).stdout.strip() == \
        'no schedules'
    # nothing of the above posted or stored a job
    assert _jobs(dep) == []


def _created_lines(dep, name):
    """``[(conductor process, job id), ...]`` from the conductors' logs."""
    pattern = re.compile(rf'schedule {name}: job (\S+) created for fire '
                         r'time')
    found = []
    for proc in dep.conductors:
        for job_id in pattern.findall(proc.log.read_text(errors='replace')):
            found.append((proc, job_id))
    return found


@pytest.mark.parametrize('pair', [('zookeeper', 'postgresql')],
                         ids=['zookeeper-postgresql'])
def test_three_conductors_one_sigkilled_post_one_job_per_fire_time(
        make_deployment, pair, tmp_path):
    dep = make_deployment(*pair)
    db = persistence.Persistence(ow_conf.load([str(dep.path)])
                                 .task_flow.persistence_connection)
    store = schedules.ScheduleRecords(db.engine)
    try:
        _fire_across_conductors(dep, db, store, tmp_path)
    finally:
        db.close()


def _fire_across_conductors(dep, db, store, tmp_path):
    for n in range(3):
        dep.conductor(f'ctl-{n}')
    deadline = time.monotonic() + 60
    while not all('running' in p.log.read_text(errors='replace')
                  for p in dep.conductors):
        assert time.monotonic() < deadline, 'conductors did not start'
        time.sleep(0.2)
    record = tmp_path / 'steps.txt'
    shown = json.loads(dep.cli(
        'schedule', 'create', 'tick', '--cron', f'*/{EVERY} * * * * *',
        'selftest', '--param', 'steps=1', '--param', 'step_seconds=0',
        '--param', f'record_to={record}', '--overlap', 'allow', '-f', 'json',
        check=0).stdout)
    created = _time(shown['created_at'])

    # SIGKILL the conductor that has just posted the second job.
    deadline = time.monotonic() + 3 * EVERY + 20
    while len(_created_lines(dep, 'tick')) < 2:
        assert time.monotonic() < deadline, 'no second job posted'
        time.sleep(0.1)
    victim = _created_lines(dep, 'tick')[-1][0]
    victim.send_signal(signal.SIGKILL)
    victim.wait()

    deadline = time.monotonic() + WINDOW + 20
    while True:
        last = store.get('tick')['last_fire']
        if last and last >= created + datetime.timedelta(seconds=WINDOW):
            break
        assert time.monotonic() < deadline, 'the schedule stopped firing'
        time.sleep(0.2)
    final = json.loads(dep.cli('schedule', 'pause', 'tick', '-f', 'json',
                               check=0).stdout)
    last_fire = _time(final['last_fire'])

    # Every fire time after the schedule was created, up to the last one
    # handled, has exactly one job; no job is left unfinished.
    fire_times = []
    when = created + datetime.timedelta(seconds=1)
    while when <= last_fire:
        if when.second % EVERY == 0:
            fire_times.append(when)
        when += datetime.timedelta(seconds=1)
    assert len(fire_times) >= WINDOW // EVERY
    expected = {schedules.job_id(dict(name='tick', created_at=created), t):
                t for t in fire_times}
    deadline = time.monotonic() + 60
    while True:
        rows = [j for j in db.records.list_jobs(include_finished=True)
                if j['schedule'] == 'tick']
        if all(j['state'] == 'SUCCESS' for j in rows) and len(rows) >= len(
                expected):
            break
        assert time.monotonic() < deadline, [
            (j['id'], j['state']) for j in rows]
        time.sleep(0.2)
    jobs = [j for j in _jobs(dep) if j['schedule'] == 'tick']
    assert sorted(j['id'] for j in jobs) == sorted(expected)
    assert {j['state'] for j in jobs} == {'SUCCESS'}
    for job in rows:
        assert job['created_at'] >= expected[job['id']]
    assert final['skipped'] == 0
    assert final['last_job'] == max(expected, key=expected.get)
    assert dep.show(final['last_job'])['schedule'] == 'tick'
    # each job's step ran (a step interrupted by the SIGKILL may run twice)
    lines = record.read_text().split('\n')
    ran = [line.split()[0] for line in lines if line.strip()]
    assert set(ran) == set(expected)
    assert len(ran) <= len(expected) + 1
    for proc in dep.conductors:
        if proc is not victim:
            text = proc.log.read_text(errors='replace')
            assert 'Traceback' not in text and 'IntegrityError' not in text


def test_a_job_whose_conductor_died_before_posting_it_runs(make_deployment,
                                                           tmp_path):
    """What a conductor SIGKILLed between the commit of a fire time and
    the board posting leaves behind: another conductor posts the job
    (after the claim expiry) and it runs, once."""
    dep = make_deployment('redis', 'sqlite')
    record = tmp_path / 'steps.txt'
    dep.cli('schedule', 'create', 'later', '--cron', '0 3 * * *',
            'selftest', '--param', 'steps=1', '--param', 'step_seconds=0',
            '--param', f'record_to={record}', check=0)
    db = persistence.Persistence(ow_conf.load([str(dep.path)])
                                 .task_flow.persistence_connection)
    try:
        store = schedules.ScheduleRecords(db.engine)
        schedule = store.get('later')
        fire = schedule['next_fire']
        decision = schedules.Decision(
            'fire', fire, schedules.next_after(schedule['cron'], fire))
        job_id = store.fire(schedule, decision, schedule['created_at'])
        assert db.records.get_job(job_id)['board_job'] is None
    finally:
        db.close()
    dep.conductor('ctl-repair')
    job = dep.wait_for(job_id, lambda j: j['state'] == 'SUCCESS',
                       timeout=60, what='the unposted job to run')
    assert job['schedule'] == 'later'
    assert record.read_text().split() == [job_id, '1']
    assert 'posted by no conductor' in dep.conductors[0].log.read_text()
