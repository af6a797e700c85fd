"""Chaos: the jobboard (Redis, ZooKeeper) or the database restarts while a
job runs.

Private servers (so the session's are untouched) are SIGKILLed in the
middle of a selftest job and started again on the same port and data:
the job must finish SUCCESS with every step recorded exactly once
except at most the one that was interrupted, and no job may be lost.
"""

import signal
import time

import pytest

from functional.conftest import Deployment, board_options
from owtools import services

pytestmark = pytest.mark.functional


def _steps(path, job_id):
    numbers = []
    for line in path.read_text().splitlines():
        owner, number = line.split()
        assert owner == job_id
        numbers.append(int(number))
    return numbers


def _check_exactly_once(numbers, steps):
    assert sorted(set(numbers)) == list(range(1, steps + 1))
    repeated = [n for n in set(numbers) if numbers.count(n) > 1]
    assert len(repeated) <= 1 and all(numbers.count(n) == 2
                                      for n in repeated)


def _two_steps_in(dep, conductor, steps, record):
    """Start a conductor and a selftest job; return once two steps ran."""
    dep.conductor(conductor)
    job_id = dep.submit('selftest', steps=steps, step_seconds=0.4,
                        record_to=record)
    dep.wait_for(job_id, lambda j: j['progress']['done'] >= 2,
                 what='two steps')
    return job_id


@pytest.fixture
def private(tmp_path):
    started = []

    def make(cls, **kwargs):
        server = cls(tmp_path / cls.name, **kwargs).start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


def _deployment(tmp_path, namespace, board, url, kind='redis'):
    task_flow = board_options(kind, board, namespace)
    task_flow['persistence_connection'] = url
    dep = Deployment(tmp_path, kind, 'custom', {
        'task_flow': task_flow, 'conductor': {'poll_interval': 0.2}})
    dep.cli('db', 'upgrade', check=0)
    return dep


@pytest.mark.parametrize('victim', ['redis', 'zookeeper', 'mariadb'])
def test_backend_restart_mid_run(tmp_path, namespace, private, victim):
    if victim == 'zookeeper':
        board = private(services.ZooKeeperServer)
    else:
        board = private(services.RedisServer, appendonly=True)
    db = private(services.MariaDBServer)
    dep = _deployment(tmp_path, namespace, board,
                      db.create_database('chaos'),
                      kind='zookeeper' if victim == 'zookeeper' else 'redis')
    record = tmp_path / 'steps.txt'
    steps = 10
    try:
        job_id = _two_steps_in(dep, 'ctl-chaos', steps, record)
        server = db if victim == 'mariadb' else board
        server.kill()
        time.sleep(3)                    # longer than a step, < expiry
        server.start()
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            proc = dep.cli('show', job_id, '-f', 'value', '-c', 'state')
            if proc.returncode == 0 and proc.stdout.strip() == 'SUCCESS':
                break
            time.sleep(0.5)
        job = dep.show(job_id)
        assert job['state'] == 'SUCCESS', job
        _check_exactly_once(_steps(record, job_id), steps)
        # nothing else was lost or left behind on the board
        listed = dep.cli('list', '-f', 'value', '-c', 'id', check=0)
        assert listed.stdout.strip() == ''
    finally:
        for proc in dep.conductors:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
            proc.wait()


def test_claim_vanishes_from_redis(tmp_path, namespace, private):
    """Redis forgets the claim (a restart lost its last writes) while
    the owner is mid-run: the owner must notice, stop, and run the job
    again only once its first run has ended, never two runs at once."""
    import redis as redis_client

    redis = private(services.RedisServer)
    db = private(services.MariaDBServer)
    dep = _deployment(tmp_path, namespace, redis,
                      db.create_database('vanish'))
    record = tmp_path / 'steps.txt'
    steps = 8
    client = redis_client.Redis(host='127.0.0.1', port=redis.port,
                                password=redis.password)
    try:
        job_id = _two_steps_in(dep, 'ctl-vanish', steps, record)
        owned = [key for key in client.scan_iter(match=b'*.owned')]
        assert owned, 'the running job has no claim key on the board'
        client.delete(*owned)
        job = dep.wait_for(job_id, lambda j: j['state'] == 'SUCCESS',
                           timeout=90, what='SUCCESS')
        _check_exactly_once(_steps(record, job_id), steps)
        log = dep.conductors[0].log.read_text()
        assert 'claim of ctl-vanish' in log and 'lost' in log
        assert job['state'] == 'SUCCESS'
    finally:
        dep.stop_all()
        client.close()
