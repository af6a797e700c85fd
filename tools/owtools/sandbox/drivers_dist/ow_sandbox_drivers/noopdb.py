"""Per-sandbox location of the no-op drivers' shared SQLite file.

Octavia's no-op network and compute managers keep their ports in an SQLite
file at a fixed path in /tmp, shared by every Octavia on the machine. The
sandbox drivers point their managers' engines at ``<sandbox dir>/noop.db``
instead, with the same connection settings as the stock managers.
"""

from sqlalchemy import create_engine, event

from ow_sandbox_drivers import knobs

NOOP_DB = "noop.db"


def redirect(manager, exclusive_begin=False, **engine_kwargs):
    """Re-point ``manager.engine`` at the sandbox's own SQLite file.

    ``exclusive_begin`` reproduces the network manager's locking scheme
    (autocommit off in pysqlite, ``BEGIN EXCLUSIVE`` per transaction).
    """
    base = knobs.sandbox_dir()
    if base is None:
        return
    engine = create_engine(f"sqlite:///{base / NOOP_DB}", **engine_kwargs)
    if exclusive_begin:
        @event.listens_for(engine, "connect")
        def _connect(dbapi_connection, connection_record):
            dbapi_connection.isolation_level = None

        @event.listens_for(engine, "begin")
        def _begin(conn):
            conn.exec_driver_sql("BEGIN EXCLUSIVE")

    old = manager.engine
    manager.engine = engine
    old.dispose()
    # The interfaces (and, for the network manager, fixed_ips) tables.
    manager.interfaces_table.metadata.create_all(engine)
