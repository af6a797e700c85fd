"""The job lifecycle, the same on every jobboard and persistence backend.

Parametrised over ``board`` (Redis, ZooKeeper) and ``store`` (SQLite,
MariaDB, and PostgreSQL on Redis: see ``PAIRS`` in the conftest):
submit, claim by a conductor, progress, pause, resume, cancel, logbook
handling, all through the real console script.
"""

import pytest
import sqlalchemy as sa

pytestmark = pytest.mark.functional


def _lines(path):
    return path.read_text().splitlines() if path.exists() else []


def test_job_runs_on_a_conductor(make_deployment, board, store, tmp_path):
    dep = make_deployment(board, store)
    record = tmp_path / 'steps.txt'
    job_id = dep.submit('selftest', steps=3, step_seconds=0.1,
                        record_to=record)
    job = dep.show(job_id)
    assert job['state'] == 'PENDING' and job['owner'] is None
    listed = dep.cli('list', '-f', 'value', '-c', 'id', check=0).stdout
    assert job_id in listed.split()

    dep.conductor('ctl-a')
    assert dep.cli('wait', job_id, '--timeout', '60').returncode == 0
    job = dep.show(job_id)
    assert job['state'] == 'SUCCESS'
    assert job['owner'].startswith('ctl-a')
    assert job['progress'] == {'total': 3, 'done': 3, 'failed': 0,
                               'skipped': 0, 'running': 0}
    assert [t['state'] for t in job['targets']] == ['DONE'] * 3
    assert [t['attempts'] for t in job['targets']] == [1] * 3
    assert _lines(record) == [f'{job_id} {n}' for n in (1, 2, 3)]
    # the finished job left the board: a second conductor finds nothing
    assert not dep.cli('list', '-f', 'value', '-c', 'state',
                       check=0).stdout.strip().count('PENDING')


def test_pause_resume_and_cancel_while_running(make_deployment, board,
                                               store, tmp_path):
    dep = make_deployment(board, store)
    dep.conductor('ctl-b')
    record = tmp_path / 'steps.txt'
    job_id = dep.submit('selftest', steps=8, step_seconds=0.4,
                        record_to=record)
    dep.wait_for(job_id, lambda j: j['progress']['done'] >= 1,
                 what='first step')
    dep.cli('pause', job_id, check=0)
    job = dep.wait_for(job_id, lambda j: j['state'] == 'PAUSED',
                       what='PAUSED')
    paused_at = job['progress']['done']
    assert paused_at < 8
    assert dep.show(job_id)['progress']['done'] == paused_at

    dep.cli('resume', job_id, check=0)
    assert dep.cli('wait', job_id, '--timeout', '60').returncode == 0
    assert _lines(record) == [f'{job_id} {n}' for n in range(1, 9)]

    other = dep.submit('selftest', steps=20, step_seconds=0.3)
    dep.wait_for(other, lambda j: j['progress']['done'] >= 1,
                 what='first step')
    dep.cli('cancel', other, check=0)
    assert dep.cli('wait', other, '--timeout', '30').returncode == 1
    job = dep.show(other)
    assert job['state'] == 'CANCELLED'
    states = {t['state'] for t in job['targets']}
    assert states <= {'DONE', 'SKIPPED'} and 'SKIPPED' in states
    assert 'RUNNING' not in states and 'PENDING' not in states


def test_pause_before_any_conductor_keeps_it_off_the_board(
        make_deployment, board, store):
    dep = make_deployment(board, store)
    job_id = dep.submit('selftest', steps=2, step_seconds=0)
    dep.cli('pause', job_id, check=0)
    assert dep.show(job_id)['state'] == 'PAUSED'
    dep.conductor('ctl-c')
    # A conductor that is up and polling does not touch a paused job.
    dep.wait_for(job_id, lambda j: j['state'] == 'PAUSED', timeout=2)
    dep.cli('resume', job_id, check=0)
    assert dep.cli('wait', job_id, '--timeout', '60').returncode == 0


@pytest.mark.parametrize('save', [False, True])
def test_logbooks_of_finished_jobs_follow_save_logbook(
        make_deployment, board, store, save):
    dep = make_deployment(board, store,
                          task_flow={'jobboard_save_logbook': save})
    job_id = dep.submit('selftest', steps=1, step_seconds=0)
    dep.conductor('ctl-d')
    assert dep.cli('wait', job_id, '--timeout', '60').returncode == 0
    url = dep.options['task_flow']['persistence_connection']
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            count = conn.execute(sa.text(
                'SELECT COUNT(*) FROM logbooks WHERE uuid = :u'),
                {'u': job_id}).scalar()
    finally:
        engine.dispose()
    assert count == (1 if save else 0)
