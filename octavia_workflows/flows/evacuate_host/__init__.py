"""``evacuate-host``: move every amphora off one compute host.

Octavia's "Evacuating a Specific Amphora from a Host" procedure, for a
whole host: the amphorae whose VMs run on ``host`` (Nova's servers on
the host joined to the amphorae's ``compute_id``) are failed over one
by one after scheduling on the host was disabled, so that their
replacements land elsewhere.  The job has three kinds of targets, in
this order:

1. ``host:<host>`` (``disable-compute-service``, when
   ``disable_compute_service`` is true, the default): disable the host's
   nova-compute service with ``reason``; a service that is already
   disabled is left as it is.  Nothing else starts before this is done.
2. one ``amphora-failover`` target per amphora on the host (the tasks
   of ``failover-amphorae``: paced, circuit-broken, idempotent across a
   crash; an amphora whose load balancer is not ACTIVE, or that left
   the host meanwhile, is SKIPPED with the reason);
3. ``verify:<host>`` (``verify-host-empty``): no amphora of an ACTIVE
   load balancer may be left on the host.

The job does not enable the service again: the host is being emptied
for maintenance; enable it when the work there is done.

With a jobboard the job holds the host's fleet lock (``host:<host>``)
from its first change of the host (the disable, or its first failover)
to its end: another job on the same host (cleanup-node) waits for it,
and this job waits for one that holds the host, up to ``[fleet]
lock_timeout``; the disable target then is SKIPPED ``in use by job
<id>``, and with it every target not started.

What happens on failure: a transient error is retried in short checks;
if the service cannot be disabled (a permanent error) the job FAILS at
once and no amphora is touched (the remaining targets are SKIPPED with
that reason); a failed failover marks that amphora FAILED and the
circuit breaker pauses the job after ``max_failures`` of them; the
verification FAILS (and with it the job) when amphorae of ACTIVE load
balancers are still on the host, naming them.  A host with no amphora
gives an empty plan (nothing is disabled).
"""

from octavia_workflows import exceptions, workflow
from octavia_workflows.machinery import (
    amphora_plan,
    health,
    hosts,
    inventory,
    runstate,
)
from octavia_workflows.machinery import params as shared

NAME = 'evacuate-host'
DISABLE = 'disable-compute-service'
FAILOVER = amphora_plan.ACTION
VERIFY = 'verify-host-empty'
#: Nova's limit for ``disabled_reason``.
REASON_MAX = 255


def _check(params):
    if not (params.get('host') or '').strip():
        raise exceptions.InvalidParameter(
            'parameter host: give the compute host to evacuate')
    if len(params.get('reason') or '') > REASON_MAX:
        raise exceptions.InvalidParameter(
            f'parameter reason: at most {REASON_MAX} characters')


def preflight(context, params, dry_run):
    hosts.host_service(context.cloud(), params['host'])


def disable_reason(params, job_id=None):
    if params.get('reason'):
        return params['reason']
    suffix = f' job {job_id}' if job_id else ''
    return f'evacuated by octavia-workflows{suffix}'


def build_plan(params, service, servers, amphorae, lbs, lb_amphorae):
    """The plan from what the cloud says (pure: unit tested).

    ``servers``: Nova servers on the host; ``amphorae``: live amphorae;
    ``lbs``/``lb_amphorae``: their load balancers, as
    :func:`failover_amphorae.gather` returns them.
    """
    host = params['host']
    pairs = hosts.on_host(servers, amphorae)
    others = len(servers) - len(pairs)
    notes = []
    if others:
        notes.append(f'{others} server(s) on {host} are not amphorae: left '
                     f'alone')
    if not pairs:
        notes.append(f'no amphora runs on {host}: nothing to do (the '
                     f'compute service is left {service.get("status")})')
        return workflow.Plan(targets=[], notes=notes)
    server_of = {amp['id']: server for amp, server in pairs}
    amp_targets, skipped = amphora_plan.select(
        [amp for amp, _ in pairs], lbs, lb_amphorae)
    for item in amp_targets + skipped:
        server = server_of.get(item.target) or {}
        item.details.update(host=host, compute_id=server.get('id'),
                            server=server.get('name'))
    targets = []
    if params.get('disable_compute_service', True):
        targets.append(workflow.Target(f'host:{host}', DISABLE, {
            'host': host, 'service': service.get('id'),
            'status': service.get('status'),
            'disabled_reason': service.get('disabled_reason')}))
        if service.get('status') == 'disabled':
            notes.append(f'the compute service of {host} is already '
                         f'disabled ({service.get("disabled_reason")})')
    else:
        notes.append(f'disable_compute_service=false: Nova may place '
                     f'replacements on {host} again unless it is disabled '
                     f'otherwise')
    targets.extend(amp_targets)
    targets.append(workflow.Target(f'verify:{host}', VERIFY, {'host': host}))
    notes.extend(amphora_plan.plan_notes(amp_targets))
    notes.append(f'the compute service of {host} stays disabled after the '
                 f'job; enable it when the host is back in service')
    return workflow.Plan(targets=targets, skipped=skipped, notes=notes)


def plan(context, params):
    _check(params)
    cloud = context.cloud()
    service = hosts.host_service(cloud, params['host'])
    servers = cloud.list_servers_on_host(params['host'])
    amphorae = cloud.list_amphorae()
    pairs = hosts.on_host(servers, amphorae)
    lbs, lb_amphorae = amphora_plan.gather(cloud, [a for a, _ in pairs])
    return build_plan(params, service, servers, amphorae, lbs, lb_amphorae)


def left_on_host(servers, amphorae, lbs):
    """``(active, other)``: ids of the live amphorae still on the host
    whose load balancer is ACTIVE, and the rest of them."""
    active, other = [], []
    for amp, _server in hosts.on_host(servers, amphorae):
        lb = lbs.get(amp.get('loadbalancer_id'))
        if lb is not None and lb.get('provisioning_status') == \
                inventory.ACTIVE:
            active.append(amp['id'])
        else:
            other.append(amp['id'])
    return active, other


WORKFLOW = workflow.Workflow(
    name=NAME,
    description='Disable scheduling on a compute host, fail over every '
    'amphora on it, verify none is left.',
    params=(
        workflow.Param('host', 'str', 'the compute host to empty',
                       required=True),
        workflow.Param('disable_compute_service', 'bool', 'disable the '
                       'nova-compute service of the host first', default=True),
        workflow.Param('reason', 'str', 'disabled_reason recorded in Nova '
                       '(default: "evacuated by octavia-workflows job ID")'),
    ) + shared.COMMON_PARAMS + health.PARAMS,
    factory='octavia_workflows.flows.evacuate_host:evacuate_host_flow_v2',
    earlier_factories=(
        'octavia_workflows.flows.evacuate_host:evacuate_host_flow',),
    plan=plan,
    engine='parallel',
    check=_check,
    preflight=preflight,
    lanes=shared.lanes,
    run_state=runstate.for_job,
)

#: The steps and flow factories, in :mod:`.flow` (see
#: :func:`octavia_workflows.workflow.flow_names`).
__getattr__ = workflow.flow_names(__name__)
