"""TaskFlow persistence connections: shared and fenced.

Kept apart from :mod:`octavia_workflows.engine.persistence` so that
commands which only read job records never import TaskFlow.
"""

import logging

from taskflow import exceptions as tf_exc
from taskflow.persistence import base as tf_base

from octavia_workflows import exceptions

#: TaskFlow loggers that report a fenced write with a full traceback.
_NOISY = ('taskflow.engines.action_engine.builder',
          'taskflow.engines.action_engine.engine',
          'oslo_utils.excutils')


class _FencedWriteFilter(logging.Filter):
    """Turn TaskFlow's tracebacks about a fenced write into one line.

    A stale engine stopping on :class:`~octavia_workflows.exceptions.
    ClaimLost` is expected behaviour (the claim moved on), not an error:
    the first logger reports it in one line, the others stay quiet.
    """

    def __init__(self, first):
        super().__init__()
        self.first = first

    def filter(self, record):
        if not _about_claim_lost(record):
            return True
        if not self.first:
            return False
        record.levelno, record.levelname = logging.INFO, 'INFO'
        record.msg, record.args = ('stale engine stopped: its claim is '
                                   'lost, nothing more is saved'), ()
        record.exc_info = record.exc_text = None
        return True


def _about_claim_lost(record):
    if record.exc_info:
        exc = record.exc_info[1]
        while exc is not None:
            if isinstance(exc, exceptions.ClaimLost):
                return True
            if isinstance(exc, tf_exc.WrappedFailure):
                return all(f.check(exceptions.ClaimLost) for f in exc)
            exc = exc.__cause__ or exc.__context__
    try:
        return 'ClaimLost' in record.getMessage()
    except Exception:
        return False


for _name in _NOISY:
    logging.getLogger(_name).addFilter(
        _FencedWriteFilter(first=_name == _NOISY[0]))


class FencedConnection(tf_base.Connection):
    """A TaskFlow connection that refuses writes once the claim is lost.

    Reads pass through.  Writes call ``fence()`` first; a lost claim makes
    every write raise :class:`~octavia_workflows.exceptions.ClaimLost`
    (deliberately not TaskFlow's ``StorageFailure``, which TaskFlow
    retries for ten seconds), so a stale engine stops at its next save
    without recording anything over the new owner's progress.
    """

    def __init__(self, connection, fence):
        self._conn = connection
        self._fence = fence

    def _check(self):
        self._fence()

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
