"""Heartbeats as Octavia records them: ``amphora_health.last_update``.

Octavia's health manager writes one row per amphora in its database's
``amphora_health`` table (``amphora_id``, ``last_update``, ``busy``) for
every heartbeat it accepts; that is what its stale-amphora sweep and its
failover circuit breaker read.  The API shows nothing of it (an
amphora's ``/stats`` move only with traffic, an idle amphora's never),
so ``reconfigure-amphorae`` reads the table to see an amphora's
heartbeats arrive after a configuration push: one read-only ``SELECT``,
through ``[octavia_database] connection`` -- Octavia's own database URL,
a secret: it is never part of a message, a log line or a record.

Failures: an unreachable database raises
:class:`~octavia_workflows.exceptions.CloudUnreachable` (transient: the
step looks again later); a URL that cannot be used, or any other
database error, raises
:class:`~octavia_workflows.exceptions.CloudRequestError` with a one-line
reason (the driver's error attached with ``from``).

:func:`image_notes` says which amphorae cannot follow a push at all: an
agent older than the fix of Octavia bug 2121691 stores the new
health-manager list but keeps sending to the old one until it restarts;
the API tells only the age of an amphora's image.
"""

import contextlib
import datetime

from oslo_config import cfg
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy import pool

from octavia_workflows import exceptions
from octavia_workflows.cloud import octavia_db
from octavia_workflows.machinery import inventory

#: Octavia releases whose amphora agent reloads the health-manager list
#: on a configuration push (bug 2121691), and the day the first of them
#: came out: an image built before it cannot carry the fix.
FIXED_IN = '15.1.0 (2024.2), 16.0.1 (2025.1), 17.0.0 (2025.2) and later'
FIRST_FIXED_RELEASE = '2025-09-17'

_QUERY = sa.text(
    'SELECT amphora_id, last_update FROM amphora_health '
    'WHERE amphora_id IN :ids').bindparams(
        sa.bindparam('ids', expanding=True))


def connection(conf):
    """``[octavia_database] connection`` of ``conf`` (None: not set, or
    no configuration, or an option this release does not register)."""
    if conf is None:
        return None
    try:
        return conf.octavia_database.connection or None
    except (AttributeError, cfg.Error):
        return None


@contextlib.contextmanager
def _translated(what):
    try:
        yield
    except octavia_db.OUTAGE as exc:
        raise exceptions.CloudUnreachable(
            f'{what}: Octavia\'s database is unreachable: '
            f'{octavia_db.error_line(exc)}') from exc
    except (sa_exc.ArgumentError, ImportError) as exc:
        raise exceptions.CloudRequestError(
            f'{what}: [octavia_database] connection is not a usable '
            f'SQLAlchemy URL ({type(exc).__name__})') from None
    except sa_exc.SQLAlchemyError as exc:
        raise exceptions.CloudRequestError(
            f'{what}: Octavia\'s database refused the read: '
            f'{octavia_db.error_line(exc)}') from exc


def last_updates(url, amphora_ids):
    """``{amphora id: last heartbeat (ISO text) or None}``."""
    what = 'read amphora health'
    ids = sorted(set(amphora_ids))
    found = dict.fromkeys(ids)
    if not ids:
        return found
    with _translated(what):
        engine = sa.create_engine(url, poolclass=pool.NullPool)
        try:
            with engine.connect() as conn:
                for amp_id, seen in conn.execute(_QUERY, {'ids': ids}):
                    found[amp_id] = _iso(seen)
        finally:
            engine.dispose()
    return found


def _iso(value):
    if value is None:
        return None
    if isinstance(value, datetime.datetime):
        return value.isoformat(sep=' ')
    return str(value)


def _parse(text):
    try:
        return datetime.datetime.fromisoformat(str(text).replace('T', ' '))
    except ValueError:
        return None


def moved(before, now):
    """True if a heartbeat was recorded after ``before`` (both ISO text
    as :func:`last_updates` returns them; ``before`` None: never heard
    from before)."""
    if now is None:
        return False
    if before is None:
        return True
    was, seen = _parse(before), _parse(now)
    if was is None or seen is None:
        return now != before
    return seen > was


def image_notes(cloud, targets):
    """Plan notes on Octavia bug 2121691: amphorae whose image was built
    before the first release whose agent reloads the health-manager list
    on a configuration push (the image's age is all the API tells)."""
    per_image = {}
    for target in targets:
        per_image.setdefault(target.details.get('image') or '', []).append(
            target.target)
    cutoff = inventory.parse_time(FIRST_FIXED_RELEASE)
    old, unknown = [], 0
    for image, amps in sorted(per_image.items()):
        created = None
        if image:
            try:
                created = cloud.get_image(image).get('created_at')
            except exceptions.CloudError:
                created = None
        built = inventory.parse_time(created)
        if built is None:
            unknown += len(amps)
        elif built < cutoff:
            old.append((image, created, len(amps)))
    notes = []
    if old:
        count = sum(n for _, _, n in old)
        names = ', '.join(f'{i} built {c}' for i, c, _ in old)
        notes.append(
            f'{count} amphora(e) run images built before '
            f'{FIRST_FIXED_RELEASE} ({names}): older than every Octavia '
            f'release whose amphora agent reloads the health-manager list '
            f'on a configuration push (bug 2121691, fixed in {FIXED_IN}), '
            f'their agents store the new list but keep sending heartbeats '
            f'to the old addresses until they restart; rotate them onto a '
            f'current image (rotate-images) instead')
    if unknown:
        notes.append(
            f'{unknown} amphora(e) run images of unknown age: their agents '
            f'follow the push only if built from Octavia {FIXED_IN} (bug '
            f'2121691)')
    return notes
