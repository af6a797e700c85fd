"""``reconfigure-amphorae``: push the current agent configuration.

Octavia's adoption procedure: when the control plane moves (new
health-manager addresses, ``[health_manager] controller_ip_port_list``),
every amphora must be told, with ``PUT /v2/octavia/amphorae/{id}/config``.
Until an amphora is reconfigured it sends its heartbeats to the old
addresses; a health manager that hears nothing from an amphora for its
``heartbeat_timeout`` seconds fails it over -- during an adoption that
is every amphora at once.  So the runbook refuses to start unless the
operator confirms ``health_managers_stopped=true``: the health managers
at the old addresses are stopped, and any new one runs so that it cannot
fail amphorae over meanwhile (its ``failover_threshold`` set, or a long
``heartbeat_timeout``).  A dry run works without it and says why.

Targets are the amphorae of the load balancers selected by
``loadbalancers``, ``project`` and ``availability_zone`` (default: all),
one load balancer's amphorae one after the other, paced like the
rotation runbooks (``concurrency``, ``interval``, ``max_per_az``) with
the same circuit breaker (``max_failures``).  An amphora whose load
balancer is not ACTIVE, or which is neither ALLOCATED nor
FAILOVER_STOPPED, is SKIPPED with the reason (a FAILOVER_STOPPED one is
exactly what a guarded health manager makes of an amphora still sending
to the old addresses: it needs the push most).

What happens on failure:

- a transient error (5xx, timeout, unreachable API) is retried up to
  ``retries`` times with a growing pause, then the amphora is FAILED;
  any other refusal FAILS it at once; a 404 SKIPS it (the amphora was
  replaced meanwhile, and its replacement boots with the current
  configuration);
- a failed amphora never fails the job by itself: the breaker pauses the
  job after ``max_failures`` of them;
- a conductor that dies after sending the request but before recording
  the answer sends it again on resume: a repeated configuration push is
  harmless, and every request sent is counted (``attempts`` and
  ``after.calls`` in the report), so a duplicate shows.

Octavia answers 202 and then works in the background; the configure
call changes no status that could be polled.  What shows the effect is
what Octavia's health manager records when a heartbeat arrives:
``amphora_health.last_update`` in Octavia's database (the API exposes
no such trace; :mod:`~octavia_workflows.machinery.amphora_health`).
With ``heartbeat_timeout`` (default 60 s) each target, after its push
was accepted, waits that long for a heartbeat recorded later than the
last one before the push -- it can only come from a health manager that
runs, i.e. a new one -- and is DONE only then; an amphora whose
heartbeats do not move FAILS (``no heartbeat ... reached a health
manager within 60 s of the configuration push``) and counts for the
breaker: typically an agent older than the fix of Octavia bug 2121691,
which stores the new list but keeps sending to the old addresses until
it restarts (the plan warns about images built before the first fixed
release).  That needs ``[octavia_database] connection`` (read-only use)
on the conductors: without it a real submit, and a job's planning, are
refused with one line.  ``heartbeat_timeout=0`` pushes without checking
(then every health manager may stay stopped), and the report says what
was confirmed (the request was accepted; the amphora and its load
balancer looked healthy afterwards) and what was not.
"""

from octavia_workflows import exceptions, workflow
from octavia_workflows.machinery import (
    amphora_health,
    amphora_plan,
    inventory,
    runstate,
)
from octavia_workflows.machinery import params as shared

NAME = 'reconfigure-amphorae'
ACTION = 'amphora-configure'
ALLOCATED = 'ALLOCATED'
#: Amphora statuses that get the push.
CONFIGURABLE = (ALLOCATED, 'FAILOVER_STOPPED')
#: Longest pause between two tries after a transient error (seconds).
MAX_RETRY_PAUSE = 30.0
#: Seconds between two looks for an amphora's heartbeat.
HEARTBEAT_POLL = 2.0

WHY = ('stop every health manager at the old addresses first, and run the '
       'new ones so that they cannot fail amphorae over during the push '
       '(set their [health_manager] failover_threshold: amphorae not heard '
       'from are then marked FAILOVER_STOPPED, and ALLOCATED again when '
       'their heartbeats arrive; or a heartbeat_timeout longer than the '
       'job): an amphora sends its heartbeats to the old addresses until it '
       'is reconfigured, and a running health manager fails over each '
       'amphora it has not heard from for heartbeat_timeout seconds '
       '(default 60) -- during an adoption, every amphora at once')
REFUSAL = (f'{NAME}: refusing to start without --param '
           f'health_managers_stopped=true (stop the health managers at the '
           f'old addresses and guard the new ones first, or amphorae not '
           f'heard from for heartbeat_timeout seconds are failed over en '
           f'masse)')
NO_DATABASE = (f'{NAME}: verifying heartbeats (heartbeat_timeout) needs read '
               f'access to Octavia\'s database: set [octavia_database] '
               f'connection on the conductors, or pass --param '
               f'heartbeat_timeout=0 to push without verifying')
CONFIRMED = ('Octavia accepted the request (HTTP 202)')
NOT_CONFIRMED = ('that the amphora agent applied the new configuration '
                 '(heartbeat_timeout=0: its heartbeats were not checked)')


def _verifying(params):
    return bool(params.get('heartbeat_timeout'))


def preflight(context, params, dry_run):
    """Refuse a real run that lacks the confirmation, or that would
    verify heartbeats without access to Octavia's database (a dry run
    is allowed: its plan explains both)."""
    if dry_run:
        return
    if not params.get('health_managers_stopped'):
        raise exceptions.InvalidParameter(REFUSAL)
    conf = getattr(context, 'conf', None)
    if _verifying(params) and conf is not None and \
            amphora_health.connection(conf) is None:
        raise exceptions.InvalidParameter(NO_DATABASE)


def amphora_skip_reason(amp, lb):
    """Why an amphora must not be reconfigured now, or None."""
    if lb is None:
        return 'its load balancer no longer exists'
    status = lb.get('provisioning_status')
    if status != inventory.ACTIVE:
        return f'load balancer is {status}'
    if amp.get('status') not in CONFIGURABLE:
        return f'amphora is {amp.get("status")}'
    return None


def select(inv, zone=None):
    """Split an inventory into (targets, skipped) amphora targets, in
    load-balancer creation order, MASTER before BACKUP."""
    targets, skipped = [], []
    for lb_id in inv.missing:
        skipped.append(workflow.Target(lb_id, ACTION, {'lb': lb_id},
                                   'load balancer not found'))
    order = sorted(inv.lbs, key=lambda lb: (lb.get('created_at') or '',
                                            lb['id']))
    for lb in order:
        amps = inv.amphorae_of(lb['id'])
        if not inventory.in_zone(lb, amps, zone):
            continue
        provider = lb.get('provider')
        if provider and provider not in inventory.AMPHORA_PROVIDERS:
            skipped.append(workflow.Target(lb['id'], ACTION, {'lb': lb['id']},
                                       f'provider {provider} has no '
                                       f'amphorae'))
            continue
        live = inventory.live(amps)
        if not live:
            skipped.append(workflow.Target(lb['id'], ACTION, {'lb': lb['id']},
                                       'load balancer has no amphorae'))
            continue
        for amp in live:
            details = amphora_plan.amphora_details(amp, lb, amps)
            details['lb_network_ip'] = amp.get('lb_network_ip')
            details['compute_id'] = amp.get('compute_id')
            details.pop('outage', None)
            reason = amphora_skip_reason(amp, lb)
            item = workflow.Target(amp['id'], ACTION, details, reason)
            (skipped if reason else targets).append(item)
    return targets, skipped


def plan_notes(params, targets, conf=None):
    notes = [WHY]
    if params.get('health_managers_stopped'):
        notes.append('confirmed: health_managers_stopped=true')
    else:
        notes.append('NOT CONFIRMED: submitting this job is refused until '
                     '--param health_managers_stopped=true')
    timeout = params.get('heartbeat_timeout')
    if timeout:
        notes.append(f'{len(targets)} amphora(e) get PUT /v2/octavia/'
                     f'amphorae/{{id}}/config; after each push the job waits '
                     f'up to {timeout:g} s for Octavia to record a heartbeat '
                     f'from that amphora (amphora_health in its database), '
                     f'which only a running -- new -- health manager can '
                     f'receive; an amphora whose heartbeats do not move '
                     f'FAILS; heartbeat_timeout=0 pushes without verifying')
        if conf is not None and amphora_health.connection(conf) is None:
            notes.append('NOT READY: [octavia_database] connection is not '
                         'set, so the heartbeats cannot be read: submitting '
                         'is refused until it is (or heartbeat_timeout=0)')
    else:
        notes.append(f'{len(targets)} amphora(e) get PUT /v2/octavia/'
                     f'amphorae/{{id}}/config; Octavia answers 202 and '
                     f'reports no result, and heartbeat_timeout=0: the '
                     f'report records what it accepted, not what the agents '
                     f'applied')
    notes.append('amphorae not attached to a load balancer (spares) are '
                 'not included')
    notes.append('start the health managers again once the job has '
                 'succeeded')
    return notes


def plan(context, params):
    """The amphorae to reconfigure, in order, and the skipped ones.

    :raises InvalidParameter: the job was posted without the
        confirmation, or verifies heartbeats on a conductor without
        access to Octavia's database (then nothing is touched).
    """
    if context.job_id is not None:
        if not params.get('health_managers_stopped'):
            raise exceptions.InvalidParameter(REFUSAL)
        if _verifying(params) and \
                amphora_health.connection(context.conf) is None:
            raise exceptions.InvalidParameter(NO_DATABASE)
    cloud = context.cloud()
    inv = inventory.load(cloud, params.get('loadbalancers'),
                         params.get('project'))
    targets, skipped = select(inv, params.get('availability_zone'))
    notes = plan_notes(params, targets, context.conf)
    notes += amphora_health.image_notes(cloud, targets)
    return workflow.Plan(targets=targets, skipped=skipped, notes=notes)


WORKFLOW = workflow.Workflow(
    name=NAME,
    description='Push the current agent configuration (new health-manager '
    'addresses) to every amphora during an adoption; needs '
    'health_managers_stopped=true.',
    params=(
        workflow.Param('health_managers_stopped', 'bool',
                       'confirm that every health manager is stopped '
                       '(required to submit; see the dry run)', default=False),
        workflow.Param('retries', 'int', 'tries again after a transient error '
                       '(5xx, timeout) before an amphora is FAILED', default=3,
                       min=0, max=20),
        workflow.Param('heartbeat_timeout', 'float', 'seconds to wait after '
                       'each push for Octavia to record a heartbeat from the '
                       'amphora (needs [octavia_database] connection; 0: do '
                       'not verify)', default=60.0, min=0, max=3600),
    ) + shared.FILTER_PARAMS + tuple(
        p for p in shared.COMMON_PARAMS if p.name != 'target_timeout'),
    factory='octavia_workflows.flows.reconfigure_amphorae:'
    'reconfigure_amphorae_flow_v2',
    earlier_factories=('octavia_workflows.flows.reconfigure_amphorae:'
                       'reconfigure_amphorae_flow',),
    plan=plan,
    engine='parallel',
    preflight=preflight,
    lanes=shared.lanes,
    run_state=runstate.for_job,
)

#: The steps and flow factories, in :mod:`.flow` (see
#: :func:`octavia_workflows.workflow.flow_names`).
__getattr__ = workflow.flow_names(__name__)
