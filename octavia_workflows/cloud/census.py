"""The fleet census: what ``octavia-workflow audit`` prints and the
conductor exports as ``octavia_workflows_fleet_*`` gauges.

:func:`fetch` reads the cloud (two paginated listings side by side, one
image lookup per distinct image in use and one tag lookup); it only ever
reads.  :func:`census` is a pure function over those lists of the APIs'
own dicts (load balancers, amphorae, images), so every figure is unit
tested without a cloud.  :func:`take` is both.

What happens on failure: :func:`fetch` raises the cloud layer's
:class:`~octavia_workflows.exceptions.CloudError` subclasses unchanged
(an unreachable cloud, a refused request), and
:class:`~octavia_workflows.exceptions.InvalidParameter` when an image
tag the operator named explicitly is carried by no active image.  An
image in use that the image service does not know (deleted) is no
error: it is reported as unknown, and its amphorae as not on the newest
image.  :func:`census` never raises for odd data: a missing or
unparsable timestamp lands in an ``unknown`` bucket.
"""

import collections
import datetime

from octavia_workflows import exceptions

#: Amphora statuses that are gone or going away (not counted as live).
GONE = ('DELETED', 'PENDING_DELETE')
ERROR = 'ERROR'
FAILOVER_STOPPED = 'FAILOVER_STOPPED'
UNKNOWN = 'unknown'
SINGLE = 'SINGLE'
ACTIVE_STANDBY = 'ACTIVE_STANDBY'
#: Topology of a load balancer without live amphorae.
NO_AMPHORAE = 'NONE'

#: Certificate expiry buckets: (name, expires within this many days).
CERT_BUCKETS = (('expired', 0), ('< 7 days', 7), ('< 30 days', 30),
                ('later', None))
#: Rotate-certificates is suggested for certificates expiring within:
CERT_WARN_DAYS = 30
#: Amphora age buckets: (name, younger than this many days).
AGE_BUCKETS = (('< 1 day', 1), ('< 7 days', 7), ('< 30 days', 30),
               ('< 90 days', 90), ('< 1 year', 365), ('older', None))

SUBMIT = 'octavia-workflow submit'


def parse_time(value):
    """An API timestamp as a naive UTC datetime (None if unparsable)."""
    if not value:
        return None
    if isinstance(value, datetime.datetime):
        parsed = value
    else:
        text = str(value).strip().replace('Z', '+00:00')
        try:
            parsed = datetime.datetime.fromisoformat(text)
        except ValueError:
            return None
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(datetime.timezone.utc).replace(
            tzinfo=None)
    return parsed


def utcnow():
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


def _iso(moment):
    return None if moment is None else moment.replace(
        microsecond=0).isoformat() + 'Z'


def live(amphorae):
    """Amphorae that exist (not DELETED / PENDING_DELETE)."""
    return [a for a in amphorae if a.get('status') not in GONE]


def topology(amphorae):
    """``SINGLE``, ``ACTIVE_STANDBY`` or ``NONE`` (no live amphorae)."""
    roles = {a.get('role') for a in live(amphorae)}
    if roles & {'MASTER', 'BACKUP'}:
        return ACTIVE_STANDBY
    return SINGLE if roles else NO_AMPHORAE


def _bucket(days, buckets):
    for name, limit in buckets:
        if limit is None or days < limit:
            return name
    return buckets[-1][0]


def _distribution(values, buckets):
    """``[{'bucket', 'count'}]`` in bucket order (plus ``unknown``) for
    ``values`` in days (None: unknown)."""
    counts = collections.Counter(
        UNKNOWN if days is None else _bucket(days, buckets)
        for days in values)
    rows = [{'bucket': name, 'count': counts.get(name, 0)}
            for name, _ in buckets]
    rows.append({'bucket': UNKNOWN, 'count': counts.get(UNKNOWN, 0)})
    return rows


def _days(later, earlier):
    if later is None or earlier is None:
        return None
    return (later - earlier).total_seconds() / 86400.0


def _sorted_counts(counter):
    return dict(sorted(counter.items()))


def _load_balancers(lbs, by_lb):
    pairs = collections.Counter(
        (lb.get('provisioning_status') or UNKNOWN,
         lb.get('operating_status') or UNKNOWN) for lb in lbs)
    return {
        'total': len(lbs),
        'by_provisioning_status': _sorted_counts(collections.Counter(
            p for p, _ in pairs.elements())),
        'by_operating_status': _sorted_counts(collections.Counter(
            o for _, o in pairs.elements())),
        'by_status': [{'provisioning_status': p, 'operating_status': o,
                       'count': n} for (p, o), n in sorted(pairs.items())],
        'by_topology': _sorted_counts(collections.Counter(
            topology(by_lb.get(lb['id'], [])) for lb in lbs)),
    }


def _images(alive, images, tagged, tag, now):
    """Amphorae by image, and which are not on the newest tagged one."""
    newest = tagged[0] if tagged else None
    newest_id = newest['id'] if newest else None
    per_image = collections.Counter(a.get('image_id') or '' for a in alive)
    lbs_per_image = collections.defaultdict(set)
    stale_amps, stale_lbs = 0, set()
    for amp in alive:
        image_id = amp.get('image_id') or ''
        if amp.get('loadbalancer_id'):
            lbs_per_image[image_id].add(amp['loadbalancer_id'])
        if newest_id is not None and image_id != newest_id:
            stale_amps += 1
            if amp.get('loadbalancer_id'):
                stale_lbs.add(amp['loadbalancer_id'])
    rows = []
    for image_id, count in per_image.items():
        image = images.get(image_id) if image_id else None
        created = parse_time(image.get('created_at')) if image else None
        age = _days(now, created)
        rows.append({
            'id': image_id or None,
            'name': image.get('name') if image else None,
            'tags': sorted(image.get('tags') or []) if image else [],
            'created_at': _iso(created),
            'age_days': None if age is None else round(age, 1),
            'known': image is not None,
            'newest': bool(newest_id) and image_id == newest_id,
            'amphorae': count,
            'load_balancers': len(lbs_per_image.get(image_id, ())),
        })
    rows.sort(key=lambda r: (-r['amphorae'], r['id'] or ''))
    return {
        'tag': tag,
        'newest': None if newest is None else {
            'id': newest['id'], 'name': newest.get('name'),
            'created_at': _iso(parse_time(newest.get('created_at')))},
        'by_image': rows,
        'amphorae_not_newest': stale_amps if newest else None,
        'load_balancers_not_newest': len(stale_lbs) if newest else None,
    }


def _certificates(alive, now):
    expiries = [(parse_time(a.get('cert_expiration')), a['id'])
                for a in alive]
    days = [_days(when, now) for when, _ in expiries]
    known = sorted((w, i) for w, i in expiries if w is not None)
    soonest = known[0] if known else (None, None)
    return {
        'by_expiry': _distribution(days, CERT_BUCKETS),
        'soonest': _iso(soonest[0]),
        'soonest_amphora': soonest[1],
        'soonest_seconds': (None if soonest[0] is None else
                            round((soonest[0] - now).total_seconds())),
        'within_warn_days': sum(1 for d in days
                                if d is not None and d < CERT_WARN_DAYS),
        'expired': sum(1 for d in days if d is not None and d < 0),
    }


def _stuck(lbs, now, older_than_minutes):
    pending = [lb for lb in lbs
               if str(lb.get('provisioning_status') or '').startswith(
                   'PENDING_')]
    stuck = []
    for lb in pending:
        since = parse_time(lb.get('updated_at') or lb.get('created_at'))
        age = None if since is None else (now - since).total_seconds() / 60
        if age is None or age >= older_than_minutes:
            stuck.append({'id': lb['id'], 'name': lb.get('name') or '',
                          'provisioning_status': lb['provisioning_status'],
                          'updated_at': _iso(since),
                          'age_minutes': None if age is None else
                          round(age, 1)})
    stuck.sort(key=lambda s: (-(s['age_minutes'] or 0), s['id']))
    return {'older_than_minutes': older_than_minutes,
            'pending': len(pending), 'count': len(stuck),
            'load_balancers': stuck}


def _findings(result, tag):
    """What to do about it: each finding names the runbook command."""
    found = []
    images = result['images']
    if images['load_balancers_not_newest']:
        newest = images['newest']
        found.append({
            'problem': 'stale-image',
            'count': images['load_balancers_not_newest'],
            'what': f'{images["load_balancers_not_newest"]} load balancers '
                    f'({images["amphorae_not_newest"]} amphorae) not on '
                    f'{newest["name"] or newest["id"]}, the newest image '
                    f'tagged {tag}',
            'command': f'{SUBMIT} rotate-images --param image_tag={tag}'})
    certs = result['certificates']
    if certs['within_warn_days']:
        found.append({
            'problem': 'certificate-expiry',
            'count': certs['within_warn_days'],
            'what': f'{certs["within_warn_days"]} amphora certificates '
                    f'expire within {CERT_WARN_DAYS} days '
                    f'({certs["expired"]} already expired)',
            'command': f'{SUBMIT} rotate-certificates --param '
                       f'within_days={CERT_WARN_DAYS}'})
    stuck = result['stuck']
    if stuck['count']:
        minutes = plain_number(stuck['older_than_minutes'])
        found.append({
            'problem': 'stuck-load-balancers',
            'count': stuck['count'],
            'what': f'{stuck["count"]} load balancers PENDING_* for '
                    f'{minutes} minutes or more',
            'command': f'{SUBMIT} repair-stuck --param '
                       f'older_than_minutes={minutes} --param apply=true'})
    for status, key in ((ERROR, 'error_amphorae'),
                        (FAILOVER_STOPPED, 'failover_stopped_amphorae')):
        if result[key]:
            found.append({
                'problem': f'amphorae-{status.lower().replace("_", "-")}',
                'count': len(result[key]),
                'what': f'{len(result[key])} amphorae in {status}',
                'command': f'{SUBMIT} failover-amphorae --param '
                           f'status={status}'})
    return found


def plain_number(value):
    return int(value) if float(value).is_integer() else value


def census(lbs, amphorae, images, tagged, tag, now=None,
           older_than_minutes=60):
    """The census of a fleet (JSON-simple dict).

    :param lbs: load balancers (API dicts).
    :param amphorae: amphorae (API dicts, any status).
    :param images: ``{image id: image dict}`` of the images the
        amphorae run, as far as the image service knows them.
    :param tagged: active images carrying ``tag``, newest first.
    :param tag: the image tag Octavia boots new amphorae from.
    :param now: naive UTC datetime the ages are measured from.
    :param older_than_minutes: a PENDING_* load balancer not updated for
        this long counts as stuck.
    """
    now = now or utcnow()
    by_lb = collections.defaultdict(list)
    for amp in amphorae:
        if amp.get('loadbalancer_id'):
            by_lb[amp['loadbalancer_id']].append(amp)
    alive = live(amphorae)
    ages = [_days(now, parse_time(a.get('created_at'))) for a in alive]
    result = {
        'taken_at': _iso(now),
        'load_balancers': _load_balancers(lbs, by_lb),
        'amphorae': {
            'total': len(amphorae),
            'live': len(alive),
            'by_status': _sorted_counts(collections.Counter(
                a.get('status') or UNKNOWN for a in amphorae)),
            'by_age': _distribution(ages, AGE_BUCKETS),
        },
        'images': _images(alive, images, tagged, tag, now),
        'certificates': _certificates(alive, now),
        'stuck': _stuck(lbs, now, older_than_minutes),
        'error_amphorae': sorted(a['id'] for a in amphorae
                                 if a.get('status') == ERROR),
        'failover_stopped_amphorae': sorted(
            a['id'] for a in amphorae if a.get('status') == FAILOVER_STOPPED),
    }
    result['findings'] = _findings(result, tag)
    result['notes'] = []
    if not tagged:
        result['notes'].append(
            f'no active image carries the tag {tag!r}: amphorae are not '
            f'compared with a newest image (pass --image-tag)')
    unknown = [r for r in result['images']['by_image'] if not r['known']]
    if unknown:
        result['notes'].append(
            f'{sum(r["amphorae"] for r in unknown)} amphorae run an image '
            f'the image service does not know (deleted, or not recorded)')
    return result


def fetch(cloud, tag, explicit=False):
    """Read what :func:`census` needs: ``(lbs, amphorae, images,
    tagged)`` (see there).  Only reads.

    :param explicit: the operator named ``tag``; no active image
        carrying it is then bad input (InvalidParameter).
    """
    lbs, amphorae = cloud.read_both(cloud.list_load_balancers,
                                    cloud.list_amphorae)
    images = {}
    for image_id in sorted({a.get('image_id') for a in live(amphorae)
                            if a.get('image_id')}):
        try:
            images[image_id] = cloud.get_image(image_id)
        except exceptions.CloudNotFound:
            continue
    tagged = cloud.find_images_by_tag(tag) if tag else []
    if explicit and not tagged:
        raise exceptions.InvalidParameter(
            f'--image-tag: no active image is tagged {tag!r}')
    return lbs, amphorae, images, tagged


def take(cloud, tag, explicit=False, now=None, older_than_minutes=60):
    """:func:`fetch` then :func:`census`."""
    lbs, amphorae, images, tagged = fetch(cloud, tag, explicit)
    return census(lbs, amphorae, images, tagged, tag, now=now or utcnow(),
                  older_than_minutes=older_than_minutes)
