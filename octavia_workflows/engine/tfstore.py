"""TaskFlow persistence connections: shared and fenced.

Kept apart from :mod:`octavia_workflows.engine.persistence` so that
commands which only read job records never import TaskFlow.
"""

from taskflow import exceptions as tf_exc
from taskflow.persistence import base as tf_base

from octavia_workflows import exceptions


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
