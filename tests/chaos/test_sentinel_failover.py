"""Chaos: the Redis primary is SIGKILLed under a running job; Sentinel
promotes the replica.

A private Sentinel group (one primary, one replica, three sentinels with
their own password; ``down-after-milliseconds`` 1000) is the jobboard of
two conductors; the store is SQLite.  A ``selftest`` job of
``OW_CHAOS_SENTINEL_STEPS`` short steps (default 60 x 0.1 s) runs; after
a few steps, with the job's claim confirmed on the replica, the primary
is SIGKILLed.  Then:

- the sentinels promote the replica and the conductors find it;
- the job ends SUCCESS and every step ran exactly once (the conductor
  was not killed: the step in flight finished, and the next one waited
  at its fencing check until the board answered again);
- no claim was lost or duplicated: the job was claimed once, by one
  conductor, which kept it (its claim had been replicated, and it
  outlives the failover because ``jobboard_expiration_time`` is longer
  than the failover takes); no "claim ... lost" in any log;
- nothing is left on the board.

What asynchronous replication can lose (a post or claim acknowledged in
the last moment before the kill) is described in doc/production-redis.md;
the recovery from a claim that vanishes is tested in
tests/functional/test_chaos.py (``test_claim_vanishes_from_redis``).
"""

import os
import time

from functional.conftest import Deployment
import pytest

from owtools import services, services_redis

pytestmark = [pytest.mark.functional, pytest.mark.chaos]

STEPS = int(os.environ.get('OW_CHAOS_SENTINEL_STEPS', '60'))
#: Longer than a failover (kill -> promotion -> reconnect, a few seconds
#: with down-after-milliseconds 1000) plus a renewal period, so the
#: claim survives on the replica (see doc/production-redis.md).
EXPIRY = 15


def _lines(path):
    try:
        return [int(line.split()[1]) for line in
                path.read_text().splitlines() if line.strip()]
    except FileNotFoundError:
        return []


@pytest.fixture
def cluster(tmp_path):
    group = services_redis.RedisSentinelCluster(tmp_path / 'sentinel')
    try:
        group.start()
    except services.ServiceError as exc:
        pytest.fail(f'redis sentinel cluster could not start: {exc}',
                    pytrace=False)
    yield group
    group.stop()


def _owner_on(node, password, namespace):
    with services_redis._client(node.port, password) as client:
        keys = list(client.scan_iter(match=f'{namespace}*.owned'))
        return [client.get(k) for k in keys]


def test_primary_killed_mid_job_sentinel_promotes(cluster, tmp_path,
                                                  namespace):
    task_flow = {
        'jobboard_enabled': True,
        'jobboard_backend_driver': 'redis_taskflow_driver',
        'jobboard_backend_hosts': cluster.sentinel_hosts,
        'jobboard_redis_sentinel': cluster.master_name,
        'jobboard_redis_sentinel_password': cluster.sentinel_password,
        'jobboard_backend_password': cluster.password,
        'jobboard_backend_namespace': namespace,
        'jobboard_expiration_time': EXPIRY,
        'persistence_connection': f'sqlite:///{tmp_path}/store.sqlite'}
    dep = Deployment(tmp_path, 'redis', 'sqlite', {
        'task_flow': task_flow, 'conductor': {'poll_interval': 0.2}})
    dep.cli('db', 'upgrade', check=0)
    record = tmp_path / 'steps.txt'
    try:
        dep.conductor('ctl-a')
        dep.conductor('ctl-b')
        job_id = dep.submit('selftest', steps=STEPS, step_seconds=0.1,
                            record_to=record)
        old = cluster.primary_node()
        replica = next(n for n in cluster.nodes if n is not old)
        deadline = time.monotonic() + 60
        while len(_lines(record)) < 5 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(_lines(record)) >= 5, 'the job did not start'
        # the claim is on the replica too (the driver WAITs for it)
        owners = _owner_on(replica, cluster.password, namespace)
        assert len(owners) == 1 and owners[0], owners
        claimant = owners[0].decode()
        done_at_kill = len(_lines(record))
        old.kill()
        promoted = cluster.wait_for_failover(old.port, timeout=30)
        assert promoted is replica
        assert done_at_kill < STEPS, 'the job ended before the kill'
        job = dep.wait_for(job_id, lambda j: j['state'] in (
            'SUCCESS', 'FAILED', 'CANCELLED', 'PAUSED'),
            timeout=60 + STEPS * 0.5, what='the end of the job')
        assert job['state'] == 'SUCCESS', job
        # every step exactly once, in order
        assert _lines(record) == list(range(1, STEPS + 1))
        assert all(t['attempts'] == 1 for t in job['targets'])
        # one claim, kept by its conductor through the failover
        assert job['owner'] == claimant
        logs = [p.log.read_text(errors='replace') for p in dep.conductors]
        claimed = [line for text in logs for line in text.splitlines()
                   if f'job {job_id}: claimed by' in line]
        assert len(claimed) == 1, claimed
        assert claimant in claimed[0]
        assert not any(f'claim of {claimant}' in t and 'lost' in t
                       for t in logs)
        assert not any('could lose' in t for t in logs)
        # nothing left behind on the promoted board
        assert _owner_on(promoted, cluster.password, namespace) == []
        listed = dep.cli('list', '-f', 'value', '-c', 'id', check=0)
        assert listed.stdout.strip() == ''
    finally:
        dep.stop_all()
