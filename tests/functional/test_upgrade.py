"""Upgrading octavia-workflows itself: jobs saved by one process (and by
an earlier release) finish in a fresh process of the current code.

- ``data/upgrade/*.sqlite`` are persistence stores written by earlier
  releases (kept forever, one per release): a ``selftest`` job paused at
  its approval gate after step 2 of 3.  The current code upgrades the
  schema, and ``approve`` finishes the job from its saved logbook: steps
  1 and 2 are not run again.
- The same, saved now by a separate process with the current code.
- A foreground run killed with SIGKILL in the middle of a step, resumed
  by a fresh process: every step ran, only the interrupted one maybe
  twice.

Write this release's store (once per release; an existing file is never
overwritten) with::

    PYTHONPATH=tests python tests/functional/test_upgrade.py --write
"""

import pathlib
import shutil
import signal
import sys
import time

from clihelp import run, start, write_conf
import pytest
import sqlalchemy as sa

from octavia_workflows.engine import records as rec

pytestmark = pytest.mark.functional

DATA = pathlib.Path(__file__).parent / 'data' / 'upgrade'
EXPIRY = 2


def _conf(directory):
    db = directory / 'persistence.sqlite'
    return write_conf(directory / 'ow.conf', DEFAULT={
        'state_path': str(directory)}, task_flow={
        'persistence_connection': f'sqlite:///{db}',
        'jobboard_expiration_time': EXPIRY}), db


def save_paused_job(directory):
    """A selftest job paused at its gate after step 2 of 3 (job id)."""
    conf, _ = _conf(directory)
    run(conf, 'db', 'upgrade', check=0)
    proc = run(conf, 'submit', 'selftest', '--param', 'steps=3', '--param',
               'step_seconds=0', '--param', 'gate_after=2', '-f', 'value',
               '-c', 'id', check=4)
    return proc.stdout.strip()


def _targets(db, job_id):
    engine = sa.create_engine(f'sqlite:///{db}')
    try:
        return {t['target']: t for t in
                rec.Records(engine).get_targets(job_id)}
    finally:
        engine.dispose()


def _finish_saved_job(directory):
    conf, db = _conf(directory)
    [job_id] = run(conf, 'list', '-f', 'value', '-c', 'id',
                   check=0).stdout.split()
    before = _targets(db, job_id)
    assert [before[f'step-{n}']['state'] for n in (1, 2, 3)] == [
        'DONE', 'DONE', 'PENDING']
    run(conf, 'db', 'upgrade', check=0)
    shown = run(conf, 'show', job_id, '-f', 'value', '-c', 'state',
                check=0).stdout.split()
    assert shown == ['PAUSED']
    proc = run(conf, 'approve', job_id, '-f', 'value', '-c', 'state')
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ['SUCCESS']
    after = _targets(db, job_id)
    for n in (1, 2):
        step = f'step-{n}'
        assert after[step]['attempts'] == 1, step      # not run again
        assert after[step]['finished_at'] == before[step]['finished_at']
    assert after['step-3']['state'] == 'DONE'
    assert after['step-3']['attempts'] == 1


@pytest.mark.parametrize('saved', sorted(
    p.name for p in DATA.glob('*.sqlite')) if DATA.is_dir() else [])
def test_job_saved_by_an_earlier_release_finishes(tmp_path, saved):
    shutil.copy(DATA / saved, tmp_path / 'persistence.sqlite')
    _finish_saved_job(tmp_path)


def test_releases_store_exists():
    assert list(DATA.glob('*.sqlite')), 'write one: see the docstring'


def test_job_saved_by_another_process_finishes(tmp_path):
    save_paused_job(tmp_path)
    _finish_saved_job(tmp_path)


def test_killed_foreground_run_resumes_in_a_fresh_process(tmp_path):
    conf, db = _conf(tmp_path)
    run(conf, 'db', 'upgrade', check=0)
    record = tmp_path / 'steps.txt'
    proc = start(conf, 'submit', 'selftest', '--param', 'steps=4',
                 '--param', 'step_seconds=0.4', '--param',
                 f'record_to={record}', log=tmp_path / 'first.log')
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if record.exists() and len(record.read_text().splitlines()) >= 2:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    [job_id] = run(conf, 'list', '-f', 'value', '-c', 'id',
                   check=0).stdout.split()
    time.sleep(EXPIRY + 0.5)       # the dead run's heartbeat goes stale
    proc = run(conf, 'resume', job_id, '-f', 'value', '-c', 'state')
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ['SUCCESS']
    steps = [int(line.split()[1]) for line in
             record.read_text().splitlines()]
    assert sorted(set(steps)) == [1, 2, 3, 4]
    assert steps[:2] == [1, 2]
    assert len(steps) <= 5          # only the interrupted step twice


def _write():
    from octavia_workflows import version

    target = DATA / f'{version.version_string()}-selftest-gate.sqlite'
    if target.exists():
        raise SystemExit(f'{target} exists; stores are never rewritten')
    work = DATA / '.work'
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        save_paused_job(work)
        shutil.copy(work / 'persistence.sqlite', target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(target)


if __name__ == '__main__':
    if sys.argv[1:] != ['--write']:
        raise SystemExit('usage: test_upgrade.py --write')
    _write()


def _given_up_by_an_old_conductor(make_deployment, post):
    """Post a job with ``post(service, store)`` (returns its id) on a
    Redis jobboard, run a conductor of this release with an attempt
    limit of 2 and return the job once it ended FAILED."""
    from octavia_workflows.conf import load
    from octavia_workflows.engine import jobboard, jobs
    from octavia_workflows.engine import persistence as pers

    dep = make_deployment('redis', 'sqlite',
                          conductor={'max_job_attempts': 2})
    conf = load([dep.path])
    store = pers.Persistence(conf.task_flow.persistence_connection)

    def board():
        driver = jobboard.fetch(conf)
        driver.connect()
        return driver

    service = jobs.JobService(conf, store, board_factory=board)
    try:
        job_id = post(service, store)
    finally:
        service.close()
        store.close()
    dep.conductor('old')
    return dep.wait_for(job_id, lambda j: j['state'] == 'FAILED',
                        timeout=60, what='FAILED')


def test_unknown_workflow_is_left_for_an_upgraded_conductor(
        make_deployment):
    """A conductor that does not know a job's workflow (a newer release
    posted it) gives it back; with no conductor knowing it the job ends
    FAILED after the attempt limit, with the reason."""

    class Newer:
        name = 'from-a-newer-release'

    job = _given_up_by_an_old_conductor(
        make_deployment, lambda service, store: service.create(Newer, {}))
    assert job['reason'] == (
        "gave up after 2 attempts without progress: transient failure: "
        "unknown workflow 'from-a-newer-release' (see \"octavia-workflow "
        "flows\") on this conductor")


def test_job_of_an_unknown_factory_is_left_for_an_upgraded_conductor(
        make_deployment, tmp_path):
    """A job whose logbook names a flow factory this release does not
    have (a newer release started it) is given back, never run with
    another graph; with no conductor knowing it the job ends FAILED after
    the attempt limit, with the reason."""
    from taskflow.persistence import models

    from octavia_workflows.flows import selftest

    newer = 'octavia_workflows.flows.selftest:selftest_flow_v9'
    record = tmp_path / 'steps.txt'

    def post(service, store):
        job_id = service.create(selftest.WORKFLOW, selftest.WORKFLOW.validate(
            {'steps': '1', 'step_seconds': '0', 'record_to': str(record)}))
        book = models.LogBook(f'job-{job_id}', uuid=job_id)
        detail = models.FlowDetail('selftest', uuid=job_id)
        detail.meta.update(workflow='selftest', factory=newer)
        book.add(detail)
        store.taskflow_backend().get_connection().save_logbook(book)
        return job_id

    job = _given_up_by_an_old_conductor(make_deployment, post)
    assert job['reason'].startswith(
        'gave up after 2 attempts without progress: transient failure: '
        f'workflow selftest: this release does not have the flow factory '
        f'{newer} that built the job')
    assert not record.exists()
