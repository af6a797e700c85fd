"""What each sandbox amphora's agent was configured with.

A real amphora reads ``/etc/octavia/amphora-agent.conf`` from its config
drive at boot, and gets a new one when the controller pushes
``update_amphora_agent_config``; its health sender then heartbeats to the
``[health_manager] controller_ip_port_list`` of that file, signed with its
``heartbeat_key``, every ``heartbeat_interval`` seconds. The sandbox
compute driver records the file given to each build, and the sandbox
amphora driver each push, in ``<sandbox dir>/compute.db`` table
``agent_config`` (one row per compute id, the latest wins); the sandbox's
amphora-agent stand-in (``owtools.sandbox.heartbeats``) sends from it.

A file that cannot be parsed is recorded as not configured (no row is
written, a warning is logged): the stand-in then uses the sandbox defaults,
as for amphorae that were inserted into the database without a build.
"""

import configparser
import json
import logging
import sqlite3
import time

from ow_sandbox_drivers import knobs

LOG = logging.getLogger(__name__)

SERVERS_DB = "compute.db"
AGENT_CONF_PATH = "/etc/octavia/amphora-agent.conf"

SCHEMA = """
CREATE TABLE IF NOT EXISTS agent_config (
    compute_id TEXT PRIMARY KEY, amphora_id TEXT, controllers TEXT,
    heartbeat_interval REAL, heartbeat_key TEXT, source TEXT,
    updated_at REAL)
"""


def parse(text):
    """{'controllers': [...], 'heartbeat_interval': s, 'heartbeat_key':
    str, 'amphora_id': str} from an amphora-agent.conf text, or None."""
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    try:
        parser.read_string(text)
        section = parser["health_manager"]
    except (configparser.Error, KeyError, TypeError):
        return None
    controllers = [c.strip() for c in
                   section.get("controller_ip_port_list", "").split(",")
                   if c.strip()]
    try:
        interval = float(section.get("heartbeat_interval", "10"))
    except ValueError:
        interval = 10.0
    amphora_id = None
    if parser.has_section("amphora_agent"):
        amphora_id = parser["amphora_agent"].get("amphora_id")
    return {"controllers": controllers, "heartbeat_interval": interval,
            "heartbeat_key": section.get("heartbeat_key", ""),
            "amphora_id": amphora_id}


def record(compute_id, text, source):
    """Store the agent configuration ``text`` of ``compute_id``."""
    base = knobs.sandbox_dir()
    if base is None or not compute_id:
        return
    conf = parse(text) if isinstance(text, str) else None
    if conf is None:
        LOG.warning("sandbox: agent configuration of %s (%s) not parsed",
                    compute_id, source)
        return
    conn = sqlite3.connect(base / SERVERS_DB, timeout=30,
                           isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(SCHEMA)
        conn.execute(
            "INSERT OR REPLACE INTO agent_config (compute_id, amphora_id,"
            " controllers, heartbeat_interval, heartbeat_key, source,"
            " updated_at) VALUES (?,?,?,?,?,?,?)",
            (compute_id, conf["amphora_id"], json.dumps(conf["controllers"]),
             conf["heartbeat_interval"], conf["heartbeat_key"], source,
             time.time()))
    finally:
        conn.close()
    LOG.info("sandbox: %s agent configuration of %s: controllers %s",
             source, compute_id, ", ".join(conf["controllers"]))


def from_build(config_drive_files):
    """The agent configuration text given to a build's config drive (None
    when Octavia put it into the user data: ``user_data_config_drive``)."""
    if isinstance(config_drive_files, dict):
        text = config_drive_files.get(AGENT_CONF_PATH)
        if text:
            return text.decode() if isinstance(text, bytes) else text
    return None
