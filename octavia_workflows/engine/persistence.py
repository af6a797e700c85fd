"""The persistence database: TaskFlow's logbooks plus our job records.

One SQLAlchemy engine serves both TaskFlow's SQLAlchemy backend (every
step's saved state) and :mod:`octavia_workflows.engine.records` (jobs and
per-target rows).  Two measured TaskFlow pitfalls are handled here:

- TaskFlow builds a new ``Connection`` (and recompiles every statement)
  per storage operation; :class:`SharedConnectionBackend` hands out one
  connection object, which is ~4x faster per step.
- A conductor that lost its claim must not write the job's state any
  more; :class:`FencedConnection` refuses every write once its fence
  says the claim is gone.

Errors from SQLAlchemy/TaskFlow are translated here into
:class:`~octavia_workflows.exceptions.BackendUnavailable` or
:class:`~octavia_workflows.exceptions.SchemaMissing`.
"""

import contextlib
import logging
import os

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy import pool as sa_pool
from taskflow import exceptions as tf_exc
from taskflow.persistence import base as tf_base
from taskflow.persistence.backends import impl_sqlalchemy

from octavia_workflows import exceptions
from octavia_workflows.engine import records

LOG = logging.getLogger(__name__)

_UPGRADE_LOCK = 'octavia_workflows_schema_upgrade'


def redact_url(url):
    """The URL with its password hidden, safe for messages and logs."""
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except sa_exc.ArgumentError:
        return '<invalid URL>'


def _make_engine(url):
    try:
        parsed = sa.engine.make_url(url)
    except sa_exc.ArgumentError as exc:
        raise exceptions.ConfigError(
            f'invalid [task_flow] persistence_connection: {exc}') from exc
    if parsed.drivername.startswith('sqlite'):
        path = parsed.database
        if path and path != ':memory:':
            directory = os.path.dirname(os.path.abspath(path))
            try:
                os.makedirs(directory, exist_ok=True)
            except OSError as exc:
                raise exceptions.ConfigError(
                    f'cannot create state directory {directory}: '
                    f'{exc.strerror}') from exc
        return sa.create_engine(
            parsed, poolclass=sa_pool.NullPool,
            connect_args={'timeout': 30, 'check_same_thread': False})
    try:
        return sa.create_engine(parsed, pool_pre_ping=True, pool_recycle=3600,
                                pool_size=10, max_overflow=20)
    except (sa_exc.ArgumentError, ImportError) as exc:
        raise exceptions.ConfigError(
            f'unusable [task_flow] persistence_connection '
            f'{redact_url(url)}: {exc}') from exc


class FencedConnection(tf_base.Connection):
    """A TaskFlow connection that refuses writes once the claim is lost.

    Reads pass through.  Writes call ``fence()`` first; a lost claim makes
    every write raise ``StorageFailure`` so a stale engine stops without
    recording anything over the new owner's progress.
    """

    def __init__(self, connection, fence):
        self._conn = connection
        self._fence = fence

    def _check(self):
        try:
            self._fence()
        except exceptions.ClaimLost as exc:
            raise tf_exc.StorageFailure(
                f'refusing to save state: {exc}') from exc

    @property
    def backend(self):
        return self._conn.backend

    def close(self):
        pass

    def upgrade(self):
        self._check()
        return self._conn.upgrade()

    def clear_all(self):
        self._check()
        return self._conn.clear_all()

    def validate(self):
        return self._conn.validate()

    def update_atom_details(self, atom_detail):
        self._check()
        return self._conn.update_atom_details(atom_detail)

    def update_flow_details(self, flow_detail):
        self._check()
        return self._conn.update_flow_details(flow_detail)

    def save_logbook(self, book):
        self._check()
        return self._conn.save_logbook(book)

    def destroy_logbook(self, book_uuid):
        self._check()
        return self._conn.destroy_logbook(book_uuid)

    def get_logbook(self, book_uuid, lazy=False):
        return self._conn.get_logbook(book_uuid, lazy=lazy)

    def get_logbooks(self, lazy=False):
        return self._conn.get_logbooks(lazy=lazy)

    def get_flows_for_book(self, book_uuid):
        return self._conn.get_flows_for_book(book_uuid)

    def get_flow_details(self, fd_uuid, lazy=False):
        return self._conn.get_flow_details(fd_uuid, lazy=lazy)

    def get_atom_details(self, ad_uuid):
        return self._conn.get_atom_details(ad_uuid)

    def get_atoms_for_flow(self, fd_uuid):
        return self._conn.get_atoms_for_flow(fd_uuid)


class SharedConnectionBackend(tf_base.Backend):
    """A TaskFlow backend that reuses one connection object.

    With ``fence`` set, the connection is a :class:`FencedConnection`.
    """

    def __init__(self, backend, fence=None):
        super().__init__({})
        self._backend = backend
        conn = backend.get_connection()
        self._conn = FencedConnection(conn, fence) if fence else conn

    def get_connection(self):
        return self._conn

    def close(self):
        pass


class Persistence:
    """Access to the persistence database.

    :param url: SQLAlchemy URL (see ``[task_flow] persistence_connection``).
    :raises ConfigError: the URL is malformed or its driver is missing.
    """

    def __init__(self, url):
        self.url = url
        self.engine = _make_engine(url)
        self._tf_backend = impl_sqlalchemy.SQLAlchemyBackend(
            {'connection': url}, engine=self.engine)
        self.records = records.Records(self.engine)
        self._shared = None

    @property
    def is_sqlite(self):
        return self.engine.url.drivername.startswith('sqlite')

    def taskflow_backend(self, fence=None):
        """A TaskFlow persistence backend over this database."""
        if fence is not None:
            return SharedConnectionBackend(self._tf_backend, fence)
        if self._shared is None:
            self._shared = SharedConnectionBackend(self._tf_backend)
        return self._shared

    def check(self):
        """Verify the database answers and the schema is current.

        :raises BackendUnavailable: the database cannot be reached.
        :raises SchemaMissing: ``db upgrade`` has not been run.
        """
        try:
            version = self.records.schema_version()
        except sa_exc.OperationalError as exc:
            if _is_missing_table(exc):
                version = None
            else:
                raise exceptions.BackendUnavailable(
                    f'persistence database {redact_url(self.url)} is '
                    f'unreachable: {_first_line(exc.orig or exc)}') from exc
        except sa_exc.ProgrammingError as exc:
            version = None if _is_missing_table(exc) else -1
        except sa_exc.SQLAlchemyError as exc:
            raise exceptions.BackendUnavailable(
                f'persistence database {redact_url(self.url)} is '
                f'unusable: {_first_line(exc)}') from exc
        if version != records.SCHEMA_VERSION:
            if self.is_sqlite and version is None:
                # The embedded single-host store creates itself.
                self.upgrade()
                return
            raise exceptions.SchemaMissing(
                f'persistence schema in {redact_url(self.url)} is not '
                f'initialised or out of date; run "octavia-workflow db '
                f'upgrade"')

    def upgrade(self):
        """Create or upgrade the schema; safe to run again.

        Runs under a database-wide lock (MySQL ``GET_LOCK``, PostgreSQL
        advisory lock) so concurrent upgrades wait instead of failing.

        :raises BackendUnavailable: the database cannot be reached or the
            upgrade failed (the error says why).
        """
        try:
            with self._upgrade_lock():
                conn = self._tf_backend.get_connection()
                conn.upgrade()
                self.records.create_schema()
        except tf_exc.StorageFailure as exc:
            cause = exc.__cause__ or exc
            raise exceptions.BackendUnavailable(
                f'schema upgrade of {redact_url(self.url)} failed: '
                f'{_first_line(cause)}') from exc
        except sa_exc.SQLAlchemyError as exc:
            raise exceptions.BackendUnavailable(
                f'schema upgrade of {redact_url(self.url)} failed: '
                f'{_first_line(exc.orig if hasattr(exc, "orig") else exc)}'
            ) from exc

    @contextlib.contextmanager
    def _upgrade_lock(self):
        name = self.engine.dialect.name
        if name not in ('mysql', 'mariadb', 'postgresql'):
            yield
            return
        with self.engine.connect() as conn:
            if name == 'postgresql':
                conn.execute(sa.text('SELECT pg_advisory_lock(74211)'))
            else:
                got = conn.execute(sa.text('SELECT GET_LOCK(:n, 300)'),
                                   {'n': _UPGRADE_LOCK}).scalar()
                if got != 1:
                    raise exceptions.BackendUnavailable(
                        'another schema upgrade is holding the lock')
            try:
                yield
            finally:
                if name == 'postgresql':
                    conn.execute(sa.text('SELECT pg_advisory_unlock(74211)'))
                else:
                    conn.execute(sa.text('SELECT RELEASE_LOCK(:n)'),
                                 {'n': _UPGRADE_LOCK})

    def close(self):
        self.engine.dispose()


def _is_missing_table(exc):
    text = str(exc).lower()
    return ('no such table' in text or "doesn't exist" in text
            or 'does not exist' in text)


def _first_line(exc):
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
