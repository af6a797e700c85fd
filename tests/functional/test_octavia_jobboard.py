"""Reading Octavia's own jobboard (amphorav2), on real Redis and ZooKeeper.

Jobs are posted the way Octavia's controller worker posts them (TaskFlow
board, details ``{'store': <the flow's store>}``) and claimed by a
TaskFlow board as Octavia's conductors do; the reader must report the
load balancers they are about, and never change the board.
"""

import uuid

import pytest
from taskflow.jobs import backends

from octavia_workflows import exceptions
from octavia_workflows.cloud import octavia_jobs


def settings(kind, server, namespace):
    values = {'jobboard_enabled': True,
              'jobboard_backend_hosts': ['127.0.0.1'],
              'jobboard_backend_port': server.port,
              'jobboard_backend_namespace': namespace,
              'jobboard_redis_backend_db': 0}
    if kind == 'redis':
        values.update(jobboard_backend_driver=octavia_jobs.REDIS,
                      jobboard_backend_password=server.password)
    else:
        values['jobboard_backend_driver'] = octavia_jobs.ZOOKEEPER
    return values


@pytest.mark.parametrize('kind', ['redis', 'zookeeper'])
def test_claimed_and_waiting_octavia_jobs_name_their_load_balancers(
        kind, request):
    server = request.getfixturevalue(f'{kind}_server')
    namespace = f'octavia_jobboard_{uuid.uuid4().hex[:8]}'
    values = settings(kind, server, namespace)
    octavia = backends.fetch(namespace, octavia_jobs.board_conf(values))
    octavia.connect()
    try:
        claimed, waiting, other = (str(uuid.uuid4()) for _ in range(3))
        job = octavia.post(f'get_failover_LB_flow-{uuid.uuid4()}', details={
            'store': {'loadbalancer_id': claimed, 'loadbalancer': {
                'loadbalancer_id': claimed}, 'build_type_priority': 20}})
        octavia.claim(job, 'octavia-worker-1')
        octavia.post(f'get_delete_member_flow-{uuid.uuid4()}', details={
            'store': {'member': {'id': 'm1'}, 'loadbalancer_id': waiting}})
        octavia.post(f'get_delete_amphora_flow-{uuid.uuid4()}',
                     details={'store': {}})
        busy = octavia_jobs.busy_load_balancers(values)
        assert set(busy) == {claimed, waiting}
        assert busy[claimed].endswith('is claimed by octavia-worker-1')
        assert busy[waiting].endswith('is waiting on its jobboard '
                                      '(unclaimed)')
        assert other not in busy
        # read-only: the claim is still Octavia's, nothing was consumed
        assert octavia.find_owner(job) == 'octavia-worker-1'
        assert len(list(octavia.iterjobs(ensure_fresh=True))) == 3
    finally:
        octavia.close()


def test_an_unreachable_board_is_transient_and_names_no_secret(
        redis_server):
    values = settings('redis', redis_server, 'octavia_jobboard')
    values['jobboard_backend_port'] = 1        # nothing listens there
    with pytest.raises(exceptions.CloudUnreachable) as err:
        octavia_jobs.busy_load_balancers(values)
    assert "Octavia's jobboard redis://127.0.0.1:1/octavia_jobboard" in str(
        err.value)
    assert redis_server.password not in str(err.value)
