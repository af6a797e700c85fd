"""Planning amphora targets: what several runbooks share about choosing
amphorae to fail over (pure functions over the API's dicts, and one
read of the cloud in :func:`gather`).

Used by ``failover-amphorae``, ``rotate-certificates``,
``evacuate-host`` and ``reconfigure-amphorae`` to plan, and by the
amphora steps (:mod:`.amphora`) to re-check a target before acting.  An
amphora target's plan details are its load balancer's summary plus the
amphora's own fields; its action is an amphora failover, or -- to repair
a load balancer in ERROR, which Octavia refuses to fail amphorae of -- a
load-balancer failover (:data:`LB_ACTION`).  Nothing here imports
TaskFlow: planning a job (and submitting one) does not load it.
"""

from octavia_workflows import exceptions, workflow
from octavia_workflows.machinery import health, inventory

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
