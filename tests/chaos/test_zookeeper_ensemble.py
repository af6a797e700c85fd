"""Chaos: the ZooKeeper leader dies in the middle of a running job.

A three-node ensemble (``owtools.services_zookeeper``, started once for
this module) carries a digest-protected jobboard; one conductor runs a
``selftest`` job of ``OW_CHAOS_ZK_STEPS`` short steps (default 150).
When about a third of the steps are done the leader is SIGKILLed; the
two survivors elect a new one and every client (the conductor's among
them: a follower that loses its leader drops its clients) reconnects
within the session timeout.  The old leader is started again, and at
two thirds the new leader is killed as well.  The job must end SUCCESS,
with the same owner, and every step recorded exactly once (no conductor
died, so not even the step in flight may run twice).

    OW_CHAOS_ZK_STEPS=2000 \\
        tools/run-tests tests/chaos/test_zookeeper_ensemble.py
"""

import collections
import os
import time

from functional.conftest import Deployment
import pytest

from owtools import services
from owtools.services_zookeeper import ZooKeeperEnsemble

pytestmark = [pytest.mark.functional, pytest.mark.chaos]

STEPS = int(os.environ.get('OW_CHAOS_ZK_STEPS', '150'))
#: The claim expiry is the ZooKeeper session timeout: an election (well
#: under a second with the harness's 200 ms tick) must fit in it.
EXPIRY = 8


@pytest.fixture(scope='module')
def ensemble(tmp_path_factory):
    ens = ZooKeeperEnsemble(tmp_path_factory.mktemp('zk-chaos'))
    try:
        ens.start()
    except services.ServiceError as exc:
        pytest.fail(f'zookeeper ensemble could not start: {exc}',
                    pytrace=False)
    yield ens
    ens.stop()


def _steps(path):
    try:
        return [int(line.split()[1]) for line in
                path.read_text().splitlines() if line.strip()]
    except FileNotFoundError:
        return []


def test_the_leader_dies_mid_job_and_the_job_finishes(
        ensemble, tmp_path, namespace):
    dep = Deployment(tmp_path, 'zookeeper', 'sqlite', {
        'task_flow': {
            'jobboard_enabled': True,
            'jobboard_backend_driver': 'zookeeper_taskflow_driver',
            'jobboard_backend_hosts': ensemble.hosts,
            'jobboard_backend_namespace': namespace,
            'jobboard_expiration_time': EXPIRY,
            'jobboard_backend_username': 'ow',
            'jobboard_backend_password': f'zk-digest-{namespace}',
            'persistence_connection':
                f'sqlite:///{tmp_path}/persistence.sqlite'},
        'conductor': {'poll_interval': 0.2}})
    dep.cli('db', 'upgrade', check=0)
    record = tmp_path / 'steps.txt'
    conductor = dep.conductor('zk-chaos')
    try:
        job_id = dep.submit('selftest', steps=STEPS, step_seconds=0.02,
                            record_to=record)
        killed = []
        owner = None
        deadline = time.monotonic() + 60 + STEPS * 0.2
        while time.monotonic() < deadline:
            # progress from the record (cheap), then the job (a CLI run)
            done = len(_steps(record))
            if len(killed) < 2 and done >= (len(killed) + 1) * STEPS // 3:
                if killed:                      # the first one is back
                    ensemble.restart(killed[-1])
                leader = ensemble.leader()
                assert leader is not None, [n.mode() for n in ensemble.nodes]
                ensemble.kill(leader)
                killed.append(leader)
                killed_at = done
                continue
            job = dep.show(job_id)
            owner = owner or job['owner']
            if job['state'] in ('SUCCESS', 'FAILED', 'CANCELLED', 'PAUSED'):
                break
            time.sleep(0.1)
        job = dep.show(job_id)
        assert conductor.poll() is None, 'the conductor died'
    finally:
        dep.stop_all()
        for node in ensemble.nodes:
            if not node.running:
                ensemble.restart(node)
    log = conductor.log.read_text(errors='replace')
    assert job['state'] == 'SUCCESS', (job, log[-3000:])
    assert len(killed) == 2, f'the job ended after {len(killed)} kill(s)'
    assert killed_at < STEPS, 'the second leader died after the last step'
    assert job['owner'] == owner
    counts = collections.Counter(_steps(record))
    assert counts == {n: 1 for n in range(1, STEPS + 1)}, [
        n for n in range(1, STEPS + 1) if counts[n] != 1]
    assert job['progress']['done'] == STEPS
    # the conductor really lost its server (and came back) each time
    assert log.count('Zookeeper connection lost') >= 2, log[-3000:]
    # ... with its session, and so its claim, intact
    assert 'Session has expired' not in log
