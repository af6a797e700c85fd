"""Clustered persistence databases: a list of hosts, Galera, retries.

Three things a production database in a cluster needs, kept here so
:mod:`octavia_workflows.engine.persistence` stays one engine and one
schema:

- **A list of hosts.**  ``mysql+pymysql://user:pw@/db?host=a:3306&host=
  b:3306`` (the form SQLAlchemy already takes for PostgreSQL's libpq):
  each new connection tries the hosts in order, starting with the one
  that answered last, so a process keeps writing to one node and moves
  to the next only when that one fails (connection refused, timed out,
  or a Galera node that is not part of the primary component).  With a
  single host, or behind a virtual IP, nothing changes.
- **Galera sessions.**  On a node whose ``wsrep_on`` is ``ON`` every new
  session sets ``wsrep_sync_wait = 1``: a read waits until the node has
  applied everything the cluster committed before it, so a process that
  moved to another node reads what it wrote on the first one.  A node
  that is not ready (``wsrep_ready`` is not ``ON``) is skipped.
- **Retries where they are safe.**  :class:`RetryingRecords` wraps the
  job records.  Every records method is one transaction, so a
  transaction the database rolled back (a deadlock, a Galera
  certification conflict — both MySQL error 1213 —, a lock wait
  timeout, PostgreSQL's serialization failure) is simply run again.
  A lost connection is retried only where running the call again cannot
  do anything twice: reads, and the writes listed in
  :data:`IDEMPOTENT_WRITES`; a target update whose first try committed
  before the link broke is recognised as landed rather than refused as
  a repeated transition.  Everything else is raised unchanged after the
  retries (the callers translate it as before: a job waits for the
  database, a command fails with a one-line error).
"""

import logging
import random
import threading
import time

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from octavia_workflows import states

LOG = logging.getLogger(__name__)

#: MySQL/MariaDB errors that mean the transaction was rolled back.
MYSQL_ROLLED_BACK = frozenset((1213, 1205))
#: MySQL errors of a connection that broke in use, or of a node that
#: cannot serve now (1047: Galera node not ready; 1053: shutting down;
#: 1927: connection killed; 2006/2013: server gone, connection lost).
#: A host that refuses new connections is not among them: every listed
#: host was tried by then, so that is an outage.
MYSQL_GONE = frozenset((1047, 1053, 1927, 2006, 2013))
#: PostgreSQL SQLSTATEs that mean the transaction was rolled back.
PG_ROLLED_BACK = frozenset(('40001', '40P01'))

#: Records methods that only read.
READ_PREFIXES = ('get_', 'list_', 'find_', 'schema_version', 'progress',
                 'target_states', 'finished_before')
#: Records writes that may be run again after a lost connection.
IDEMPOTENT_WRITES = frozenset(('create_schema', 'save_plan', 'delete_job',
                               'skip_pending', 'update_target'))

#: Attempts of one call, and the first and largest pause between them.
ATTEMPTS = 8
FIRST_DELAY = 0.05
MAX_DELAY = 2.0


def parse_hosts(url):
    """``(url, hosts)``: a MySQL URL whose query lists ``host=h[:p]``
    values, as the URL without them and ``[(host, port), ...]``; other
    URLs unchanged with ``hosts`` None.

    :raises ValueError: a listed port is not a number.
    """
    if not url.drivername.startswith('mysql') or 'host' not in url.query:
        return url, None
    listed = url.query['host']
    listed = [listed] if isinstance(listed, str) else list(listed)
    hosts = []
    for item in listed:
        host, _, port = item.rpartition(':') if ':' in item else (
            item, '', '')
        if not port.isdigit() and port:
            raise ValueError(f'host {item!r}: the port is not a number')
        hosts.append((host, int(port) if port else url.port or 3306))
    return url.difference_update_query(['host']), hosts


class HostList:
    """The hosts of one engine, most recently working first (shared by
    the engine's threads)."""

    def __init__(self, hosts):
        self.hosts = list(hosts)
        self._lock = threading.Lock()

    def order(self):
        with self._lock:
            return list(self.hosts)

    def worked(self, host):
        with self._lock:
            if self.hosts[0] != host:
                self.hosts.remove(host)
                self.hosts.insert(0, host)


def install(engine, hosts=None):
    """Connect ``engine`` through ``hosts`` (if a list was given) and set
    up Galera sessions on MySQL engines."""
    if engine.dialect.name not in ('mysql', 'mariadb'):
        return
    order = HostList(hosts) if hosts else None

    @sa.event.listens_for(engine, 'do_connect')
    def connect(dialect, conn_rec, cargs, cparams):
        candidates = order.order() if order else [None]
        last = None
        for host in candidates:
            params = dict(cparams)
            if host is not None:
                params['host'], params['port'] = host
            try:
                conn = dialect.dbapi.connect(*cargs, **params)
            except dialect.dbapi.Error as exc:
                last = exc
                LOG.info('database host %s: %s', _name(host, params), exc)
                continue
            try:
                _galera_session(conn)
            except (_NodeUnready, dialect.dbapi.Error) as exc:
                conn.close()
                last = exc if isinstance(exc, dialect.dbapi.Error) else \
                    dialect.dbapi.OperationalError(1047, str(exc))
                LOG.warning('database host %s: %s', _name(host, params), exc)
                continue
            if order is not None:
                order.worked(host)
            return conn
        raise last


def _name(host, params):
    return f'{params.get("host")}:{params.get("port", 3306)}'


class _NodeUnready(Exception):
    pass


def _galera_session(conn):
    """``wsrep_sync_wait = 1`` on a Galera node; refuse one not ready."""
    cur = conn.cursor()
    try:
        cur.execute("SHOW VARIABLES LIKE 'wsrep_on'")
        row = cur.fetchone()
        if not row or str(row[1]).upper() != 'ON':
            return
        cur.execute("SHOW STATUS LIKE 'wsrep_ready'")
        row = cur.fetchone()
        if not row or str(row[1]).upper() != 'ON':
            raise _NodeUnready('Galera node is not ready (not in the '
                               'primary component)')
        cur.execute('SET SESSION wsrep_sync_wait = 1')
    finally:
        cur.close()


def classify(exc):
    """``'rolled_back'``, ``'gone'`` (connection lost or node unready)
    or None for a SQLAlchemy error."""
    if not isinstance(exc, sa_exc.DBAPIError):
        return None
    orig = exc.orig
    code = orig.args[0] if getattr(orig, 'args', None) else None
    if getattr(orig, 'sqlstate', None) in PG_ROLLED_BACK:
        return 'rolled_back'
    if code in MYSQL_ROLLED_BACK:
        return 'rolled_back'
    if exc.connection_invalidated or code in MYSQL_GONE:
        return 'gone'
    return None


def _is_read(name):
    return name.startswith(READ_PREFIXES)


class RetryingRecords:
    """:class:`~octavia_workflows.engine.records.Records` with the
    retries described in the module docstring; attributes that are not
    methods pass through."""

    def __init__(self, records, engine, attempts=ATTEMPTS):
        self._records = records
        self._engine = engine
        self._attempts = attempts

    def __getattr__(self, name):
        method = getattr(self._records, name)
        if not callable(method) or name.startswith('_'):
            return method
        retry_gone = _is_read(name) or name in IDEMPOTENT_WRITES

        def call(*args, **kwargs):
            delay = FIRST_DELAY
            for attempt in range(1, self._attempts + 1):
                try:
                    return self._once(name, method, args, kwargs)
                except sa_exc.DBAPIError as exc:
                    kind = classify(exc)
                    if (kind is None or attempt == self._attempts
                            or (kind == 'gone' and not retry_gone)):
                        raise
                    LOG.warning('persistence: %s (%s); trying again',
                                _first_line(exc), name)
                    if kind == 'gone':
                        self._engine.dispose()
                time.sleep(delay * (1 + random.random()))
                delay = min(MAX_DELAY, delay * 2)

        call.__name__ = name
        call.__doc__ = method.__doc__
        return call

    def _once(self, name, method, args, kwargs):
        if name != 'update_target' or 'state' not in kwargs:
            return method(*args, **kwargs)
        try:
            return method(*args, **kwargs)
        except states.InvalidTransition:
            row = self._landed(*args, **kwargs)
            if row is None:
                raise
            return row

    def _landed(self, job_id, target, merge_details=None, **values):
        """The target's row if it already holds what this update writes
        (an earlier try committed just before its connection broke)."""
        row = self._records.get_target(job_id, target)
        if row is None or row['state'] != values['state']:
            return None
        if 'error' in values and row['error'] != values['error']:
            return None
        for key, value in (merge_details or {}).items():
            if row['details'].get(key) != value:
                return None
        LOG.info('persistence: %s of job %s was already %s (an earlier '
                 'try landed)', target, job_id, values['state'])
        return row


def _first_line(exc):
    text = str(getattr(exc, 'orig', None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
