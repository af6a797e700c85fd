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

A MySQL URL may list several hosts (a Galera cluster without a virtual
IP); :mod:`octavia_workflows.engine.dbcluster` connects through them,
sets Galera sessions up, and retries the job records' calls where that
is safe.

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

from octavia_workflows import exceptions
from octavia_workflows.engine import dbcluster, records

LOG = logging.getLogger(__name__)

_UPGRADE_LOCK = 'octavia_workflows_schema_upgrade'


def redact_url(url):
    """The URL with its password hidden, safe for messages and logs."""
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except sa_exc.ArgumentError:
        return '<invalid URL>'


#: Seconds PyMySQL waits to connect, and for one read or write.
MYSQL_TIMEOUTS = {'connect_timeout': 10, 'read_timeout': 60,
                  'write_timeout': 60}


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
        parsed, hosts = dbcluster.parse_hosts(parsed)
    except ValueError as exc:
        raise exceptions.ConfigError(
            f'invalid [task_flow] persistence_connection '
            f'{redact_url(url)}: {exc}') from exc
    connect_args = {}
    if parsed.drivername in ('mysql', 'mysql+pymysql'):
        # A black-holed link (a partition, a dead switch) must fail a
        # query in bounded time, not after TCP's quarter of an hour; the
        # URL's own query options win.
        connect_args = {k: v for k, v in MYSQL_TIMEOUTS.items()
                        if k not in parsed.query}
    try:
        engine = sa.create_engine(parsed, pool_pre_ping=True,
                                  pool_recycle=3600, pool_size=10,
                                  max_overflow=20, connect_args=connect_args)
    except (sa_exc.ArgumentError, ImportError) as exc:
        raise exceptions.ConfigError(
            f'unusable [task_flow] persistence_connection '
            f'{redact_url(url)}: {exc}') from exc
    dbcluster.install(engine, hosts)
    return engine


class Persistence:
    """Access to the persistence database.

    :param url: SQLAlchemy URL (see ``[task_flow] persistence_connection``).
    :raises ConfigError: the URL is malformed or its driver is missing.
    """

    def __init__(self, url, engine=None):
        self.url = url
        self._owns_engine = engine is None
        self.engine = _make_engine(url) if engine is None else engine
        self.records = dbcluster.RetryingRecords(
            records.Records(self.engine), self.engine)
        self._tf = None
        self._shared = None

    @property
    def _tf_backend(self):
        # TaskFlow is imported only by what runs jobs or changes the
        # schema: listing and showing jobs stay quick to start.
        if self._tf is None:
            from taskflow.persistence.backends import impl_sqlalchemy

            self._tf = impl_sqlalchemy.SQLAlchemyBackend(
                {'connection': self.url}, engine=self.engine)
        return self._tf

    @property
    def is_sqlite(self):
        return self.engine.url.drivername.startswith('sqlite')

    def taskflow_backend(self, fence=None):
        """A TaskFlow persistence backend over this database."""
        from octavia_workflows.engine import tfstore

        if fence is not None:
            return tfstore.SharedConnectionBackend(self._tf_backend, fence)
        if self._shared is None:
            self._shared = tfstore.SharedConnectionBackend(self._tf_backend)
        return self._shared

    def forget_logbook(self, job_id):
        """Remove a job's TaskFlow logbook (its records stay)."""
        from taskflow import exceptions as tf_exc

        try:
            self.taskflow_backend().get_connection().destroy_logbook(job_id)
        except tf_exc.NotFound:
            pass
        except tf_exc.StorageFailure as exc:
            LOG.warning('job %s: cannot remove logbook: %s', job_id, exc)

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
            if self.is_sqlite and (version is None
                                   or 0 < version < records.SCHEMA_VERSION):
                # The embedded single-host store creates and upgrades
                # itself.
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
        from taskflow import exceptions as tf_exc

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
        if self._owns_engine:
            self.engine.dispose()


def _is_missing_table(exc):
    text = str(exc).lower()
    return ('no such table' in text or "doesn't exist" in text
            or 'does not exist' in text)


def _first_line(exc):
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
