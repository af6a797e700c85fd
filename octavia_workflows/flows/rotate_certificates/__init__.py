"""``rotate-certificates``: replace amphorae whose certificate expires.

Octavia's "Rotating Cryptographic Certificates" procedure: fail over the
amphorae whose ``cert_expiration`` falls within ``within_days`` days, or
every amphora (``all=true``) after a change of the CA, narrowed by
``loadbalancers``, ``project`` and ``availability_zone``.  The action is
an amphora failover (the new amphora gets a new certificate); only
amphorae of ACTIVE load balancers are touched, one load balancer's
amphorae one after the other.
"""

import datetime

from octavia_workflows import exceptions, workflow
from octavia_workflows.machinery import (
    amphora_plan,
    health,
    inventory,
    runstate,
)
from octavia_workflows.machinery import params as shared

NAME = 'rotate-certificates'


def _check(params):
    if params.get('all') and params.get('within_days') is not None:
        raise exceptions.InvalidParameter(
            f'{NAME}: give only one of within_days, all=true')
    if not params.get('all') and params.get('within_days') is None:
        raise exceptions.InvalidParameter(
            f'{NAME}: give within_days=N, or all=true after a CA change')


def expiry_reason(amp, expires_before):
    """Why an amphora's certificate does NOT need rotating, or None.

    ``expires_before``: ISO timestamp, or None for every amphora.  An
    amphora without a known expiry is rotated.
    """
    cutoff = inventory.parse_time(expires_before)
    if cutoff is None:
        return None
    expires = inventory.parse_time(amp.get('cert_expiration'))
    if expires is None or expires < cutoff:
        return None
    return f'certificate valid until {amp.get("cert_expiration")}'


def _cutoff(params):
    if params.get('within_days') is None:
        return None
    moment = inventory.utcnow() + datetime.timedelta(
        days=params['within_days'])
    return moment.replace(microsecond=0).isoformat()


def plan(context, params):
    _check(params)
    cloud = context.cloud()
    expires_before = _cutoff(params)
    inv = inventory.load(cloud, params.get('loadbalancers'),
                         params.get('project'))
    lbs = {lb['id']: lb for lb in inv.lbs}
    amps = [a for lb_id in lbs for a in inventory.live(
        inv.amphorae_of(lb_id))]
    targets, skipped = amphora_plan.select(
        amps, lbs, inv.amphorae, zone=params.get('availability_zone'),
        wanted=lambda amp: expiry_reason(amp, expires_before))
    for lb_id in inv.missing:
        skipped.append(workflow.Target(lb_id, amphora_plan.ACTION,
                                   {'lb': lb_id}, 'load balancer not found'))
    for target in targets + skipped:
        if expires_before:
            target.details['expires_before'] = expires_before
    notes = amphora_plan.plan_notes(targets)
    if expires_before:
        notes.append(f'certificates expiring before {expires_before}')
    return workflow.Plan(targets=targets, skipped=skipped, notes=notes)


WORKFLOW = workflow.Workflow(
    name=NAME,
    description='Fail over amphorae whose certificate expires within N '
    'days, or all of them after a CA change.',
    params=(
        workflow.Param('within_days', 'float', 'rotate certificates expiring '
                       'within this many days', min=0),
        workflow.Param('all', 'bool', 'rotate every amphora (after a CA '
                       'change)', default=False),
    ) + shared.FILTER_PARAMS + shared.COMMON_PARAMS + health.PARAMS,
    factory='octavia_workflows.flows.rotate_certificates:'
    'rotate_certificates_flow_v3',
    earlier_factories=(
        'octavia_workflows.flows.rotate_certificates:'
        'rotate_certificates_flow',
        'octavia_workflows.flows.rotate_certificates:'
        'rotate_certificates_flow_v2'),
    plan=plan,
    engine='parallel',
    check=_check,
    lanes=shared.lanes,
    run_state=runstate.for_job,
)

#: The steps and flow factories, in :mod:`.flow` (see
#: :func:`octavia_workflows.workflow.flow_names`).
__getattr__ = workflow.flow_names(__name__)
