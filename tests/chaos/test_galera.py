"""Chaos: the Galera node a conductor writes to dies in the middle of a job.

A three-node MariaDB Galera cluster (rsync SST, started here); the
persistence URL lists the three nodes, node A first, as an operator
without a virtual IP configures it.  One conductor (Redis jobboard) runs
a ``selftest`` job of ``OW_CHAOS_GALERA_STEPS`` short steps (default 100;
the record file counts every step that ran).  Once it is writing to node
A (its sessions are seen there) and has done a third of the steps, node A
is killed with SIGKILL, with a write of the conductor in flight on it (the
test holds the job's row on node A until the conductor's next write waits
for it).  The same conductor carries on through node B: the job ends
SUCCESS, every step ran exactly once, every target is DONE on both
surviving nodes, and the conductor was never restarted.

Writers on two nodes at once conflict (Galera certification failures
surface as deadlock errors): the job records retry the rolled-back
transaction, so every call lands exactly once.

    OW_CHAOS_GALERA_STEPS=2000 tools/run-tests tests/chaos/test_galera.py
"""

import collections
import contextlib
import os
import threading
import time

from functional.conftest import Deployment, board_options
import pytest

from octavia_workflows.engine import persistence
from owtools import services
from owtools.services_sql import GaleraCluster

pytestmark = [pytest.mark.functional, pytest.mark.chaos]

STEPS = int(os.environ.get('OW_CHAOS_GALERA_STEPS', '100'))


@pytest.fixture(scope='module')
def galera(tmp_path_factory):
    cluster = GaleraCluster(tmp_path_factory.mktemp('galera'))
    try:
        cluster.start()
    except services.ServiceError as exc:
        cluster.remove()
        pytest.fail(f'Galera cluster could not start: {exc}', pytrace=False)
    yield cluster
    cluster.remove()


def _lines(path):
    try:
        return [int(line.split()[1]) for line in
                path.read_text().splitlines() if line.strip()]
    except FileNotFoundError:
        return []


def _query(node, sql, *args):
    with contextlib.closing(node._root()) as conn:
        with conn.cursor() as cur:
            cur.execute(sql, args)
            return cur.fetchall()


def _sessions(node, database):
    return _query(node, 'SELECT COUNT(*) FROM information_schema.PROCESSLIST '
                  'WHERE USER = %s AND DB = %s', node.user, database)[0][0]


def _wait_for_blocked_write(node, database, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _query(node, 'SELECT COUNT(*) FROM information_schema.PROCESSLIST '
                  "WHERE USER = %s AND DB = %s AND INFO LIKE 'UPDATE%%'",
                  node.user, database)[0][0]:
            return
        time.sleep(0.05)
    raise AssertionError('no write of the conductor waits on node A')


def test_job_survives_the_death_of_its_galera_node(galera, tmp_path,
                                                   namespace, redis_server):
    url = galera.create_database(namespace, order=[0, 1, 2])
    task_flow = board_options('redis', redis_server, namespace, expiry=4)
    task_flow['persistence_connection'] = url
    dep = Deployment(tmp_path, 'redis', 'galera', {
        'task_flow': task_flow, 'conductor': {'poll_interval': 0.2}})
    node_a, node_b, node_c = galera.nodes
    try:
        dep.cli('db', 'upgrade', check=0)
        record = tmp_path / 'steps.txt'
        conductor = dep.conductor('galera-a')
        job_id = dep.submit('selftest', steps=STEPS, step_seconds=0.02,
                            record_to=record)
        deadline = time.monotonic() + 60
        while len(_lines(record)) < STEPS // 3:
            assert time.monotonic() < deadline, 'the job does not progress'
            time.sleep(0.05)
        # The conductor writes to node A (listed first).  Hold the job's
        # row there so its next write waits on node A, then kill node A
        # with that write in flight.
        assert _sessions(node_a, namespace) >= 1
        with contextlib.closing(node_a._root()) as lock:
            with lock.cursor() as cur:
                cur.execute('BEGIN')
                cur.execute(f'SELECT id FROM `{namespace}`.ow_jobs WHERE '
                            'id = %s FOR UPDATE', (job_id,))
                _wait_for_blocked_write(node_a, namespace)
                done_at_kill = len(_lines(record))
                galera.kill(0)
        assert done_at_kill < STEPS
        proc = dep.cli('wait', job_id, '--timeout', str(30 + STEPS))
        assert proc.returncode == 0, proc.stdout + proc.stderr
        job = dep.show(job_id)
        assert job['state'] == 'SUCCESS', job
        assert conductor.poll() is None       # the same conductor, alive
        assert len(dep.conductors) == 1
    finally:
        dep.stop_all()
    counts = collections.Counter(_lines(record))
    assert sorted(counts) == list(range(1, STEPS + 1))     # nothing lost
    assert set(counts.values()) == {1}, [                  # nothing twice
        n for n, c in counts.items() if c > 1]
    assert job['progress']['done'] == STEPS
    # What the conductor wrote after the failover is on both survivors.
    for node in (node_b, node_c):
        [(done,)] = _query(node, f'SELECT COUNT(*) FROM `{namespace}`.'
                           "ow_targets WHERE job_id = %s AND state = 'DONE'",
                           job_id)
        assert done == STEPS, node.port
        [(state,)] = _query(node, f'SELECT state FROM `{namespace}`.ow_jobs '
                            'WHERE id = %s', job_id)
        assert state == 'SUCCESS'
    log = conductor.log.read_text(errors='replace')
    assert 'transient failure' not in log, 'the job was released, not ' \
        'carried on through the next node'
    # the write in flight was retried through another node
    assert 'trying again' in log or 'database unreachable' in log


def _conflicts(nodes):
    total = 0
    for node in nodes:
        status = node.wsrep_status()
        total += int(status['wsrep_local_cert_failures'])
        total += int(status['wsrep_local_bf_aborts'])
    return total


def test_conflicting_writers_on_two_nodes_each_land_once(galera, namespace):
    """Two processes' worth of writers, pinned to different nodes, add
    attempts to one job row as fast as they can: the conflicts Galera
    reports are retried, and the count is exact (none lost, none twice)."""
    galera.create_database(namespace)
    stores = [persistence.Persistence(galera.url(namespace, order=[i]))
              for i in (1, 2)]
    calls = 40
    errors = []
    try:
        stores[0].upgrade()
        stores[0].records.create_job('j-1', 'selftest', {}, 'board')
        before = _conflicts(galera.nodes[1:])

        def writer(store):
            try:
                for _ in range(calls):
                    store.records.add_attempt('j-1')
            except Exception as exc:    # reported below
                errors.append(exc)

        threads = [threading.Thread(target=writer, args=(store,))
                   for store in stores for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert not errors, errors
        assert _conflicts(galera.nodes[1:]) > before, 'no conflict happened'
        for store in stores:
            assert store.records.get_job('j-1')['attempts'] == 4 * calls
    finally:
        for store in stores:
            store.close()
