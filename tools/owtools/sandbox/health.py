"""Octavia's real health manager in the sandbox, and its settings.

``sb.health()`` (a :class:`HealthControl`) starts, restarts and stops
stock ``octavia-health-manager`` processes for a sandbox and the
amphora-agent stand-in (``owtools.sandbox.heartbeats``) that heartbeats to
them. The sandbox's own health manager is ``main``, on UDP API port + 2;
:meth:`HealthControl.add_manager` starts more (API port + 3 ... + 6), as a
deployment with several controllers has. Settings live in the sandbox
state and in ``health.conf`` (read by the worker and every health manager
after ``octavia.conf``) plus ``hm-<name>.conf`` (that manager's own
``bind_port``)::

    sb.health().restart(failover_threshold=2)      # the circuit breaker
    sb.health().settings()                         # what is in force
    addr = sb.health().add_manager("second")       # "127.0.0.1:PORT"
    sb.health().set_controllers([addr])            # worker reloads (HUP):
    # the next amphora builds and config pushes carry the new list
    sb.health().stop_manager("second")

Failures: a health manager that exits or does not bind its port within
the start-up deadline raises SandboxError with the tail of its log; a
manager name that does not exist raises SandboxError.
"""

import contextlib
import os
import signal
import socket
import sys
import time

from owtools.sandbox import procs
from owtools.sandbox.config import SandboxError

HEARTBEAT_KEY = "sandbox-heartbeat-key"   # as in octavia.conf.template
HEALTH_CONF = "health.conf"
MAIN = "main"
WORKER_QUEUE = "octavia_provisioning_v2"
EXTRA_PORTS = range(3, 7)        # offsets from the API port
# Fast enough for tests, slow enough for a loaded 2-core machine (the
# test tiers share it): an amphora is stale after 10 missed heartbeats.
DEFAULTS = {"heartbeat_interval": 2, "heartbeat_timeout": 20,
            "health_check_interval": 2, "failover_threshold": None}


def _pid_key(name):
    return "health-manager" if name == MAIN else f"health-manager-{name}"


def udp_port_free(port):
    """True if nothing is bound to UDP 127.0.0.1:port."""
    with contextlib.closing(socket.socket(socket.AF_INET,
                                          socket.SOCK_DGRAM)) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class HealthControl:
    """Health managers and heartbeat settings of one sandbox."""

    def __init__(self, sandbox):
        self.sb = sandbox

    # -- settings ----------------------------------------------------

    @property
    def _state(self):
        return self.sb.state.setdefault("health", {})

    def settings(self):
        """The health settings in force (DEFAULTS overridden by the
        sandbox's), the controller list and the managers {name: port}."""
        out = dict(DEFAULTS)
        out.update(self._state.get("settings", {}))
        out["controllers"] = list(self.controllers())
        out["managers"] = dict(self._state.get("managers", {}))
        return out

    def controllers(self):
        """The ``controller_ip_port_list`` builds and pushes get now."""
        default = [f"127.0.0.1:{self.sb.state['api_port'] + 2}"]
        return self._state.get("controllers") or default

    def _write_conf(self):
        s = self.settings()
        lines = ["# Written by the sandbox (owtools.sandbox.health).",
                 "[health_manager]",
                 f"controller_ip_port_list = {', '.join(s['controllers'])}",
                 # Octavia drops a heartbeat processed later than its
                 # heartbeat_interval after arrival; on a loaded machine
                 # that loses amphorae that did send. The stand-in sends
                 # every heartbeat_interval of the sandbox's settings;
                 # Octavia's is the timeout, its tolerance for lateness.
                 f"heartbeat_interval = {int(s['heartbeat_timeout'])}",
                 f"heartbeat_timeout = {int(s['heartbeat_timeout'])}",
                 f"health_check_interval = "
                 f"{int(s['health_check_interval'])}",
                 # One process each for health and statistics updates
                 # (the default is one per CPU).
                 "health_update_threads = 2",
                 "stats_update_threads = 1"]
        if s["failover_threshold"] is not None:
            lines.append(
                f"failover_threshold = {int(s['failover_threshold'])}")
        tmp = self.sb.dir / (HEALTH_CONF + ".tmp")
        tmp.write_text("\n".join(lines) + "\n")
        os.replace(tmp, self.sb.dir / HEALTH_CONF)

    def conf_args(self):
        """``--config-file`` arguments the worker adds after octavia.conf."""
        if not (self.sb.dir / HEALTH_CONF).exists():
            self._write_conf()
        return ["--config-file", str(self.sb.dir / HEALTH_CONF)]

    def configure(self, **settings):
        """Change heartbeat_interval, heartbeat_timeout,
        health_check_interval or failover_threshold (None: Octavia's
        default) for the managers started from now on."""
        unknown = set(settings) - set(DEFAULTS)
        if unknown:
            raise SandboxError("unknown health setting(s): "
                               + ", ".join(sorted(unknown)))
        for key, value in settings.items():
            if value is not None and (int(value) != value or value < 1):
                raise SandboxError(f"{key} must be a whole number >= 1")
        current = self._state.setdefault("settings", {})
        current.update(settings)
        self._write_conf()
        self.sb._save_state()
        if "heartbeat_interval" in settings and self.sb._alive(
                "heartbeats"):
            self.restart_heartbeats()

    def _reload_worker(self, timeout=120.0):
        """SIGHUP the worker and wait until a new child consumes: the
        worker mutates its configuration and replaces its children
        gracefully; a cast the old child takes first still sees the old
        values (as in a real deployment)."""
        pid = self.sb.state.get("pids", {}).get("worker")
        if not (pid and self.sb._alive("worker")):
            return
        old = _children(pid)
        os.kill(pid, signal.SIGHUP)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            now = _children(pid)
            if now and not (now & old) and self._consumers() > 0:
                return
            time.sleep(0.2)
        raise SandboxError("the worker did not reload in time; see "
                           f"{self.sb.log_dir / 'worker.log'}")

    def _consumers(self):
        import kombu
        url = self.sb.transport_url
        if url.startswith("rabbit://"):
            url = "amqp://" + url[len("rabbit://"):]
        try:
            with kombu.Connection(url, connect_timeout=2) as conn:
                return conn.channel().queue_declare(
                    WORKER_QUEUE, passive=True).consumer_count
        except Exception:
            return 0

    # -- processes ---------------------------------------------------

    def start(self, wait=True, timeout=120.0):
        """Start the main health manager and the heartbeat stand-in."""
        self._write_conf()
        self._spawn_manager(MAIN, self.sb.state["api_port"] + 2)
        self._spawn_heartbeats()
        if wait:
            self.wait_ready(time.monotonic() + timeout)

    def _spawn_manager(self, name, port):
        conf = self.sb.dir / f"hm-{name}.conf"
        conf.write_text("[health_manager]\nbind_ip = 127.0.0.1\n"
                        f"bind_port = {port}\n")
        key = _pid_key(name)
        self.sb._spawn(key, [
            self.sb._bin("octavia-health-manager"),
            "--config-file", str(self.sb.conf_path),
            "--config-file", str(self.sb.dir / HEALTH_CONF),
            "--config-file", str(conf),
            "--log-file", str(self.sb.log_dir / f"{key}.log")])
        self._state.setdefault("managers", {})[name] = port
        self.sb._save_state()

    def _spawn_heartbeats(self):
        self.sb._spawn("heartbeats", [
            sys.executable, "-m", "owtools.sandbox.heartbeats",
            "--dir", str(self.sb.dir)])
        self.sb._save_state()

    def restart_heartbeats(self):
        """Restart the amphora-agent stand-in (sequence numbers and
        counters start again, as after an amphora agent restart)."""
        self._stop_key("heartbeats")
        self._spawn_heartbeats()

    def stop_heartbeats(self):
        """Stop the amphora-agent stand-in: no amphora heartbeats."""
        self._stop_key("heartbeats")
        self.sb._save_state()

    def wait_ready(self, deadline, names=None):
        """Wait until each manager has bound its UDP port."""
        managers = self._state.get("managers", {})
        waiting = {n: managers[n] for n in (names or managers)}
        while waiting:
            for name, port in list(waiting.items()):
                key = _pid_key(name)
                if not self.sb._alive(key):
                    raise SandboxError(
                        f"{key} exited during start-up; see "
                        f"{self.sb.log_dir}\n"
                        + _tail(self.sb.log_dir / f"{key}.out"))
                if not udp_port_free(port):
                    waiting.pop(name)
            if not waiting:
                return
            if time.monotonic() > deadline:
                raise SandboxError(f"health manager(s) {', '.join(waiting)}"
                                   " did not bind in time")
            time.sleep(0.1)

    def _stop_key(self, key):
        pid = self.sb.state.get("pids", {}).get(key)
        started = self.sb.state.get("starts", {}).get(key)
        if pid:
            procs.stop_pids({pid: started})
        self.sb.state.get("pids", {}).pop(key, None)
        self.sb.state.get("starts", {}).pop(key, None)
        (self.sb.run_dir / f"{key}.pid").unlink(missing_ok=True)

    def restart(self, name=MAIN, wait=True, timeout=120.0, **settings):
        """Restart health manager ``name`` (after :meth:`configure` with
        ``settings``, if any). Octavia's health manager waits one
        ``heartbeat_timeout`` after start before its first stale check."""
        if settings:
            self.configure(**settings)
        port = self._port(name)
        self._stop_key(_pid_key(name))
        self._spawn_manager(name, port)
        if wait:
            self.wait_ready(time.monotonic() + timeout, [name])

    def add_manager(self, name, wait=True, timeout=120.0):
        """Start another health manager; returns its "127.0.0.1:PORT"."""
        managers = self._state.setdefault("managers", {})
        if name in managers and self.sb._alive(_pid_key(name)):
            return f"127.0.0.1:{managers[name]}"
        used = set(managers.values())
        base = self.sb.state["api_port"]
        for offset in EXTRA_PORTS:
            port = base + offset
            if port not in used and udp_port_free(port):
                break
        else:
            raise SandboxError("no free port for another health manager")
        self._spawn_manager(name, port)
        if wait:
            self.wait_ready(time.monotonic() + timeout, [name])
        return f"127.0.0.1:{port}"

    def stop_manager(self, name):
        """Stop health manager ``name`` (its port is given up)."""
        self._port(name)
        self._stop_key(_pid_key(name))
        self._state["managers"].pop(name)
        self.sb._save_state()

    def _port(self, name):
        try:
            return self._state["managers"][name]
        except KeyError:
            raise SandboxError(f"no health manager {name!r} in sandbox "
                               f"{self.sb.name}") from None

    def address(self, name=MAIN):
        """The "127.0.0.1:PORT" health manager ``name`` listens on."""
        return f"127.0.0.1:{self._port(name)}"

    def set_controllers(self, addresses):
        """Set ``controller_ip_port_list`` for the worker (and managers'
        own builds) and make the worker reload it (SIGHUP: Octavia's
        option is mutable); returns once a reloaded worker consumes.
        Amphorae already running keep sending to
        their old list until a config push (``PUT
        /v2/octavia/amphorae/{id}/config``) reaches them."""
        addresses = [str(a).strip() for a in addresses if str(a).strip()]
        if not addresses:
            raise SandboxError("at least one health manager address")
        self._state["controllers"] = addresses
        self._write_conf()
        self.sb._save_state()
        self._reload_worker()

    def reset_controllers(self):
        """Back to the main health manager alone."""
        self._state.pop("controllers", None)
        self.set_controllers(self.controllers())
        self._state.pop("controllers", None)
        self.sb._save_state()


def _children(pid):
    """PIDs of the live children of ``pid``."""
    out = set()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", encoding="ascii",
                      errors="replace") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[1] == str(pid) and fields[0] not in ("Z", "X"):
            out.add(int(entry.name))
    return out


def _tail(path, lines=15):
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])
