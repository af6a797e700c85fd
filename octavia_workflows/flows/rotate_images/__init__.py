"""``rotate-images``: move load balancers onto the current amphora image.

Octavia's "Rotating the Amphora Images" procedure: fail over every load
balancer (or a selection) whose amphorae are not on the current image,
at a paced rate, and wait for ACTIVE after each.

Which load balancers are stale, by exactly one of:

- ``image_id``: amphorae not booted from this image;
- ``image_tag``: amphorae not on the newest active image carrying this
  tag in the image service (the image Octavia boots from
  ``amp_image_tag``), resolved once when the job starts;
- ``older_than_days``: amphorae created more than N days ago.

narrowed by ``loadbalancers``, ``project``, ``availability_zone`` and
``flavor``.  The action is a load-balancer failover (Octavia replaces
every amphora, both of an ACTIVE_STANDBY pair); afterwards the target is
verified: no amphora from before is still in service and, with an image
criterion, every new amphora runs the wanted image.  Standalone (SINGLE)
load balancers have a short outage during their failover.
"""

import datetime

from octavia_workflows import exceptions, workflow
from octavia_workflows.machinery import health, inventory, runstate
from octavia_workflows.machinery import params as shared

NAME = 'rotate-images'
ACTION = 'lb-failover'
CRITERIA = ('image_id', 'image_tag', 'older_than_days')


def _check(params):
    shared.exactly_one(params, CRITERIA, NAME)


def stale_reason(amphorae, want_image=None, created_before=None):
    """Why a load balancer does NOT need rotating, or None if it does.

    ``created_before``: ISO timestamp; amphorae created before it are
    old.  An amphora whose image is unknown is treated as stale.
    """
    amps = inventory.live(amphorae)
    if want_image:
        if all(a.get('image_id') == want_image for a in amps):
            return f'already on image {want_image}'
        return None
    cutoff = inventory.parse_time(created_before)
    if cutoff is not None:
        for amp in amps:
            created = inventory.parse_time(amp.get('created_at'))
            if created is None or created < cutoff:
                return None
        return f'amphorae created after {created_before}'
    return None


def _wanted_image(cloud, params):
    if params.get('image_tag'):
        tag = params['image_tag']
        found = cloud.find_images_by_tag(tag)
        if not found:
            raise exceptions.InvalidParameter(
                f'parameter image_tag: no active image is tagged {tag!r}')
        return found[0]['id']
    if params.get('image_id'):
        try:
            cloud.get_image(params['image_id'])
        except exceptions.CloudNotFound:
            raise exceptions.InvalidParameter(
                f'parameter image_id: image {params["image_id"]} does not '
                f'exist') from None
        return params['image_id']
    return None


def select(inv, want_image=None, created_before=None, zone=None):
    """Split an inventory into (targets, skipped) :class:`base.Target`s."""
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
        details = inventory.summary(lb, amps)
        if want_image:
            details['want_image'] = want_image
        if created_before:
            details['created_before'] = created_before
        reason = (inventory.lb_skip_reason(lb, amps)
                  or stale_reason(amps, want_image, created_before))
        if reason:
            skipped.append(workflow.Target(lb['id'], ACTION, details, reason))
        else:
            targets.append(workflow.Target(lb['id'], ACTION, details))
    return targets, skipped


def plan(context, params):
    """The load balancers to fail over, in order, and the skipped ones."""
    _check(params)
    cloud = context.cloud()
    want = _wanted_image(cloud, params)
    created_before = None
    if params.get('older_than_days') is not None:
        cutoff = inventory.utcnow() - datetime.timedelta(
            days=params['older_than_days'])
        created_before = cutoff.replace(microsecond=0).isoformat()
    flavor_id = inventory.resolve_flavor(cloud, params.get('flavor'))
    inv = inventory.load(cloud, params.get('loadbalancers'),
                         params.get('project'), flavor_id)
    targets, skipped = select(inv, want, created_before,
                              params.get('availability_zone'))
    notes = []
    if want:
        notes.append(f'current image: {want}')
    single = sum(1 for t in targets
                 if t.details.get('topology') == inventory.SINGLE)
    if single:
        notes.append(f'{single} standalone (SINGLE) load balancer(s) have '
                     f'a short outage during their failover')
    unhealthy = health.plan_note({t.target: t.details.get(
        'operating_status') for t in targets})
    if unhealthy:
        notes.append(unhealthy)
    return workflow.Plan(targets=targets, skipped=skipped, notes=notes)


WORKFLOW = workflow.Workflow(
    name=NAME,
    description='Fail over load balancers whose amphorae are not on the '
    'current image (paced, circuit-broken, exactly once).',
    params=(
        workflow.Param('image_id', 'str', 'the current amphora image id'),
        workflow.Param('image_tag', 'str', 'tag of the current amphora '
                       'image in the image service'),
        workflow.Param('older_than_days', 'float', 'rotate amphorae '
                       'created more than N days ago', min=0),
        workflow.Param('flavor', 'str', 'only load balancers of this '
                       'Octavia flavor (id or name)'),
    ) + shared.FILTER_PARAMS + shared.COMMON_PARAMS + health.PARAMS,
    factory='octavia_workflows.flows.rotate_images:rotate_images_flow_v3',
    earlier_factories=(
        'octavia_workflows.flows.rotate_images:rotate_images_flow',
        'octavia_workflows.flows.rotate_images:rotate_images_flow_v2'),
    plan=plan,
    engine='parallel',
    check=_check,
    lanes=shared.lanes,
    run_state=runstate.for_job,
)

#: The steps and flow factories, in :mod:`.flow` (see
#: :func:`octavia_workflows.workflow.flow_names`).
__getattr__ = workflow.flow_names(__name__)
