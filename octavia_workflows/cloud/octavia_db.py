"""Octavia's own database: the few reads and the one compare-and-set that
``repair-stuck`` needs.

Octavia keeps a load balancer's ``provisioning_status`` in its database;
when a worker dies in the middle of a flow the load balancer stays
PENDING_* for good, and no API call moves it (every one answers 409).
The repair is the one Octavia's operators make by hand, made safe: a
compare-and-set on the row as it was seen when the job was planned ::

    UPDATE load_balancer SET provisioning_status = 'ERROR',
                             updated_at = :stamp
     WHERE id = :id AND provisioning_status = :seen_status
       AND updated_at = :seen_updated_at      -- or IS NULL

never a blind UPDATE.  ``stamp`` is chosen (and recorded) by the caller
before the statement runs, so that after a crash it can tell its own
reset (the row is ERROR with that ``updated_at``) from anybody else's.

The URL is a secret (it holds Octavia's database password): it is never
part of a message, a log line or a ``repr``.

Failures: an unreachable database raises
:class:`~octavia_workflows.exceptions.CloudUnreachable` (transient: a
step tries again later; a dry run exits 2), a URL that is not usable
:class:`~octavia_workflows.exceptions.ConfigError`, any other database
error :class:`~octavia_workflows.exceptions.CloudRequestError` -- each
with a one-line reason and the driver's error attached (``from``).
"""

import contextlib
import datetime

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from octavia_workflows import exceptions

#: Provisioning statuses of a load balancer Octavia is (or was) working on.
PENDING = ('PENDING_CREATE', 'PENDING_UPDATE', 'PENDING_DELETE')
ERROR = 'ERROR'

_COLUMNS = (('id', None), ('project_id', None), ('name', None),
            ('provisioning_status', None), ('operating_status', None),
            ('topology', None), ('provider', None),
            ('created_at', sa.DateTime), ('updated_at', sa.DateTime))

#: Errors that mean Octavia's database cannot be reached (also used by
#: the read-only heartbeat check of reconfigure-amphorae).
OUTAGE = (sa_exc.OperationalError, sa_exc.InterfaceError,
          sa_exc.DisconnectionError, sa_exc.TimeoutError)


def utcnow():
    """Now as Octavia stores times: naive UTC, whole seconds (a MySQL
    DATETIME keeps no fraction, so a stamp with one would not compare
    equal to itself once stored)."""
    return datetime.datetime.now(datetime.timezone.utc).replace(
        tzinfo=None, microsecond=0)


def isoformat(value):
    """A stored time as ISO text (None stays None)."""
    return value.isoformat() if value is not None else None


def parse(text):
    """ISO text back to a naive datetime (None stays None)."""
    if text in (None, ''):
        return None
    return datetime.datetime.fromisoformat(str(text))


def error_line(exc):
    """The first line of a database error, for one-line messages."""
    cause = getattr(exc, 'orig', None) or exc
    text = str(cause).strip()
    return text.splitlines()[0][:300] if text else type(cause).__name__


@contextlib.contextmanager
def _translated(what):
    try:
        yield
    except OUTAGE as exc:
        raise exceptions.CloudUnreachable(
            f'Octavia database: {what}: cannot reach it: {error_line(exc)}'
        ) from exc
    except sa_exc.SQLAlchemyError as exc:
        raise exceptions.CloudRequestError(
            f'Octavia database: {what}: {error_line(exc)}') from exc


class OctaviaDatabase:
    """Octavia's database at ``url`` (see the module docstring).

    :raises ConfigError: ``url`` is empty or not a usable SQLAlchemy URL
        (the message never repeats it).
    """

    def __init__(self, url):
        if not url:
            raise exceptions.ConfigError(
                'Octavia\'s database is not configured: set '
                '[octavia_database] connection')
        try:
            self.engine = sa.create_engine(url, pool_pre_ping=True,
                                           pool_recycle=3600)
        except (sa_exc.ArgumentError, sa_exc.NoSuchModuleError,
                ImportError, ValueError) as exc:
            raise exceptions.ConfigError(
                '[octavia_database] connection is not a usable SQLAlchemy '
                'URL') from exc
        self._table = sa.table('load_balancer',
                               *(sa.column(name, kind)
                                 for name, kind in _COLUMNS))

    def __repr__(self):
        return '<OctaviaDatabase>'

    def close(self):
        self.engine.dispose()

    # -- reads --------------------------------------------------------------
    def pending_load_balancers(self, project=None, ids=None):
        """Rows (dicts) of the load balancers in PENDING_*, optionally
        of one project or among ``ids``."""
        table = self._table
        query = sa.select(*table.c).where(
            table.c.provisioning_status.in_(PENDING))
        if project:
            query = query.where(table.c.project_id == project)
        if ids:
            query = query.where(table.c.id.in_(list(ids)))
        with _translated('list pending load balancers'):
            with self.engine.connect() as conn:
                return [dict(r._mapping) for r in conn.execute(query)]

    def get_load_balancer(self, lb_id):
        """The row (dict) of one load balancer, None if there is none."""
        table = self._table
        query = sa.select(*table.c).where(table.c.id == lb_id)
        with _translated(f'read load balancer {lb_id}'):
            with self.engine.connect() as conn:
                row = conn.execute(query).first()
        return dict(row._mapping) if row is not None else None

    # -- the one write --------------------------------------------------------
    def reset_to_error(self, lb_id, seen_status, seen_updated_at, stamp):
        """The compare-and-set (see the module docstring): True if it
        changed the row, False if the row was not as seen (0 rows)."""
        table = self._table
        where = [table.c.id == lb_id,
                 table.c.provisioning_status == seen_status]
        if seen_updated_at is None:
            where.append(table.c.updated_at.is_(None))
        else:
            where.append(table.c.updated_at == seen_updated_at)
        statement = sa.update(table).where(*where).values(
            provisioning_status=ERROR, updated_at=stamp)
        with _translated(f'reset load balancer {lb_id} to ERROR'):
            with self.engine.begin() as conn:
                return conn.execute(statement).rowcount == 1
