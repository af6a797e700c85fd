"""``failover-loadbalancers``: fail over exactly the given load balancers.

The worked example of doc/writing-a-runbook.md (that page shows this
file; a test checks they agree).  What happens on failure: a load
balancer that is not ACTIVE when its turn comes is SKIPPED with the
reason; a transient cloud error is tried again later; a failover that
does not end ACTIVE with new amphorae FAILS its target, and the circuit
breaker pauses the job after ``max_failures`` of them.
"""

from octavia_workflows import exceptions, states, workflow
from octavia_workflows.machinery import inventory, lanes, runstate, steps
from octavia_workflows.machinery import params as shared

NAME = 'failover-loadbalancers'
ACTION = 'lb-failover'


def plan(context, params):
    """Read-only: the targets in order, and what is skipped and why."""
    cloud = context.cloud()
    targets, skipped = [], []
    for lb_id in params['loadbalancers']:
        try:
            lb, amps = cloud.get_load_balancer_and_amphorae(lb_id)
        except exceptions.CloudNotFound:
            skipped.append(workflow.Target(lb_id, ACTION, {'lb': lb_id},
                                           'load balancer not found'))
            continue
        details = inventory.summary(lb, amps)
        reason = inventory.lb_skip_reason(lb, amps)
        (skipped if reason else targets).append(
            workflow.Target(lb_id, ACTION, details, reason))
    return workflow.Plan(targets=targets, skipped=skipped)


class Start(steps.StartTarget):
    """Re-check just before acting; the "before" snapshot."""

    @staticmethod
    def read(cloud, details):
        try:
            return cloud.get_load_balancer_and_amphorae(details['lb'])
        except exceptions.CloudNotFound:
            return None

    def judge(self, context, data):
        if data is None:
            return 'load balancer no longer exists', None
        lb, amps = data
        return inventory.lb_skip_reason(lb, amps), inventory.snapshot(amps)


class Failover(steps.ActOnTarget):
    """The one cloud-changing call, idempotent across a crash."""

    def already_done(self, context, cloud, record):
        lb_id = self.details['lb']
        if cloud.get_load_balancer(lb_id)['provisioning_status'] != 'ACTIVE':
            return True                     # our call is under way
        now = {a['id'] for a in inventory.live(
            cloud.list_amphorae(loadbalancer_id=lb_id))}
        return now != set((record.before or {}).get('amphorae') or [])

    def call(self, cloud, record):
        cloud.failover_load_balancer(self.details['lb'])


class Wait(steps.WaitForTarget):
    """Verify: ACTIVE again, and no amphora from before left."""

    def verify(self, context, cloud, record, lb):
        after = inventory.snapshot(cloud.list_amphorae(
            loadbalancer_id=lb['id']))
        if lb.get('provisioning_status') != 'ACTIVE':
            return states.FAILED, f'{lb["provisioning_status"]} after ' \
                'its failover', after
        kept = set(after['amphorae']) & set(
            (record.before or {}).get('amphorae') or [])
        if kept:
            return states.FAILED, f'not replaced: {sorted(kept)}', after
        return states.DONE, None, after


def failover_loadbalancers_flow(params, targets):
    """Factory: at most ``concurrency`` lanes, one atom each.  Its atom
    names are frozen once released; a changed graph gets a new factory."""
    return lanes.build(NAME, params, targets,
                       lanes.steps_of(NAME, Start, Failover, Wait))


WORKFLOW = workflow.Workflow(
    name=NAME,
    description='Fail over exactly the given load balancers (paced, '
    'circuit-broken, exactly once).',
    params=(workflow.Param('loadbalancers', 'uuids',
                           'the load balancer ids (comma-separated)',
                           required=True),) + shared.COMMON_PARAMS,
    factory='unit.example_runbook:failover_loadbalancers_flow',
    plan=plan,
    engine='parallel',
    lanes=shared.lanes,
    run_state=runstate.for_job,
)
