"""Amphora-agent stand-in: real heartbeats for every live sandbox amphora.

Knob API (stable; other tests build on it). The knobs live in the
sandbox's ``knobs.json`` under ``"heartbeats"`` and are re-read on every
round, so a change takes effect within one heartbeat interval::

    sb.heartbeat_knobs(bad_images=["<image id>"])        # members DOWN
    sb.heartbeat_knobs(silent_load_balancers=["<lb id>"])  # no heartbeats
    sb.heartbeat_knobs(silent_amphorae=["<amphora id>"])
    sb.heartbeat_knobs(no_reload_images=["<image id>"])   # ignore pushes
    sb.heartbeat_knobs(clear=True)                        # all back
    # command line: tools/sandbox heartbeats --bad-image ID
    #   --silence-lb ID --silence-amphora ID --no-reload-image ID
    #   [--max-amphorae N] [--clear] [--show]

    {"heartbeats": {"bad_images": ["<image id>", ...],
                    "silent_load_balancers": ["<lb id>", ...],
                    "silent_amphorae": ["<amphora id>", ...],
                    "no_reload_images": ["<image id>", ...],
                    "max_amphorae": 100}}

* ``bad_images``: amphorae whose ``image_id`` is listed report every
  member DOWN (and a pool whose members are all DOWN as DOWN): Octavia's
  health manager sets those members ERROR, their pools DEGRADED or ERROR
  and the load balancer DEGRADED or ERROR.
* ``silent_load_balancers`` / ``silent_amphorae``: those amphorae send
  nothing (every amphora of a listed load balancer, including the ones a
  failover builds). After ``heartbeat_timeout`` the health manager fails
  them over by itself; with ``failover_threshold`` reached it marks them
  FAILOVER_STOPPED instead (``sb.health().restart(failover_threshold=N)``).
* ``no_reload_images``: amphorae of these images take a configuration
  push (the call succeeds and is counted) but keep heartbeating to the
  addresses they booted with, as images older than the fix for Octavia
  bug 2121691 do (read by the sandbox amphora driver at the push).
* ``max_amphorae``: at most this many amphorae heartbeat (the first ones
  seen keep their place; others start as places free up), so that a
  10,000-amphora seed does not flood the health manager.

What is sent: for each amphora that is ALLOCATED or FAILOVER_STOPPED and
whose load balancer is not DELETED (Octavia's database: the amphorae
every 2 s, their listeners, pools and members right before each send),
the health daemon's version-3 message (``id``, ``seq``, ``listeners``
with status OPEN and per-round statistics deltas, ``pools`` keyed
``<pool id>:<listener id>`` with their members: ``UP``, or ``no check``
when the pool has no health monitor, as haproxy reports them), compressed
and signed exactly as ``octavia.amphorae.backends.health_daemon`` does
(``status_message.wrap_envelope``), by UDP to the
``controller_ip_port_list`` and with the ``heartbeat_key`` that amphora's
agent was configured with: at its build, or by the last
``update_amphora_agent_config`` push (recorded by the sandbox drivers,
see ``ow_sandbox_drivers.agentconf``); amphorae inserted into the database
without a build use the sandbox's own list. Each amphora sends every
``heartbeat_interval`` of the sandbox's health settings (2 s by default;
Octavia's own ``heartbeat_interval`` is set to the timeout, see
``owtools.sandbox.health``).

``<sandbox dir>/heartbeats.json`` (:func:`read_status`) is rewritten every
second: per amphora the addresses it sends to, where its configuration
came from (``build``, ``push``, ``sandbox default``), its knobs and how
many heartbeats it sent. A sandbox started with ``OW_SANDBOX_HEALTH=off``
runs neither this stand-in nor the health manager.

One process for all amphorae, started and stopped with the sandbox: it is
independent of the worker and API (amphorae do not die with the control
plane), and its cost is one small database read and one ``sendto`` per
amphora per round. Failures: while the database cannot be read the
stand-in keeps heartbeating the amphorae it last saw (a real amphora does
not depend on the controller's database) and logs the error once per
outage; an unreachable address is logged and skipped.
"""

import argparse
import json
import logging
import os
from pathlib import Path
import socket
import sqlite3
import sys
import time

import sqlalchemy as sa

from owtools.sandbox import inject

LOG = logging.getLogger("owtools.sandbox.heartbeats")

KNOBS_SECTION = "heartbeats"
KNOB_LISTS = ("bad_images", "silent_load_balancers", "silent_amphorae",
              "no_reload_images")
DEFAULT_MAX_AMPHORAE = 100
STATUS_FILE = "heartbeats.json"
LIVE = ("ALLOCATED", "FAILOVER_STOPPED")
MSG_VER = 3


def set_knobs(knobs_path, clear=False, max_amphorae=None, **lists):
    """Merge heartbeat knobs into ``knobs_path``: each of
    :data:`KNOB_LISTS` given replaces that list (``[]`` or None empties
    it); ``clear`` empties all first. Returns the heartbeat knobs."""
    unknown = set(lists) - set(KNOB_LISTS)
    if unknown:
        raise ValueError("unknown heartbeat knob(s): "
                         + ", ".join(sorted(unknown)))
    knobs = inject.read(knobs_path)
    section = {} if clear else dict(knobs.get(KNOBS_SECTION) or {})
    for key, values in lists.items():
        if values is None or isinstance(values, str):
            values = [values] if values else []
        section[key] = sorted({str(v) for v in values})
    if max_amphorae is not None:
        if int(max_amphorae) < 0:
            raise ValueError("max_amphorae must be >= 0")
        section["max_amphorae"] = int(max_amphorae)
    knobs[KNOBS_SECTION] = {k: v for k, v in section.items() if v != []}
    inject.write(knobs_path, knobs)
    return knobs[KNOBS_SECTION]


def read_knobs(knobs_path):
    """The heartbeat knobs (lists as sets), defaults filled in."""
    try:
        section = inject.read(knobs_path).get(KNOBS_SECTION) or {}
    except (OSError, ValueError):
        section = {}
    out = {k: set(section.get(k) or ()) for k in KNOB_LISTS}
    out["max_amphorae"] = int(section.get("max_amphorae",
                                          DEFAULT_MAX_AMPHORAE))
    return out


def wrap_envelope(obj, key):
    """Octavia's heartbeat envelope: zlib JSON + hex HMAC-SHA256."""
    from octavia.amphorae.backends.health_daemon import status_message
    return status_message.wrap_envelope(obj, key)


# -- what the amphorae look like -----------------------------------------

_AMPHORAE = sa.text(
    "SELECT a.id, a.compute_id, a.load_balancer_id, a.image_id"
    " FROM amphora a JOIN load_balancer lb ON a.load_balancer_id = lb.id"
    " WHERE a.status IN ('ALLOCATED', 'FAILOVER_STOPPED')"
    " AND lb.provisioning_status != 'DELETED' ORDER BY a.created_at, a.id")
_STILL_LIVE = sa.text(
    "SELECT id FROM amphora WHERE id IN :ids"
    " AND status IN ('ALLOCATED', 'FAILOVER_STOPPED')").bindparams(
        sa.bindparam("ids", expanding=True))
_LISTENERS = sa.text(
    "SELECT id, load_balancer_id, default_pool_id FROM listener"
    " WHERE enabled = 1 AND load_balancer_id IN :lbs").bindparams(
        sa.bindparam("lbs", expanding=True))
_L7_POOLS = sa.text(
    "SELECT l7.listener_id, l7.redirect_pool_id FROM l7policy l7"
    " JOIN listener l ON l.id = l7.listener_id"
    " WHERE l7.enabled = 1 AND l7.redirect_pool_id IS NOT NULL"
    " AND l.load_balancer_id IN :lbs").bindparams(
        sa.bindparam("lbs", expanding=True))
_POOLS = sa.text(
    "SELECT p.id, hm.id FROM pool p"
    " LEFT JOIN health_monitor hm ON hm.pool_id = p.id"
    " WHERE p.load_balancer_id IN :lbs").bindparams(
        sa.bindparam("lbs", expanding=True))
_MEMBERS = sa.text(
    "SELECT m.id, m.pool_id FROM member m JOIN pool p ON p.id = m.pool_id"
    " WHERE m.enabled = 1 AND p.load_balancer_id IN :lbs").bindparams(
        sa.bindparam("lbs", expanding=True))


def read_amphorae(engine):
    """[(amphora id, compute id, load balancer id, image id)] of the live
    amphorae, oldest first."""
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(_AMPHORAE)]


def read_details(engine, amp_ids, lb_ids):
    """(the live ones of ``amp_ids``, {lb_id: [(listener_id, [pool_id,
    ...])]}, {pool_id: (has_monitor, [member_id, ...])}), read right
    before sending: a heartbeat reports what the amphora has now."""
    lbs = {"lbs": sorted(lb_ids) or [""]}
    with engine.connect() as conn:
        live = {r[0] for r in conn.execute(_STILL_LIVE,
                                           {"ids": sorted(amp_ids) or [""]})}
        listeners, pools_of = {}, {}
        for lid, lb_id, default_pool in conn.execute(_LISTENERS, lbs):
            listeners.setdefault(lb_id, []).append(lid)
            if default_pool:
                pools_of.setdefault(lid, []).append(default_pool)
        for lid, pool_id in conn.execute(_L7_POOLS, lbs):
            if pool_id not in pools_of.setdefault(lid, []):
                pools_of[lid].append(pool_id)
        pools = {pool_id: (monitor is not None, [])
                 for pool_id, monitor in conn.execute(_POOLS, lbs)}
        for member_id, pool_id in conn.execute(_MEMBERS, lbs):
            if pool_id in pools:
                pools[pool_id][1].append(member_id)
    by_lb = {lb: [(lid, pools_of.get(lid, [])) for lid in lids]
             for lb, lids in listeners.items()}
    return live, by_lb, pools


def read_agent_configs(sandbox_dir):
    """{compute_id: (controllers, interval, key, source)} from the
    sandbox drivers' records."""
    path = Path(sandbox_dir) / "compute.db"
    if not path.exists():
        return {}
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        try:
            rows = conn.execute(
                "SELECT compute_id, controllers, heartbeat_interval,"
                " heartbeat_key, source FROM agent_config").fetchall()
        finally:
            conn.close()
    except sqlite3.Error:
        return {}
    return {cid: (json.loads(ctl or "[]"), interval, key, source)
            for cid, ctl, interval, key, source in rows}


def build_message(amp_id, seq, lb_listeners, pools, bad):
    """The health daemon's version-3 message for one amphora."""
    msg = {"id": amp_id, "seq": seq, "listeners": {}, "pools": {},
           "ver": MSG_VER}
    for listener_id, pool_ids in lb_listeners:
        msg["listeners"][listener_id] = {
            "status": "OPEN",
            "stats": {"tx": 2048, "rx": 1024, "conns": 1, "totconns": 2,
                      "ereq": 0}}
        for pool_id in pool_ids:
            if pool_id not in pools:
                continue
            monitored, members = pools[pool_id]
            if bad:
                member_status = "DOWN"
            else:
                member_status = "UP" if monitored else "no check"
            status = "DOWN" if bad and members else "UP"
            msg["pools"][f"{pool_id}:{listener_id}"] = {
                "status": status,
                "members": {m: member_status for m in members}}
    return msg


def _address(text):
    host, _, port = text.rpartition(":")
    return host.strip("[] "), int(port)


class StandIn:
    """The heartbeat loop of one sandbox."""

    TICK = 0.25          # seconds between rounds
    REFRESH = 2.0        # seconds between full reads of the fleet

    def __init__(self, sandbox_dir, db_url, default_controllers,
                 default_key, default_interval):
        self.dir = Path(sandbox_dir)
        self.engine = sa.create_engine(db_url, pool_pre_ping=True,
                                       pool_size=1, max_overflow=0)
        self.defaults = (list(default_controllers), float(default_interval),
                         default_key, "sandbox default")
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.amphorae = []
        self.details = ({}, {})
        self.configs = {}
        self.places = {}          # amphora id -> None (ordered, sticky)
        self.seq = {}
        self.next_due = {}
        self.sent = {}
        self.db_down = False
        self.refreshed = float("-inf")
        self.status_written = float("-inf")

    def _db_error(self, exc):
        if not self.db_down:
            LOG.warning("cannot read Octavia's database (%s); keeping "
                        "the last known amphorae", exc.__class__.__name__)
        self.db_down = True

    def refresh(self, now):
        """Read the amphorae, their load balancers and configurations."""
        self.refreshed = now
        self.configs = read_agent_configs(self.dir)
        try:
            self.amphorae = read_amphorae(self.engine)
        except sa.exc.SQLAlchemyError as exc:
            self._db_error(exc)
            return
        if self.db_down:
            LOG.info("database readable again")
        self.db_down = False

    def _details(self, due):
        """Live amphorae among ``due`` and their load balancers' details
        (the last ones read, while the database cannot be read)."""
        amp_ids = {d[0] for d in due}
        if not amp_ids:
            return amp_ids, {}, {}
        if not self.db_down:
            try:
                live, by_lb, pools = read_details(
                    self.engine, amp_ids, {d[1] for d in due})
                self.details[0].update(by_lb)
                self.details[1].update(pools)
                return live, by_lb, pools
            except sa.exc.SQLAlchemyError as exc:
                self._db_error(exc)
        return (amp_ids, *self.details)

    def round(self, now):
        """Send every heartbeat that is due."""
        if now - self.refreshed >= self.REFRESH:
            self.refresh(now)
        knobs = read_knobs(self.dir / "knobs.json")
        amps = self.amphorae
        live = {a[0] for a in amps}
        for amp_id in [a for a in self.places if a not in live]:
            del self.places[amp_id]
        for amp_id in (a[0] for a in amps):
            if len(self.places) >= knobs["max_amphorae"]:
                break
            self.places.setdefault(amp_id, None)
        for gone in [a for a in self.next_due if a not in self.places]:
            self.next_due.pop(gone)
            self.sent.pop(gone, None)
            self.seq.pop(gone, None)
        report, due = {}, []
        for amp_id, compute_id, lb_id, image_id in amps:
            if amp_id not in self.places:
                continue
            controllers, _interval, key, source = self.configs.get(
                compute_id, self.defaults)
            silent = (amp_id in knobs["silent_amphorae"]
                      or lb_id in knobs["silent_load_balancers"])
            bad = image_id in knobs["bad_images"]
            report[amp_id] = {"load_balancer_id": lb_id, "image_id": image_id,
                              "controllers": controllers, "source": source,
                              "silent": silent, "bad_image": bad}
            if not silent and now >= self.next_due.get(amp_id, 0.0):
                due.append((amp_id, lb_id, controllers, key, bad))
        still, by_lb, pools = self._details(due)
        for amp_id, lb_id, controllers, key, bad in due:
            if amp_id not in still:
                continue
            self._send(amp_id, build_message(
                amp_id, self.seq.get(amp_id, 0), by_lb.get(lb_id, []),
                pools, bad), controllers, key or self.defaults[2])
            self.next_due[amp_id] = now + max(0.2, self.defaults[1])
        for amp_id, entry in report.items():
            entry["sent"] = self.sent.get(amp_id, 0)
        if now - self.status_written >= 1.0:
            self._write_status(report, now)

    def _send(self, amp_id, msg, controllers, key):
        self.seq[amp_id] = msg["seq"] + 1
        envelope = wrap_envelope(msg, key)
        for controller in controllers:
            try:
                self.sock.sendto(envelope, _address(controller))
            except (OSError, ValueError) as exc:
                LOG.warning("amphora %s: cannot send to %s: %s", amp_id,
                            controller, exc)
        self.sent[amp_id] = self.sent.get(amp_id, 0) + 1

    def _write_status(self, report, now):
        self.status_written = now
        path = self.dir / STATUS_FILE
        tmp = path.with_name(f".{STATUS_FILE}.tmp")
        tmp.write_text(json.dumps({"time": time.time(),
                                   "database_readable": not self.db_down,
                                   "amphorae": report}, sort_keys=True))
        os.replace(tmp, path)

    def run(self, stop=lambda: False):
        while not stop():
            self.round(time.monotonic())
            time.sleep(self.TICK)


def read_status(sandbox_dir):
    """The stand-in's last status report ({} before its first round)."""
    try:
        return json.loads((Path(sandbox_dir) / STATUS_FILE).read_text())
    except (OSError, ValueError):
        return {}


def _sandbox_defaults(sandbox_dir):
    state = json.loads((Path(sandbox_dir) / "sandbox.json").read_text())
    health = state.get("health", {})
    settings = health.get("settings", {})
    controllers = [f"127.0.0.1:{state['api_port'] + 2}"]
    interval = settings.get("heartbeat_interval", 2)
    return state["db_url"], controllers, interval


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m owtools.sandbox.heartbeats",
        description="Heartbeat for every live amphora of a sandbox.")
    parser.add_argument("--dir", required=True, help="sandbox directory")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stdout,
                        format="%(asctime)s %(levelname)s %(message)s")
    from owtools.sandbox.health import HEARTBEAT_KEY
    try:
        db_url, controllers, interval = _sandbox_defaults(args.dir)
    except (OSError, ValueError, KeyError) as exc:
        print(f"heartbeats: not a started sandbox: {args.dir} ({exc})",
              file=sys.stderr)
        return 2
    standin = StandIn(args.dir, db_url, controllers, HEARTBEAT_KEY,
                      interval)
    LOG.info("heartbeat stand-in for %s started", args.dir)
    try:
        standin.run()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
