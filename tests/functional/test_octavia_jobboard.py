"""Reading Octavia's own jobboard (amphorav2), on real Redis and ZooKeeper.

Jobs are posted the way Octavia's controller worker posts them (TaskFlow
board, details ``{'store': <the flow's store>}``) and claimed by a
TaskFlow board as Octavia's conductors do; the reader must report the
load balancers they are about, and never change the board.
"""

import uuid

import pytest
from taskflow.jobs import backends
from unit import fakecloud
from unit.test_repair_stuck import Harness, StuckCloud, octavia_table

from octavia_workflows import conf as conf_mod
from octavia_workflows import exceptions, states, workflow
from octavia_workflows.cloud import octavia_jobs
from octavia_workflows.engine import context as ctx_mod


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


def test_repair_stuck_leaves_alone_what_octavias_jobs_are_about(
        redis_server, tmp_path, monkeypatch):
    """The runbook with Octavia's board configured: a load balancer with
    a claimed Octavia job is skipped at planning, and one whose job is
    posted after planning is skipped when its turn comes."""
    fakecloud.fast(monkeypatch)
    namespace = f'octavia_jobboard_{uuid.uuid4().hex[:8]}'
    url = f'sqlite:///{tmp_path}/octavia.sqlite'
    cloud = StuckCloud(octavia_table(url))
    planned_busy = cloud.add_stuck('PENDING_UPDATE', hours=5)
    later_busy = cloud.add_stuck('PENDING_UPDATE', hours=4)
    conf = conf_mod.load([])
    conf.set_override('connection', url, group='octavia_database')
    for key, value in settings('redis', redis_server, namespace).items():
        conf.set_override(key, value, group='octavia_jobboard')
    octavia = backends.fetch(namespace, octavia_jobs.board_conf(
        dict(conf.octavia_jobboard.items())))
    octavia.connect()
    try:
        job = octavia.post(f'get_failover_LB_flow-{uuid.uuid4()}', details={
            'store': {'loadbalancer_id': planned_busy}})
        octavia.claim(job, 'octavia-worker-1')
        flow = workflow.get('repair-stuck')
        params = flow.validate({'apply': 'true'})
        plan = flow.plan(ctx_mod.PlanContext(
            params, cloud_factory=lambda name: cloud, conf=conf), params)
        assert [t.target for t in plan.targets] == [later_busy]
        assert [(t.target, t.reason) for t in plan.skipped] == [
            (planned_busy, f'Octavia job {job.name} is claimed by '
             f'octavia-worker-1')]
        # posted (not yet claimed) after planning: skipped at its turn
        harness = Harness(fakecloud.store(tmp_path), cloud, flow,
                          {'apply': True}, conf=conf)
        harness.plan()
        octavia.post(f'get_failover_LB_flow-{uuid.uuid4()}', details={
            'store': {'loadbalancer_id': later_busy}})
        [item] = harness.items()
        harness.drive(item)
        row = harness.records.get_target(harness.job_id, later_busy)
        assert row['state'] == states.SKIPPED
        assert row['error'].endswith('is waiting on its jobboard '
                                     '(unclaimed)')
        assert sum(cloud.calls.values()) == 0
        assert cloud._row_status(later_busy) == 'PENDING_UPDATE'
    finally:
        octavia.close()
