"""The fencing token: a write from a conductor that lost its job never lands.

Every conductor that starts running a job advances the job's token
(``ow_jobs.fence``, :meth:`~.records.Records.take_fence`) and runs it
through a :class:`FencedStore`: a persistence handle of its own whose
every transaction -- our records and TaskFlow's logbook alike -- checks,
right before it commits and inside the same transaction, that the job's
token is still the one this run took.  A conductor that was cut off
while a write was in flight, and whose job another conductor took over
meanwhile (advancing the token), has that write refused when the link
returns: the commit raises
:class:`~octavia_workflows.exceptions.ClaimLost` and the transaction is
rolled back.  The claim check made before each write
(:class:`~.tfstore.FencedConnection`, ``context.fence()``) stops new
writes; this closes the window of the one already sent.

The check reads the token with ``SELECT ... FOR UPDATE`` on MySQL,
MariaDB and PostgreSQL (the latest committed value, locked until this
commit, so a takeover waits for it or comes first); SQLite serialises
writers, so a plain read in the write transaction is current.

Failures: a refused commit logs one line, marks the run's claim lost,
closes the connection (the server rolls the transaction back) and raises
ClaimLost; a database error from the check itself propagates like
any other write error.
"""

import logging

import sqlalchemy as sa

from octavia_workflows import exceptions
from octavia_workflows.engine import persistence as pers
from octavia_workflows.engine import records as rec

LOG = logging.getLogger(__name__)


def _check_sql(dialect):
    table, column, key = rec.jobs.name, 'fence', 'id'
    marker = '?' if dialect.paramstyle == 'qmark' else '%s'
    lock = '' if dialect.name == 'sqlite' else ' FOR UPDATE'
    return f'SELECT {column} FROM {table} WHERE {key} = {marker}{lock}'


class FencedStore(pers.Persistence):
    """A persistence handle for one run of one job, fenced by ``token``.

    :param origin: the conductor's :class:`~.persistence.Persistence`:
        the run shares its connection pool (a new pool per run cost each
        job its own connections: a MySQL handshake and a TLS context
        each) through an engine of its own (SQLAlchemy's
        ``execution_options()``), whose commit check is local to it.
    :param job_id: the job.
    :param token: the token this run took.
    :param on_refused: called with the reason when a commit is refused
        (the runner marks its claim lost).
    """

    def __init__(self, origin, job_id, token, on_refused=None):
        super().__init__(origin.url,
                         engine=origin.engine.execution_options())
        self.job_id = job_id
        self.token = token
        self._on_refused = on_refused or (lambda why: None)
        self._sql = _check_sql(self.engine.dialect)
        sa.event.listen(self.engine, 'commit', self._check)

    def _check(self, conn):
        cursor = conn.connection.cursor()
        try:
            cursor.execute(self._sql, (self.job_id,))
            row = cursor.fetchone()
        finally:
            cursor.close()
        current = row[0] if row else None
        if current == self.token:
            return
        why = (f'job {self.job_id}: write refused: the job was taken over '
               f'(fencing token {self.token}, now {current})')
        LOG.warning('%s', why)
        self._on_refused(why)
        # The transaction must not commit, and the connection, still in
        # it, must not go back to the shared pool: closing it rolls the
        # transaction back on the server.
        conn.invalidate()
        raise exceptions.ClaimLost(why)


def open_run(persistence, job_id, claim):
    """Advance the job's token for ``claim``'s run and return the
    :class:`FencedStore` the run writes through."""
    token = persistence.records.take_fence(job_id)
    LOG.debug('job %s: fencing token %s for %s', job_id, token, claim.owner)
    return FencedStore(persistence, job_id, token,
                       on_refused=claim.mark_lost)
