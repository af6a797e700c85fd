"""What the failover runbooks plan over: load balancers and their amphorae.

:func:`load` reads the cloud once (two paginated listings, or a few
lookups when the operator named load balancers); everything else here is
pure functions over the API's dicts, so planning decisions are unit
tested without a cloud.
"""

import concurrent.futures
import dataclasses

from octavia_workflows import exceptions
from octavia_workflows.cloud import census

ACTIVE = 'ACTIVE'
ERROR = 'ERROR'
#: Amphora statuses that are gone or going away.
GONE = ('DELETED', 'PENDING_DELETE')
#: Providers whose load balancers run on amphorae.
AMPHORA_PROVIDERS = ('amphora', 'amphorav2', 'octavia')
SINGLE = 'SINGLE'
ACTIVE_STANDBY = 'ACTIVE_STANDBY'
SHORT_OUTAGE = 'short outage (SINGLE)'


@dataclasses.dataclass
class Inventory:
    """Load balancers in listing order, amphorae grouped by load
    balancer, and the ids the operator asked for that do not exist."""

    lbs: list
    amphorae: dict
    missing: list = dataclasses.field(default_factory=list)

    def amphorae_of(self, lb_id):
        return self.amphorae.get(lb_id, [])


#: Up to this many ``loadbalancers`` ids are fetched one by one; more are
#: picked out of the full listings.
FETCH_EACH_UP_TO = 20


def load(cloud, loadbalancers=None, project=None, flavor_id=None,
         amphora_status=None):
    """Read the load balancers (optionally only ``loadbalancers`` ids, a
    ``project``, a flavor) and their amphorae."""
    filters = {'project_id': project, 'flavor_id': flavor_id}
    missing = []
    if loadbalancers and len(set(loadbalancers)) > FETCH_EACH_UP_TO:
        # Two paged listings beat hundreds of single GETs; the result is
        # the same as fetching each id (below).
        full = load(cloud)
        by_id = {lb['id']: lb for lb in full.lbs}
        lbs = []
        for lb_id in dict.fromkeys(loadbalancers):
            lb = by_id.get(lb_id)
            if lb is None:
                missing.append(lb_id)
            elif all(lb.get(k) == v for k, v in filters.items()
                     if v is not None):
                lbs.append(lb)
        return Inventory(lbs, {lb['id']: full.amphorae_of(lb['id'])
                               for lb in lbs}, missing)
    if loadbalancers:
        lbs = []
        for lb_id in dict.fromkeys(loadbalancers):
            try:
                lb = cloud.get_load_balancer(lb_id)
            except exceptions.CloudNotFound:
                missing.append(lb_id)
                continue
            if all(lb.get(k) == v for k, v in filters.items()
                   if v is not None):
                lbs.append(lb)
        amps = {}
        for lb in lbs:
            amps[lb['id']] = cloud.list_amphorae(loadbalancer_id=lb['id'])
        return Inventory(lbs, amps, missing)
    # The two listings are independent: read them side by side (on a large
    # fleet each is seconds of API paging).
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        lbs_future = pool.submit(cloud.list_load_balancers, **filters)
        amps_future = pool.submit(cloud.list_amphorae,
                                  status=amphora_status)
        lbs = lbs_future.result()
        all_amps = amps_future.result()
    wanted = {lb['id'] for lb in lbs}
    amps = {}
    for amp in all_amps:
        lb_id = amp.get('loadbalancer_id')
        if lb_id in wanted:
            amps.setdefault(lb_id, []).append(amp)
    return Inventory(lbs, amps, missing)


def live(amphorae):
    """Amphorae that exist (not DELETED / PENDING_DELETE), by role."""
    order = {'MASTER': 0, 'BACKUP': 1}
    found = [a for a in amphorae if a.get('status') not in GONE]
    return sorted(found, key=lambda a: (order.get(a.get('role'), 2),
                                        a.get('id')))


def topology(amphorae):
    """``SINGLE``, ``ACTIVE_STANDBY`` or None (no amphorae)."""
    roles = {a.get('role') for a in live(amphorae)}
    if roles & {'MASTER', 'BACKUP'}:
        return ACTIVE_STANDBY
    if roles:
        return SINGLE
    return None


def zone(lb, amphorae):
    """The availability zone of a load balancer: Octavia's own, else the
    compute zone its amphorae run in."""
    if lb.get('availability_zone'):
        return lb['availability_zone']
    zones = sorted({a.get('cached_zone') for a in live(amphorae)
                    if a.get('cached_zone')})
    return zones[0] if zones else None


def images(amphorae):
    """Sorted distinct image ids of the live amphorae (None if unknown)."""
    return sorted({a.get('image_id') or '' for a in live(amphorae)}) or []


def snapshot(amphorae):
    """What the report records before/after: amphora and image ids."""
    amps = live(amphorae)
    return {'amphorae': [a['id'] for a in amps],
            'images': sorted({a.get('image_id') for a in amps
                              if a.get('image_id')})}


def summary(lb, amphorae):
    """Plan details of a load balancer (JSON-simple)."""
    topo = topology(amphorae)
    details = {
        'lb': lb['id'],
        'name': lb.get('name') or '',
        'project': lb.get('project_id'),
        'az': zone(lb, amphorae),
        'topology': topo,
        'operating_status': lb.get('operating_status'),
        'image': ','.join(i for i in images(amphorae) if i) or None,
        'amphorae': [a['id'] for a in live(amphorae)],
    }
    if topo == SINGLE:
        details['outage'] = SHORT_OUTAGE
    return details


def lb_skip_reason(lb, amphorae, allow_error=False):
    """Why a load balancer must not be acted on now, or None."""
    status = lb.get('provisioning_status')
    if status != ACTIVE and not (allow_error and status == ERROR):
        return f'load balancer is {status}'
    provider = lb.get('provider')
    if provider and provider not in AMPHORA_PROVIDERS:
        return f'provider {provider} has no amphorae'
    if not live(amphorae):
        return 'load balancer has no amphorae'
    return None


def in_zone(lb, amphorae, wanted):
    """True if the load balancer or one of its amphorae is in ``wanted``."""
    if not wanted:
        return True
    if lb.get('availability_zone') == wanted:
        return True
    return any(a.get('cached_zone') == wanted for a in live(amphorae))


#: API timestamps as naive UTC datetimes, and now: the census's own
#: (one parser for the runbooks and the audit).
parse_time = census.parse_time
utcnow = census.utcnow


def resolve_flavor(cloud, flavor):
    """A flavor id from an id or a name; InvalidParameter if unknown."""
    if not flavor:
        return None
    flavors = cloud.list_flavors()
    for item in flavors:
        if flavor in (item.get('id'), item.get('name')):
            return item['id']
    names = ', '.join(sorted(f.get('name') or f['id'] for f in flavors))
    raise exceptions.InvalidParameter(
        f'parameter flavor: no Octavia flavor {flavor!r} (known: '
        f'{names or "none"})')
