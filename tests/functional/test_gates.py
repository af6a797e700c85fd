"""Approval gates through the real CLI and conductors on Redis and
ZooKeeper: wait stops at the gate (exit 4) and prints it, a conductor
killed while the job waits changes nothing, approve continues on
another conductor without re-running a step, reject ends the job."""

import signal

import pytest

pytestmark = pytest.mark.functional


def _lines(path):
    return path.read_text().split('\n')[:-1] if path.exists() else []


def test_gate_survives_conductor_kill_and_approve_continues(
        make_deployment, board, tmp_path):
    dep = make_deployment(board, 'sqlite')
    record = tmp_path / 'steps.txt'
    job_id = dep.submit('selftest', steps=3, step_seconds=0.2, gate_after=1,
                        record_to=record)
    first = dep.conductor('a')
    proc = dep.cli('wait', job_id, '--timeout', '60')
    assert proc.returncode == 4, proc.stderr
    assert 'approval needed: selftest: approve to run the steps after ' \
        'step 1' in proc.stderr
    assert f'octavia-workflow approve {job_id}' in proc.stderr
    job = dep.show(job_id)
    assert job['state'] == 'PAUSED'
    assert job['gate'] == 'selftest: approve to run the steps after step 1'
    assert job['reason'] == 'waiting for approval at gate selftest-gate'
    assert job['progress']['done'] == 1
    table = dep.cli('show', job_id, check=0).stdout
    assert 'approve to run the steps after step 1' in table

    first.send_signal(signal.SIGKILL)
    first.wait()
    # Waiting again returns at once with the same answer.
    assert dep.cli('wait', job_id, '--timeout', '10').returncode == 4
    approved = dep.cli('approve', job_id, '-f', 'json', check=0)
    assert '"state": "PENDING"' in approved.stdout
    dep.conductor('b')
    proc = dep.cli('wait', job_id, '--timeout', '60')
    assert proc.returncode == 0, proc.stderr
    job = dep.show(job_id)
    assert job['state'] == 'SUCCESS' and job['gate'] is None
    assert [a['gate'] for a in job['approvals']] == ['selftest-gate']
    assert _lines(record) == [f'{job_id} 1', f'{job_id} 2', f'{job_id} 3']
    # Answered gates cannot be answered again.
    proc = dep.cli('approve', job_id)
    assert proc.returncode == 2
    assert 'not waiting at an approval gate' in proc.stderr


def test_reject_ends_the_job_cancelled(make_deployment, tmp_path):
    dep = make_deployment('redis', 'sqlite')
    record = tmp_path / 'steps.txt'
    job_id = dep.submit('selftest', steps=3, step_seconds=0, gate_after=2,
                        record_to=record)
    dep.conductor('a')
    assert dep.cli('wait', job_id, '--timeout', '60').returncode == 4
    proc = dep.cli('reject', job_id, '--reason', 'change window closed',
                   '-f', 'value', '-c', 'state', '-c', 'reason', check=0)
    state, reason = proc.stdout.splitlines()
    assert state == 'CANCELLED'
    assert reason.startswith('rejected at gate selftest-gate by ')
    assert '(change window closed): selftest: approve' in reason
    assert dep.cli('wait', job_id, '--timeout', '10').returncode == 1
    job = dep.show(job_id)
    assert {t['target']: t['state'] for t in job['targets']} == {
        'step-1': 'DONE', 'step-2': 'DONE', 'step-3': 'SKIPPED'}
    assert _lines(record) == [f'{job_id} 1', f'{job_id} 2']
    for command in ('approve', 'reject', 'resume'):
        assert dep.cli(command, job_id).returncode == 2


def test_resume_answers_a_gate(make_deployment):
    dep = make_deployment('redis', 'sqlite')
    job_id = dep.submit('selftest', steps=2, step_seconds=0, gate_after=1)
    dep.conductor('a')
    assert dep.cli('wait', job_id, '--timeout', '60').returncode == 4
    dep.cli('resume', job_id, check=0)
    assert dep.cli('wait', job_id, '--timeout', '60').returncode == 0
    assert [a['gate'] for a in dep.show(job_id)['approvals']] == [
        'selftest-gate']
