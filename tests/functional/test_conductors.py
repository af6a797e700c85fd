"""Conductors under real signals: SIGKILL takeover, SIGTERM, poison jobs.

Two conductor processes share a real jobboard and MariaDB; the owner of a
selftest job is killed mid-step and the other one must finish the job with
every step recorded exactly once, except at most the interrupted one.
"""

import signal
import time

from clihelp import start
import pytest

pytestmark = pytest.mark.functional


def _owner_proc(dep, job):
    for proc in dep.conductors:
        text = proc.log.read_text(errors='replace')
        if f'job {job["id"]}: claimed by {job["owner"]}' in text:
            return proc
    raise AssertionError(f'no conductor log claims {job["id"]}')


def _steps(path, job_id):
    numbers = []
    for line in path.read_text().splitlines():
        owner, number = line.split()
        assert owner == job_id
        numbers.append(int(number))
    return numbers


def test_sigkill_owner_another_conductor_finishes(make_deployment, board,
                                                  tmp_path):
    dep = make_deployment(board, 'mariadb')
    expiry = dep.options['task_flow']['jobboard_expiration_time']
    dep.conductor('ctl-one')
    dep.conductor('ctl-two')
    record = tmp_path / 'steps.txt'
    steps = 8
    job_id = dep.submit('selftest', steps=steps, step_seconds=0.6,
                        record_to=record)
    job = dep.wait_for(job_id, lambda j: j['progress']['done'] >= 3,
                       what='three steps')
    victim = _owner_proc(dep, job)
    victim.send_signal(signal.SIGKILL)
    killed_at = time.monotonic()
    victim.wait()
    job = dep.wait_for(job_id, lambda j: j['owner'] != job['owner'] and
                       j['progress']['done'] > job['progress']['done'],
                       timeout=expiry + 20, what='takeover')
    took = time.monotonic() - killed_at
    assert dep.cli('wait', job_id, '--timeout', '60').returncode == 0
    final = dep.show(job_id)
    assert final['state'] == 'SUCCESS'
    assert final['owner'] == job['owner']      # the survivor finished it
    numbers = _steps(record, job_id)
    assert sorted(set(numbers)) == list(range(1, steps + 1))
    repeated = [n for n in set(numbers) if numbers.count(n) > 1]
    assert len(repeated) <= 1 and all(numbers.count(n) == 2
                                      for n in repeated)
    # taken over within the claim expiry plus a margin (polling, start-up)
    assert took < expiry + 8, took
    attempts = {t['target']: t['attempts'] for t in final['targets']}
    assert sum(attempts.values()) <= steps + 1


def test_sigterm_exits_promptly_and_another_finishes(make_deployment, board,
                                                     tmp_path):
    dep = make_deployment(board, 'sqlite')
    first = dep.conductor('ctl-term')
    record = tmp_path / 'steps.txt'
    job_id = dep.submit('selftest', steps=6, step_seconds=0.5,
                        record_to=record)
    dep.wait_for(job_id, lambda j: j['progress']['done'] >= 1,
                 what='first step')
    first.send_signal(signal.SIGTERM)
    started = time.monotonic()
    assert first.wait(timeout=15) == 0
    assert time.monotonic() - started < 5
    job = dep.show(job_id)
    assert job['state'] in ('PENDING', 'RUNNING') and job['state'] != \
        'SUCCESS'
    # The claim was released, not left to expire: the next conductor
    # starts at once rather than after the expiry.
    dep.conductor('ctl-next')
    assert dep.cli('wait', job_id, '--timeout', '60').returncode == 0
    numbers = _steps(record, job_id)
    assert numbers == list(range(1, 7))
    assert dep.show(job_id)['owner'].startswith('ctl-next')


def test_a_job_that_kills_every_conductor_ends_failed(make_deployment):
    dep = make_deployment('redis', 'sqlite', expiry=2,
                          conductor={'max_job_attempts': 2})
    job_id = dep.submit('selftest', steps=1, step_seconds=120)
    # The first attempt makes progress (it freezes the plan); the next
    # two are the two attempts in a row without progress.  Each victim
    # dies inside the step (the plan frozen, nothing finished).
    for attempt in range(1, 4):
        proc = dep.conductor('ctl-victim')
        dep.wait_for(job_id, lambda j, n=attempt: j['state'] == 'RUNNING'
                     and j['targets'] and j['targets'][0]['attempts'] >= n,
                     timeout=30, what=f'step started by attempt {attempt}')
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    dep.conductor('ctl-last')
    job = dep.wait_for(job_id, lambda j: j['state'] == 'FAILED',
                       timeout=30, what='FAILED')
    assert 'gave up after 2 attempts without progress' in job['reason']
    assert dep.cli('wait', job_id, '--timeout', '5').returncode == 1


def test_ctrl_c_stops_waiting_never_the_job(make_deployment):
    dep = make_deployment('redis', 'sqlite')
    conductor = dep.conductor('ctl-wait')
    job_id = dep.submit('selftest', steps=6, step_seconds=0.4)
    dep.wait_for(job_id, lambda j: j['state'] == 'RUNNING', what='RUNNING')
    waiter = start(dep.path, 'wait', job_id, log=dep.tmp_path / 'wait.log')
    time.sleep(1.5)
    waiter.send_signal(signal.SIGINT)
    assert waiter.wait(timeout=10) != 0
    out = (dep.tmp_path / 'wait.log').read_text()
    assert 'stopped waiting; the job carries on' in out
    assert 'Traceback' not in out
    assert dep.cli('wait', job_id, '--timeout', '60').returncode == 0
    assert dep.show(job_id)['progress']['done'] == 6
    # A conductor that has finished jobs still stops at once on SIGTERM.
    conductor.send_signal(signal.SIGTERM)
    assert conductor.wait(timeout=10) == 0


def test_posting_claimed_before_it_is_recorded_still_runs(make_deployment,
                                                          board, tmp_path):
    """``submit`` posts, then records the posting's uuid: a conductor that
    claims the posting in between must run the job, not drop it as a
    stale posting (which lost the job for good)."""
    from octavia_workflows import conf as ow_conf
    from octavia_workflows.engine import jobboard, persistence

    dep = make_deployment(board, 'sqlite')
    conf = ow_conf.load([str(dep.path)])
    store = persistence.Persistence(conf.task_flow.persistence_connection)
    driver = jobboard.fetch(conf)
    driver.connect()
    record = tmp_path / 'steps.txt'
    try:
        # What submit does, stopped between posting and recording.
        job_id = 'c0ffee00-0000-4000-8000-000000000001'
        store.records.create_job(job_id, 'selftest', {
            'steps': 2, 'step_seconds': 0.0, 'record_to': str(record)},
            'board')
        driver.post(job_id, 'selftest')
        dep.conductor('ctl-race')
        job = dep.wait_for(job_id, lambda j: j['state'] == 'SUCCESS',
                           what='the job to run')
        assert job['progress']['done'] == 2
        assert len(_steps(record, job_id)) == 2
        log = dep.conductors[0].log.read_text()
        assert 'stale posting' not in log
    finally:
        driver.close()
        dep.stop_all()
