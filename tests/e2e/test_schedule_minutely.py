"""A schedule firing every minute (``* * * * *``) against the sandbox,
across three conductors sharing one Redis jobboard and one MariaDB
store; the conductor running the first fire time's job is SIGKILLed
right after its failover call, before the second fire time.

The runbook is ``rotate-certificates all=true`` over one standalone
load balancer: every job fails its one amphora over, so Octavia's own
database counts the failovers the jobs made (one DELETED amphora each,
none repeated by the takeover), and the second job's target is the
amphora the first one made.  Two fire times (the next minute boundary
and the one after) are the least that shows the schedule going on
after the kill: the test takes one to two minutes, mostly waiting for
them.  The functional tier's six-field test covers more fire times,
seconds apart, with the poster of a job SIGKILLed."""

import datetime
import json
import re
import signal

import pytest
import sqlalchemy as sa

from e2e.runbookhelp import (
    RunbookCli,
    failovers,
    lb_status,
    live_amphorae,
    until,
)
from octavia_workflows.engine import records as rec
from octavia_workflows.engine import schedules
from owtools.sandbox import seed

pytestmark = pytest.mark.e2e

NAME = 'minutely'
CREATED = re.compile(rf'schedule {NAME}: job (\S+) created for fire time '
                     r'(\S+)')


@pytest.fixture
def shared(tmp_path, redis_server, mariadb_server, namespace):
    rb = RunbookCli(tmp_path, 'redis', redis_server,
                    url=mariadb_server.create_database(namespace))
    yield rb
    rb.stop()


def _time(text):
    return datetime.datetime.strptime(text, '%Y-%m-%dT%H:%M:%SZ')


def _created(procs):
    """``[(conductor, job id, fire time text), ...]`` from their logs."""
    return [(proc, job_id, fire) for proc in procs
            for job_id, fire in CREATED.findall(
                proc.log.read_text(errors='replace'))]


def test_every_minute_one_job_per_fire_time_across_a_sigkill(
        sandbox, shared, request):
    rb = shared
    [lb] = seed.seed_api(sandbox.api, 1, topology='SINGLE')
    [first_amp] = [a['id'] for a in live_amphorae(sandbox, lb)]
    sandbox.inject(delays={'compute.build': 1.5})
    request.addfinalizer(sandbox.clear_injection)
    shown = json.loads(rb.cli(
        'schedule', 'create', NAME, '--cron', '* * * * *',
        'rotate-certificates', '--param', 'all=true', '--param',
        f'loadbalancers={lb}', '-f', 'json', check=0).stdout)
    # The conductors start while the first minute boundary approaches.
    conductors = [rb.conductor(f'ctl-{n}') for n in range(3)]
    created = _time(shown['created_at'])
    fire_1 = _time(shown['next_fire'])
    fire_2 = fire_1 + datetime.timedelta(minutes=1)
    assert fire_1.second == 0 and created < fire_1
    assert fire_1 - created <= datetime.timedelta(minutes=1)
    schedule = {'name': NAME, 'created_at': created}
    job_1, job_2 = (schedules.job_id(schedule, f) for f in (fire_1, fire_2))
    expected = {job_1: fire_1, job_2: fire_2}

    # SIGKILL the conductor running the first fire time's job right
    # after its failover call (the build of the new amphora is slowed).
    wait = (fire_1 - rec.utcnow()).total_seconds() + 60
    [(_, job_id, fire)] = until('the first job created',
                                lambda: _created(conductors),
                                timeout=wait, every=0.1)
    assert (job_id, fire) == (job_1, rec.isoformat(fire_1))
    until('the first failover called', lambda: lb_status(
        sandbox, [lb])[lb] == 'PENDING_UPDATE', timeout=60, every=0.02)
    claimed = re.compile(rf'job {job_1}: claimed by (\S+)')
    [(victim, victim_name)] = [
        (p, name) for p in conductors
        for name in claimed.findall(p.log.read_text(errors='replace'))]
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    survivors = [p for p in conductors if p is not victim]

    # The next fire time, handled by a survivor; then no more.
    engine = sa.create_engine(rb.url)
    try:
        store = schedules.ScheduleRecords(engine)
        wait = (fire_2 - rec.utcnow()).total_seconds() + 60
        until('the second fire time handled',
              lambda: (store.get(NAME)['last_fire'] or fire_1) >= fire_2,
              timeout=wait, every=0.5)
    finally:
        engine.dispose()
    final = json.loads(rb.cli('schedule', 'pause', NAME, '-f', 'json',
                              check=0).stdout)
    for job_id in expected:
        rb.wait_for(job_id, lambda j: j['state'] in (
            'SUCCESS', 'FAILED', 'CANCELLED', 'PAUSED'), timeout=120,
            what='the end of the job')

    # The schedule's record: fire 2 is the last one handled, nothing
    # skipped; the jobs list has one job per fire time, each SUCCESS.
    assert final['last_fire'] == rec.isoformat(fire_2), final
    assert final['last_job'] == job_2, final
    assert final['skipped'] == 0 and final['last_skipped'] is None, final
    jobs = rb.jobs()
    assert sorted(j['id'] for j in jobs) == sorted(expected), jobs
    for job in jobs:
        assert job['schedule'] == NAME, job
        assert job['workflow'] == 'rotate-certificates', job
        assert job['state'] == 'SUCCESS', (job, rb.show(job['id']))
        assert _time(job['created']) >= expected[job['id']], job
    # one "created" line per fire time: the first from any conductor,
    # the second from a survivor
    lines = sorted(_created(conductors), key=lambda c: c[2])
    assert [(j, f) for _, j, f in lines] == [
        (job_1, rec.isoformat(fire_1)), (job_2, rec.isoformat(fire_2))]
    assert lines[1][0] is not victim
    # the first job was taken over by a survivor, its failover not
    # called again (counted below)
    owner = rb.show(job_1)['owner']
    assert owner and owner != victim_name, owner

    # In the cloud: each job failed the load balancer's amphora over
    # once; the second job's target is the amphora the first one made.
    report_1, report_2 = rb.report(job_1), rb.report(job_2)
    assert list(report_1) == [first_amp], report_1
    [second_amp] = report_1[first_amp]['after']['amphorae']
    assert list(report_2) == [second_amp], report_2
    [now_amp] = [a['id'] for a in live_amphorae(sandbox, lb)]
    assert report_2[second_amp]['after']['amphorae'] == [now_amp]
    assert {r['state'] for r in (report_1[first_amp],
                                 report_2[second_amp])} == {'DONE'}
    assert len({first_amp, second_amp, now_amp}) == 3
    assert failovers(sandbox, [lb]) == {lb: (1, 2)}
    for proc in survivors:
        text = proc.log.read_text(errors='replace')
        assert 'Traceback' not in text and 'IntegrityError' not in text
