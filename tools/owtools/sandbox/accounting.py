"""What happened to each load balancer, for assertions in tests.

* amphorae per load balancer and status, from Octavia's own database:
  a SINGLE load balancer failed over once has one ALLOCATED and one DELETED
  amphora; an ACTIVE_STANDBY one two ALLOCATED and two DELETED (housekeeping,
  which would purge DELETED rows, does not run in the sandbox);
* configure calls (``PUT /v2/octavia/amphorae/{id}/config`` reaching the
  amphora driver), recorded by the sandbox amphora driver;
* builds and deletions of amphora VMs, recorded by the sandbox compute
  driver;
* operating statuses, amphora health and listener statistics, as Octavia's
  health manager recorded them from the stand-in's heartbeats.
"""

import collections
import contextlib
import json
import sqlite3

import sqlalchemy as sa

CONFIGURE_LOG = "configure-calls.jsonl"
SERVERS_DB = "compute.db"


class Accounting:
    """Accounting queries for one sandbox (``Sandbox.accounting()``)."""

    def __init__(self, sandbox):
        self.sandbox = sandbox
        self._engine = None

    @property
    def engine(self):
        """SQLAlchemy engine on the sandbox's Octavia database."""
        if self._engine is None:
            self._engine = sa.create_engine(self.sandbox.db_url,
                                            pool_pre_ping=True)
        return self._engine

    def close(self):
        """Release database connections."""
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    def amphorae_by_lb(self, lb_ids=None):
        """``{lb_id: {status: count}}`` over all amphora rows, deleted ones
        included (e.g. ``{"ALLOCATED": 1, "DELETED": 1}``)."""
        sql = ("SELECT load_balancer_id, status, COUNT(*) FROM amphora"
               " WHERE load_balancer_id IS NOT NULL")
        params = {}
        if lb_ids is not None:
            sql += " AND load_balancer_id IN :ids"
            params["ids"] = list(lb_ids) or [""]
        stmt = sa.text(sql + " GROUP BY load_balancer_id, status")
        if lb_ids is not None:
            stmt = stmt.bindparams(sa.bindparam("ids", expanding=True))
        result = collections.defaultdict(dict)
        with self.engine.connect() as conn:
            for lb_id, status, count in conn.execute(stmt, params):
                result[lb_id][status] = count
        return dict(result)

    def failovers_by_lb(self, lb_ids=None, topology_size=None):
        """``{lb_id: number of completed failovers}``, counted as DELETED
        amphorae divided by the amphorae per generation (1 for SINGLE, 2
        for ACTIVE_STANDBY, taken from the live amphorae unless given)."""
        counts = {}
        for lb_id, by_status in self.amphorae_by_lb(lb_ids).items():
            live = sum(n for s, n in by_status.items() if s != "DELETED")
            size = topology_size or max(1, live)
            counts[lb_id] = by_status.get("DELETED", 0) / size
        return counts

    def amphorae(self, lb_id=None):
        """Amphora rows (dicts), deleted ones included, oldest first."""
        sql = ("SELECT id, load_balancer_id, compute_id, status, role,"
               " image_id, cached_zone, compute_flavor, lb_network_ip,"
               " created_at, updated_at FROM amphora")
        params = {}
        if lb_id:
            sql += " WHERE load_balancer_id = :lb"
            params["lb"] = lb_id
        with self.engine.connect() as conn:
            rows = conn.execute(sa.text(sql + " ORDER BY created_at, id"),
                                params)
            return [dict(r._mapping) for r in rows]

    def operating_statuses(self, table, ids):
        """``{id: operating_status}`` of rows of ``table``
        (``load_balancer``, ``listener``, ``pool`` or ``member``), as
        Octavia's health manager set them."""
        if table not in ("load_balancer", "listener", "pool", "member"):
            raise ValueError(f"no operating status in {table!r}")
        stmt = sa.text(f"SELECT id, operating_status FROM {table}"
                       " WHERE id IN :ids").bindparams(
                           sa.bindparam("ids", expanding=True))
        with self.engine.connect() as conn:
            return {r[0]: r[1] for r in conn.execute(
                stmt, {"ids": list(ids) or [""]})}

    def amphora_health(self, amp_ids=None):
        """``{amphora_id: (last_update, busy)}`` from Octavia's
        ``amphora_health`` table (a row exists once the health manager
        took a heartbeat from that amphora; ``last_update`` is UTC)."""
        sql = "SELECT amphora_id, last_update, busy FROM amphora_health"
        params = {}
        stmt = sa.text(sql)
        if amp_ids is not None:
            stmt = sa.text(sql + " WHERE amphora_id IN :ids").bindparams(
                sa.bindparam("ids", expanding=True))
            params["ids"] = list(amp_ids) or [""]
        with self.engine.connect() as conn:
            return {a: (t, bool(b)) for a, t, b in conn.execute(stmt, params)}

    def listener_statistics(self, listener_ids):
        """``{(listener_id, amphora_id): {bytes_in, bytes_out,
        total_connections}}``: statistics Octavia stored from heartbeats."""
        stmt = sa.text(
            "SELECT listener_id, amphora_id, bytes_in, bytes_out,"
            " total_connections FROM listener_statistics"
            " WHERE listener_id IN :ids").bindparams(
                sa.bindparam("ids", expanding=True))
        with self.engine.connect() as conn:
            return {(r[0], r[1]): {"bytes_in": r[2], "bytes_out": r[3],
                                   "total_connections": r[4]}
                    for r in conn.execute(stmt,
                                          {"ids": list(listener_ids) or [""]})}

    def configure_calls(self):
        """Configure calls in order: dicts with ``time``, ``amphora_id``,
        ``compute_id``, ``load_balancer_id``."""
        calls = []
        with contextlib.suppress(FileNotFoundError):
            path = self.sandbox.dir / CONFIGURE_LOG
            with open(path, encoding="utf-8") as fh:
                for line in fh:
                    if line.strip():
                        calls.append(json.loads(line))
        return calls

    def configured_amphorae(self):
        """``{amphora_id: number of configure calls}``."""
        return dict(collections.Counter(
            c["amphora_id"] for c in self.configure_calls()))

    def servers(self):
        """Amphora VMs built by the compute driver: dicts with
        ``compute_id``, ``name``, ``image_id``, ``zone``, ``flavor``,
        ``host``, ``created_at``, ``deleted_at`` (None while it exists)."""
        path = self.sandbox.dir / SERVERS_DB
        if not path.exists():
            return []
        with contextlib.closing(sqlite3.connect(path, timeout=30)) as conn:
            conn.row_factory = sqlite3.Row
            with contextlib.suppress(sqlite3.OperationalError):
                return [dict(r) for r in conn.execute(
                    "SELECT * FROM servers ORDER BY created_at")]
        return []
