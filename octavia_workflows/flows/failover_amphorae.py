"""``failover-amphorae``: replace given amphorae, or restore broken ones.

Targets are amphorae: the ids given in ``amphorae``, or every amphora
whose status is ERROR (``status=ERROR``, Octavia's "restore" procedure),
narrowed by ``loadbalancers``, ``project`` and ``availability_zone``.
The action is an amphora failover.  Octavia refuses an amphora failover
unless the load balancer is ACTIVE; when restoring an ERROR amphora whose
load balancer is itself in ERROR, the load balancer is failed over
instead (repair is the purpose), which replaces its other amphorae too --
their own targets are then SKIPPED as already replaced.  Amphorae of one
load balancer are handled one after the other.

The amphora steps are shared machinery (:mod:`octavia_workflows.
machinery.amphora`).
"""

from octavia_workflows import exceptions, workflow
from octavia_workflows.machinery import amphora, health, runstate, shape
from octavia_workflows.machinery import params as shared

NAME = 'failover-amphorae'


def _check(params):
    shared.exactly_one(params, ('amphorae', 'status'), NAME)


def plan(context, params):
    _check(params)
    cloud = context.cloud()
    repair = params.get('status') == 'ERROR'
    missing = []
    if repair:
        if params.get('loadbalancers'):
            amps = [a for lb_id in params['loadbalancers']
                    for a in cloud.list_amphorae(loadbalancer_id=lb_id,
                                                 status='ERROR')]
        else:
            amps = cloud.list_amphorae(status='ERROR')
        amps = [a for a in amps if a.get('status') == 'ERROR']
    else:
        amps = []
        for amp_id in dict.fromkeys(params['amphorae']):
            try:
                amps.append(cloud.get_amphora(amp_id))
            except exceptions.CloudNotFound:
                missing.append(amp_id)
    lbs, lb_amphorae = amphora.gather(cloud, amps)
    targets, skipped = amphora.select(
        amps, lbs, lb_amphorae, repair=repair, missing=missing,
        project=params.get('project'),
        zone=params.get('availability_zone'),
        loadbalancers=params.get('loadbalancers'))
    return workflow.Plan(targets=targets, skipped=skipped,
                         notes=amphora.plan_notes(targets))


def failover_amphorae_flow(params, targets):
    """Factory of earlier releases: lanes (one load balancer's amphorae
    in one lane) of start / failover / wait atoms per amphora."""
    return amphora.amphora_flow(NAME, params, targets)


def failover_amphorae_flow_v2(params, targets):
    """Factory of earlier releases: lanes (one load balancer's amphorae
    in one lane) of one start-failover-wait atom per amphora."""
    return amphora.amphora_flow(NAME, params, targets,
                                target_flow=shape.compact_target_flow)


def failover_amphorae_flow_v3(params, targets):
    """Factory: at most ``concurrency`` lanes of one atom each, however
    many amphorae (one load balancer's amphorae in one lane)."""
    return amphora.amphora_lanes(NAME, params, targets)


WORKFLOW = workflow.Workflow(
    name=NAME,
    description='Fail over given amphorae, or restore every amphora in '
    'ERROR (paced, circuit-broken, exactly once).',
    params=(
        workflow.Param('amphorae', 'uuids',
                       'amphora ids (comma-separated)'),
        workflow.Param('status', 'str', 'fail over every amphora in this '
                       'status', choices=('ERROR',)),
    ) + shared.FILTER_PARAMS + shared.COMMON_PARAMS + health.PARAMS,
    factory='octavia_workflows.flows.failover_amphorae:'
    'failover_amphorae_flow_v3',
    earlier_factories=(
        'octavia_workflows.flows.failover_amphorae:failover_amphorae_flow',
        'octavia_workflows.flows.failover_amphorae:'
        'failover_amphorae_flow_v2'),
    plan=plan,
    engine='parallel',
    check=_check,
    lanes=shared.lanes,
    run_state=runstate.for_job,
)
