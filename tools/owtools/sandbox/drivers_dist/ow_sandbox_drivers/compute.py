"""No-op compute driver with injection and realistic amphora fields.

Every build is recorded in ``<sandbox dir>/compute.db`` (table ``servers``)
with the image, availability zone, flavor and host it got, so that
``get_amphora`` -- whose result Octavia stores in the amphora row -- reports
``image_id``, ``cached_zone``, ``compute_flavor`` and a distinct
``lb_network_ip`` per amphora. When the sandbox's Nova/Glance stand-in is
present, the image is the one currently carrying the configured image tag
and the server is placed on one of its compute hosts; values in the knobs'
``amphora_fields`` take precedence over both.
"""

import logging
import sqlite3
import threading
import time

from octavia.common import exceptions
from octavia.compute.drivers.noop_driver import driver as noop

from ow_sandbox_drivers import agentconf, knobs, noopdb

LOG = logging.getLogger(__name__)

SERVERS_DB = "compute.db"
STANDIN_DB = "standin.db"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS servers (
    compute_id TEXT PRIMARY KEY, name TEXT, image_id TEXT, zone TEXT,
    flavor TEXT, host TEXT, lb_network_ip TEXT,
    created_at REAL, deleted_at REAL)
"""


def _servers():
    base = knobs.sandbox_dir()
    if base is None:
        return None
    conn = sqlite3.connect(base / SERVERS_DB, timeout=30,
                           isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(_SCHEMA)
    return conn


_local = threading.local()


def _standin():
    """The stand-in's state store, or None when it is not in use."""
    base = knobs.sandbox_dir()
    if base is None or not (base / STANDIN_DB).exists():
        return None
    state = getattr(_local, "standin", None)
    if state is None:
        try:
            from owtools.standin import StandinState
        except ImportError:
            return None
        state = _local.standin = StandinState(str(base / STANDIN_DB))
    return state


def _ip_for(rowid):
    return f"10.{(rowid >> 16) & 255}.{(rowid >> 8) & 255}.{rowid & 255}"


@knobs.hooked("compute", noop.NoopComputeDriver)
class SandboxComputeDriver(noop.NoopComputeDriver):
    """``compute_noop_driver`` with hooks and filled-in amphora fields."""

    def __init__(self):
        super().__init__()
        noopdb.redirect(self.driver, isolation_level="SERIALIZABLE")

    def build(self, name="amphora_name", amphora_flavor=None,
              image_tag=None, image_owner=None, key_name=None, sec_groups=None,
              network_ids=None, config_drive_files=None, user_data=None,
              port_ids=None, server_group_id=None, availability_zone=None):
        knobs.hook("compute.build")
        compute_id = super().build(
            name, amphora_flavor, image_tag, image_owner, key_name,
            sec_groups, network_ids, config_drive_files, user_data, port_ids,
            server_group_id, availability_zone)
        fields = knobs.amphora_fields()
        zone = fields.get("cached_zone")
        if zone is None and isinstance(availability_zone, dict):
            zone = availability_zone.get("compute_zone")
        image_id = fields.get("image_id")
        host = None
        standin = _standin()
        if standin is not None:
            if image_id is None:
                image_id = standin.image_for(tag=image_tag or None)
            try:
                host = standin.place_server(compute_id, name,
                                            availability_zone=zone,
                                            image_id=image_id)
            except Exception as exc:
                raise exceptions.ComputeBuildException(fault=str(exc)) from exc
            if zone is None:
                zone = standin.host(host).get("az")
        flavor = fields.get("compute_flavor", amphora_flavor or None)
        conn = _servers()
        if conn is not None:
            with conn:
                cur = conn.execute(
                    "INSERT INTO servers (compute_id, name, image_id, zone,"
                    " flavor, host, created_at) VALUES (?,?,?,?,?,?,?)",
                    (compute_id, name, image_id, zone, flavor, host,
                     time.time()))
                ip = fields.get("lb_network_ip") or _ip_for(cur.lastrowid)
                conn.execute("UPDATE servers SET lb_network_ip=? WHERE"
                             " compute_id=?", (ip, compute_id))
            conn.close()
        agentconf.record(compute_id, agentconf.from_build(config_drive_files),
                         "build")
        LOG.info("sandbox: built %s as %s (image %s, zone %s, host %s)",
                 name, compute_id, image_id, zone, host)
        return compute_id

    def get_amphora(self, compute_id, management_network_id=None):
        knobs.hook("compute.get_amphora")
        amp, fault = super().get_amphora(compute_id, management_network_id)
        conn = _servers()
        if conn is not None:
            row = conn.execute(
                "SELECT image_id, zone, flavor, lb_network_ip FROM servers"
                " WHERE compute_id=?", (compute_id,)).fetchone()
            conn.close()
            if row:
                (amp.image_id, amp.cached_zone, amp.compute_flavor,
                 amp.lb_network_ip) = row
        return amp, fault

    def delete(self, compute_id):
        knobs.hook("compute.delete")
        super().delete(compute_id)
        conn = _servers()
        if conn is not None:
            with conn:
                conn.execute("UPDATE servers SET deleted_at=? WHERE"
                             " compute_id=?", (time.time(), compute_id))
            conn.close()
        standin = _standin()
        if standin is not None:
            try:
                standin.delete_server(compute_id)
            except Exception as exc:  # a missing server is not an error here
                LOG.warning("sandbox: stand-in delete_server(%s): %s",
                            compute_id, exc)
