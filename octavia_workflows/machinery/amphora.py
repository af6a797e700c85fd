"""Amphora targets: what several runbooks share about failing one over.

Used by ``failover-amphorae``, ``rotate-certificates`` and
``evacuate-host`` (each with its own start step where it re-checks
more).  An amphora target's plan details are its load balancer's
summary plus the amphora's own fields; its action is an amphora
failover, or -- to repair a load balancer in ERROR, which Octavia
refuses to fail amphorae of -- a load-balancer failover
(:data:`LB_ACTION`).  Amphorae of one load balancer share a lane and
run one after the other.

What happens on failure: as for every paced step (:mod:`.steps`).
"""

from octavia_workflows import exceptions, states, workflow
from octavia_workflows.machinery import health, inventory, lanes, shape, steps

ACTION = 'amphora-failover'
LB_ACTION = 'lb-failover'


def amphora_details(amp, lb, lb_amphorae):
    """Plan details of an amphora target (its load balancer's summary
    plus the amphora's own fields)."""
    details = inventory.summary(lb, lb_amphorae) if lb else {
        'lb': None, 'project': None, 'az': amp.get('cached_zone'),
        'topology': None, 'image': amp.get('image_id')}
    details.update({
        'amphora': amp['id'],
        'role': amp.get('role'),
        'amphora_status': amp.get('status'),
        'image': amp.get('image_id'),
        'cert_expiration': amp.get('cert_expiration'),
    })
    if amp.get('cached_zone'):
        details['az'] = details.get('az') or amp['cached_zone']
    return details


def amphora_skip_reason(amp, lb, lb_amphorae, repair=False):
    """Why an amphora must not be failed over now, or None."""
    if amp.get('status') in inventory.GONE:
        return f'amphora is {amp["status"]} (already replaced)'
    if not amp.get('loadbalancer_id'):
        return 'amphora is not attached to a load balancer (spare)'
    if lb is None:
        return 'its load balancer no longer exists'
    return inventory.lb_skip_reason(lb, lb_amphorae, allow_error=repair)


def action_for(lb, repair):
    """Amphora failover, or load-balancer failover to repair an ERROR
    load balancer (Octavia refuses amphora failover unless ACTIVE)."""
    if repair and lb and lb.get('provisioning_status') == inventory.ERROR:
        return LB_ACTION
    return ACTION


def select(amphorae, lbs, lb_amphorae, repair=False, missing=(),
           project=None, zone=None, loadbalancers=None, wanted=None):
    """Split candidate amphorae into (targets, skipped).

    ``lbs``: {lb id: lb}; ``lb_amphorae``: {lb id: [amphorae]};
    ``wanted(amp)``: extra reason to skip (or None).
    """
    targets, skipped = [], []
    for amp_id in missing:
        skipped.append(workflow.Target(amp_id, ACTION, {'amphora': amp_id},
                                   'amphora not found'))
    ordered = sorted(amphorae, key=lambda a: (
        a.get('loadbalancer_id') or '', a.get('role') or '', a['id']))
    lb_order = {}
    for lb in lbs.values():
        lb_order[lb['id']] = (lb.get('created_at') or '', lb['id'])
    ordered.sort(key=lambda a: lb_order.get(a.get('loadbalancer_id'),
                                            ('', '')))
    for amp in ordered:
        lb = lbs.get(amp.get('loadbalancer_id'))
        siblings = lb_amphorae.get(amp.get('loadbalancer_id'), [])
        if lb is not None:
            if project and lb.get('project_id') != project:
                continue
            if loadbalancers and lb['id'] not in loadbalancers:
                continue
            if not inventory.in_zone(lb, siblings, zone):
                continue
        details = amphora_details(amp, lb, siblings)
        action = action_for(lb, repair)
        reason = amphora_skip_reason(amp, lb, siblings, repair)
        if reason is None and wanted is not None:
            reason = wanted(amp)
        if reason:
            skipped.append(workflow.Target(amp['id'], action, details, reason))
        else:
            targets.append(workflow.Target(amp['id'], action, details))
    return targets, skipped


def gather(cloud, amphorae):
    """Load balancers and their amphorae for a set of amphorae."""
    lbs, lb_amphorae = {}, {}
    for lb_id in dict.fromkeys(a.get('loadbalancer_id') for a in amphorae):
        if not lb_id:
            continue
        try:
            lbs[lb_id] = cloud.get_load_balancer(lb_id)
        except exceptions.CloudNotFound:
            continue
        lb_amphorae[lb_id] = cloud.list_amphorae(loadbalancer_id=lb_id)
    return lbs, lb_amphorae


def plan_notes(targets):
    notes = []
    single = len({t.details.get('lb') for t in targets
                  if t.details.get('topology') == inventory.SINGLE})
    if single:
        notes.append(f'{single} standalone (SINGLE) load balancer(s) have '
                     f'a short outage during their amphora failover')
    unhealthy = health.plan_note({t.details.get('lb'): t.details.get(
        'operating_status') for t in targets if t.details.get('lb')})
    if unhealthy:
        notes.append(unhealthy)
    repairs = sum(1 for t in targets if t.action == LB_ACTION)
    if repairs:
        notes.append(f'{repairs} amphora(e) belong to a load balancer in '
                     f'ERROR: that load balancer is failed over instead')
    return notes


# -- tasks -----------------------------------------------------------------


class StartAmphoraFailover(steps.StartTarget):
    """Re-check the amphora and its load balancer; record the ids."""

    repair = False

    def wanted(self, amp):
        """Extra reason to skip (rotate-certificates overrides)."""
        return None

    @staticmethod
    def read(cloud, details):
        try:
            amp = cloud.get_amphora(details['amphora'])
        except exceptions.CloudNotFound:
            return None
        lb, siblings = None, []
        if amp.get('loadbalancer_id'):
            try:
                lb, siblings = cloud.get_load_balancer_and_amphorae(
                    amp['loadbalancer_id'])
            except exceptions.CloudNotFound:
                lb = None
        return amp, lb, siblings

    def judge(self, context, data):
        if data is None:
            return 'amphora no longer exists (already replaced)', None
        amp, lb, siblings = data
        repair = bool(context.params.get('status') == 'ERROR')
        reason = (amphora_skip_reason(amp, lb, siblings, repair)
                  or self.wanted(amp))
        if reason:
            return reason, None
        before = inventory.snapshot(siblings)
        before['operating_status'] = lb.get('operating_status')
        before['amphora'] = self.details['amphora']
        before['via'] = action_for(lb, repair)
        return None, before


class FailoverAmphora(steps.ActOnTarget):
    """Fence, then fail over the amphora (or, to repair an ERROR load
    balancer, the load balancer) once."""

    def already_done(self, context, cloud, record):
        before = record.before or {}
        try:
            amp = cloud.get_amphora(self.details['amphora'])
        except exceptions.CloudNotFound:
            return True
        if amp.get('status') in inventory.GONE:
            return True
        lb = cloud.get_load_balancer(self.details['lb'])
        status = lb.get('provisioning_status')
        if status == inventory.ACTIVE:
            return False
        if status == inventory.ERROR:
            # Repairing an ERROR load balancer: still ERROR means our
            # call did not happen.  Otherwise it ended our failover.
            return before.get('via') != LB_ACTION
        return True

    def call(self, cloud, record):
        via = (record.before or {}).get('via')
        if via == LB_ACTION:
            cloud.failover_load_balancer(self.details['lb'])
        else:
            cloud.failover_amphora(self.details['amphora'])


class WaitForAmphora(steps.WaitForTarget):
    """Short check for the load balancer to settle; verify the amphora
    was replaced."""

    def verify(self, context, cloud, record, lb):
        status = lb.get('provisioning_status')
        if status == 'DELETED':
            return states.FAILED, 'the load balancer was deleted', None
        after = inventory.snapshot(cloud.list_amphorae(
            loadbalancer_id=lb['id']))
        if status != inventory.ACTIVE:
            return (states.FAILED,
                    f'the load balancer is {status} after the failover',
                    after)
        amp_id = self.details['amphora']
        if amp_id in after['amphorae']:
            return states.FAILED, f'amphora {amp_id} was not replaced', after
        return states.DONE, None, after


def amphora_flow(name, params, targets, start_cls=StartAmphoraFailover,
                 target_flow=shape.target_flow):
    """The flow of amphora targets: lanes (one load balancer's amphorae
    in one lane) of start / failover / wait per amphora, in the shape
    ``target_flow`` builds."""
    def make(item):
        target, details = item['target'], item['details']
        return target_flow(
            name, target, start_cls(name, target, details),
            FailoverAmphora(name, target, details),
            WaitForAmphora(name, target, details))

    return shape.build(name, params, targets, make)


def amphora_lanes(name, params, targets, start_cls=StartAmphoraFailover):
    """The flow of amphora targets as lanes of one atom each
    (:mod:`.lanes`; one load balancer's amphorae in one lane)."""
    return lanes.build(name, params, targets, lanes.steps_of(
        name, start_cls, FailoverAmphora, WaitForAmphora))
