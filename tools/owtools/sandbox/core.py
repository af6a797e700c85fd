"""The sandbox: a throw-away stock Octavia control plane on loopback.

``Sandbox(name).start()`` brings up, each with its data, logs and PID file
under the sandbox directory: MariaDB and RabbitMQ (through
``owtools.services``), the Nova/Glance stand-in (``owtools.standin``, when
present), ``octavia-worker`` and the Octavia API (stock pecan app, threaded
WSGI server); it migrates the ``octavia`` database, waits until the API
answers and the worker consumes, creates the sandbox flavors and writes a
clouds.yaml entry; it also starts Octavia's health manager and the
amphora-agent stand-in that heartbeats to it (``owtools.sandbox.health``,
``owtools.sandbox.heartbeats``). ``stop()`` ends exactly those processes.
"""

import importlib.metadata
import json
import os
from pathlib import Path
import subprocess
import sys
import threading
import time

from owtools.sandbox import config, procs
from owtools.sandbox.api import ApiError, OctaviaApi
from owtools.sandbox.config import SandboxError

DRIVERS_DIST_NAME = "ow-sandbox-drivers"
STATE_FILE = "sandbox.json"
KNOBS_FILE = "knobs.json"
STANDIN_DB = "standin.db"
# Octavia's RPC topic for the v2 worker (octavia.common.constants).
WORKER_QUEUE = "octavia_provisioning_v2"
FLAVORS = {"single": "SINGLE", "active-standby": "ACTIVE_STANDBY"}


def log_tail(path, lines=15):
    """The last ``lines`` lines of a log file ('' if it does not exist)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 16384))
            text = fh.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def ensure_drivers_installed(python=None):
    """Install the sandbox driver distribution (editable, no deps) into the
    virtualenv unless the current version from this tree is there."""
    python = python or sys.executable
    want = _dist_version()
    try:
        dist = importlib.metadata.distribution(DRIVERS_DIST_NAME)
        url = json.loads(dist.read_text("direct_url.json") or "{}").get("url")
        if (dist.version == want
                and url == config.DRIVERS_DIST.as_uri()):
            return False
    except importlib.metadata.PackageNotFoundError:
        pass
    cmd = [python, "-m", "pip", "install", "-q", "--no-deps", "-e",
           str(config.DRIVERS_DIST)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode:
        raise SandboxError("installing the sandbox drivers failed: "
                           + (res.stderr.strip().splitlines() or ["?"])[-1])
    importlib.invalidate_caches()
    return True


def _dist_version():
    pyproject = config.DRIVERS_DIST / "pyproject.toml"
    for line in pyproject.read_text().splitlines():
        if line.startswith("version"):
            return line.split("=", 1)[1].strip().strip('"')
    raise SandboxError("drivers_dist/pyproject.toml has no version")


class Sandbox:
    """One sandbox, identified by its directory (default: per name).

    Attributes after ``start()`` (or for a running sandbox, after
    construction): ``api_url``, ``db_url``, ``transport_url``,
    ``standin_url`` (None without stand-in), ``cloud_name``,
    ``clouds_yaml``, ``conf_path``, ``dir``.
    """

    def __init__(self, name="sandbox", directory=None):
        self.name = name
        self.dir = Path(directory or config.default_dir(name)).resolve()
        self.cloud_name = name
        self.log_dir = self.dir / "log"
        self.run_dir = self.dir / "run"
        self.conf_path = self.dir / "octavia.conf"
        self.clouds_yaml = self.dir / "clouds.yaml"
        self.knobs_path = self.dir / KNOBS_FILE
        self.state = self._load_state()
        self._services = []

    # -- state ---------------------------------------------------------

    def _load_state(self):
        try:
            return json.loads((self.dir / STATE_FILE).read_text())
        except (OSError, ValueError):
            return {}

    def _save_state(self):
        tmp = self.dir / (STATE_FILE + ".tmp")
        tmp.write_text(json.dumps(self.state, indent=2, sort_keys=True))
        os.replace(tmp, self.dir / STATE_FILE)

    @property
    def api_url(self):
        port = self.state.get("api_port")
        return f"http://127.0.0.1:{port}" if port else None

    @property
    def db_url(self):
        return self.state.get("db_url")

    @property
    def transport_url(self):
        return self.state.get("transport_url")

    @property
    def standin_url(self):
        port = self.state.get("standin_port")
        return f"http://127.0.0.1:{port}" if port else None

    @property
    def api(self):
        """An :class:`OctaviaApi` client for this sandbox."""
        if not self.api_url:
            raise SandboxError(f"sandbox {self.name} is not started")
        return OctaviaApi(self.api_url)

    def env(self):
        """Environment of the processes the sandbox starts."""
        env = dict(os.environ)
        env[procs.ENV_DIR] = str(self.dir)
        path = env.get("PYTHONPATH")
        env["PYTHONPATH"] = (str(config.TOOLS_DIR)
                             + (f":{path}" if path else ""))
        for key in [k for k in env if k.startswith("OS_")]:
            del env[key]
        return env

    def pids(self):
        """{process name: pid} of the processes this sandbox started."""
        return dict(self.state.get("pids", {}))

    def _alive(self, key):
        pid = self.state.get("pids", {}).get(key)
        started = self.state.get("starts", {}).get(key)
        return procs.is_same(pid, started) and procs.alive(pid)

    def running(self):
        """True if the API and worker processes of this sandbox run."""
        return all(self._alive(k) for k in ("api", "worker"))

    # -- start -----------------------------------------------------------

    def start(self, *, db_url=None, transport_url=None, user_clouds=True,
              standin=True, timeout=90.0, debug=True, progress=None,
              health=None, fast_failovers=False):
        """Start everything; returns self. Raises SandboxError on failure
        (with the tail of the failing log), after stopping what it started.
        ``health``: settings for :meth:`HealthControl.configure`;
        ``fast_failovers``: benchmarks only, see :mod:`.fastfailover`.
        """
        say = progress or (lambda msg: None)
        t0 = time.monotonic()
        if self.running():
            raise SandboxError(f"sandbox {self.name} already runs at "
                               f"{self.api_url} ({self.dir}); stop it first")
        for sub in (self.dir, self.log_dir, self.run_dir,
                    self.dir / "lock", self.dir / "certs"):
            sub.mkdir(parents=True, exist_ok=True)
        self.state = {"name": self.name, "dir": str(self.dir), "pids": {},
                      "starts": {}, "services": {}}
        if health:
            self.state["health"] = {"settings": dict(health)}
        if fast_failovers:
            self.state["fast_failovers"] = True
        try:
            self._start(db_url, transport_url, user_clouds, standin,
                        timeout, debug, say, t0)
        except BaseException:
            self.stop(quiet=True)
            raise
        self.state["started_at"] = time.time()
        self.state["startup_seconds"] = round(time.monotonic() - t0, 2)
        self._save_state()
        say(f"cloud {self.name} up in {self.state['startup_seconds']}s:"
            f" {self.api_url}")
        return self

    def _start(self, db_url, transport_url, user_clouds, standin, timeout,
               debug, say, t0):
        deadline = t0 + timeout
        errors = {}

        def bg(key, func):
            def run():
                try:
                    func()
                except BaseException as exc:  # reported below
                    errors[key] = exc
            thread = threading.Thread(target=run, name=f"sandbox-{key}",
                                      daemon=True)
            thread.start()
            return thread

        # RabbitMQ takes longest: start it first, meanwhile do the rest.
        rabbit = None
        if transport_url:
            self.state["transport_url"] = transport_url
        else:
            rabbit = bg("rabbitmq", self._start_rabbitmq)
        install = bg("drivers", ensure_drivers_installed)
        if db_url:
            self.state["db_url"] = db_url
        else:
            self._start_mariadb()
        api_port = config.choose_api_port(self.name)
        self.state["api_port"] = api_port
        self._save_state()
        config.make_ca(self.dir / "certs")
        self._create_database()
        self._render(debug)
        say(f"migrating database ({time.monotonic() - t0:.1f}s)")
        self._run_logged([self._bin("octavia-db-manage"), "--config-file",
                          str(self.conf_path), "upgrade", "head"],
                         "db-manage.log", deadline)
        for key, thread in (("drivers", install), ("rabbitmq", rabbit)):
            if thread is not None:
                thread.join(max(1.0, deadline - time.monotonic()))
            if key in errors:
                raise errors[key]
        if rabbit is not None and not self.transport_url:
            raise SandboxError("RabbitMQ did not start in time")
        self._render(debug)
        say(f"starting octavia ({time.monotonic() - t0:.1f}s)")
        if standin:
            self._start_standin()
        self._spawn("worker", [*self._worker_command(), "--config-file",
                               str(self.conf_path),
                               *self.health().conf_args(), "--log-file",
                               str(self.log_dir / "worker.log")])
        self._spawn("api", [sys.executable, "-m", "owtools.sandbox.apiserver",
                            "--config-file", str(self.conf_path),
                            "--log-file", str(self.log_dir / "api.log")])
        self._save_state()
        self._wait_ready(deadline)
        # After the API and worker: its start-up (imports) would slow
        # theirs; heartbeats sent before it binds are lost, as UDP is.
        # OW_SANDBOX_HEALTH=off leaves both out (to measure their cost).
        if os.environ.get("OW_SANDBOX_HEALTH", "").lower() != "off":
            self.health().start(wait=False)
        self._create_flavors()
        self._write_clouds(user_clouds)

    def _worker_command(self):
        if self.state.get("fast_failovers"):
            return [sys.executable, "-m", "owtools.sandbox.fastfailover"]
        return [self._bin("octavia-worker")]

    def _bin(self, name):
        path = Path(sys.executable).parent / name
        if not path.exists():
            raise SandboxError(f"{name} not found next to {sys.executable};"
                               " run tools/bootstrap")
        return str(path)

    def _run_logged(self, argv, log_name, deadline):
        log = self.log_dir / log_name
        with open(log, "ab") as fh:
            try:
                res = subprocess.run(
                    argv, stdout=fh, stderr=subprocess.STDOUT, env=self.env(),
                    cwd=self.dir,
                    timeout=max(5.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                raise SandboxError(f"{Path(argv[0]).name} timed out; see {log}"
                                   f"\n{log_tail(log)}") from None
        if res.returncode:
            raise SandboxError(f"{Path(argv[0]).name} failed (exit "
                               f"{res.returncode}); see {log}\n"
                               + log_tail(log))

    def _spawn(self, key, argv):
        proc = procs.spawn(argv, log_path=self.log_dir / f"{key}.out",
                           env=self.env(), cwd=self.dir,
                           pid_path=self.run_dir / f"{key}.pid")
        self.state["pids"][key] = proc.pid
        self.state["starts"][key] = procs.start_time(proc.pid)
        return proc

    def _render(self, debug):
        config.render_octavia_conf(
            self.conf_path, name=self.name, api_port=self.state["api_port"],
            db_url=self.db_url, transport_url=self.transport_url or "",
            cert_dir=self.dir / "certs", lock_dir=self.dir / "lock",
            debug=debug)

    # -- services (MariaDB, RabbitMQ) -----------------------------------

    def _start_mariadb(self):
        from owtools.sandbox import backing
        server = backing.start_mariadb(self.dir / "mariadb")
        self._services.append(("mariadb", server))
        self.state["services"]["mariadb"] = backing.describe(server)
        self.state["db_url"] = backing.mariadb_url(server, "octavia")

    def _start_rabbitmq(self):
        from owtools.sandbox import backing
        server = backing.start_rabbitmq(self.dir / "rabbitmq")
        self._services.append(("rabbitmq", server))
        self.state["services"]["rabbitmq"] = backing.describe(server)
        self.state["transport_url"] = backing.rabbitmq_url(server)

    def _create_database(self):
        from owtools.sandbox import backing
        backing.create_database(self.db_url)

    # -- stand-in --------------------------------------------------------

    def _start_standin(self):
        """Start the Nova/Glance stand-in if this tree has it."""
        import importlib.util
        if importlib.util.find_spec("owtools.standin") is None:
            return
        from owtools.standin import StandinState
        state = StandinState(str(self.dir / STANDIN_DB))
        if state.image_for(tag=config.IMAGE_TAG) is None:
            state.create_image("amphora-x64-haproxy",
                               tags=[config.IMAGE_TAG])
        port = self.state["api_port"] + 1
        self._spawn("standin", [sys.executable, "-m", "owtools.standin",
                                "serve", "--state",
                                str(self.dir / STANDIN_DB), "--port",
                                str(port), "--host", "127.0.0.1"])
        self.state["standin_port"] = port

    # -- readiness -------------------------------------------------------

    def _wait_ready(self, deadline):
        api = OctaviaApi(self.api_url, timeout=2)
        checks = {"api": api.answering, "worker": self.worker_consuming}
        if "standin" in self.state["pids"]:
            checks["standin"] = self._standin_answering
        while checks:
            for key in list(checks):
                if not procs.alive(self.state["pids"][key]):
                    if key == "standin":
                        # Optional: run without it rather than fail.
                        self.state["pids"].pop("standin")
                        self.state.pop("standin_port", None)
                        checks.pop(key)
                        continue
                    raise SandboxError(
                        f"{key} exited during start-up; see {self.log_dir}\n"
                        + log_tail(self.log_dir / f"{key}.out"))
                if checks[key]():
                    checks.pop(key)
            if not checks:
                return
            if time.monotonic() > deadline:
                raise SandboxError(
                    f"{', '.join(checks)} not ready in time; see "
                    f"{self.log_dir}\n"
                    + log_tail(self.log_dir / f"{next(iter(checks))}.out"))
            time.sleep(0.1)

    def worker_consuming(self):
        """True once the worker's RPC queue exists on the broker (a cast
        sent before that would be dropped)."""
        import kombu
        url = self.transport_url
        if url.startswith("rabbit://"):
            url = "amqp://" + url[len("rabbit://"):]
        try:
            with kombu.Connection(url,
                                  connect_timeout=2) as conn:
                conn.channel().queue_declare(WORKER_QUEUE, passive=True)
        except Exception:
            return False
        return True

    def _standin_answering(self):
        import urllib.request
        try:
            with urllib.request.urlopen(
                    f"{self.standin_url}/compute/v2.1", timeout=1):
                return True
        except OSError as exc:
            return getattr(exc, "code", None) is not None

    def _create_flavors(self):
        """Flavors ``single`` and ``active-standby`` (topology per LB)."""
        api = self.api
        existing = {f["name"] for f in api.get("/v2/lbaas/flavors")["flavors"]}
        for name, topology in FLAVORS.items():
            if name in existing:        # a restart on the same directory
                continue
            profile = api.post("/v2/lbaas/flavorprofiles", {"flavorprofile": {
                "name": f"sandbox-{name}", "provider_name": "amphora",
                "flavor_data": json.dumps(
                    {"loadbalancer_topology": topology})}})["flavorprofile"]
            api.post("/v2/lbaas/flavors", {"flavor": {
                "name": name, "flavor_profile_id": profile["id"],
                "description": f"sandbox: {topology} topology"}})

    def _write_clouds(self, user_clouds):
        entry = config.cloud_entry(self.api_url, self.standin_url)
        config.write_clouds_yaml(self.clouds_yaml, self.cloud_name, entry)
        if user_clouds:
            path, written = config.merge_user_cloud(
                self.cloud_name, entry, keep=self._user_clouds_keep)
            self.state["user_clouds_yaml"] = str(path)
            self.state["user_clouds_sha"] = written

    @property
    def _user_clouds_keep(self):
        """The user's clouds.yaml as it was before ``start`` (restored by
        ``stop`` if nothing else changed it meanwhile)."""
        return self.dir / "user-clouds.yaml.before"

    # -- stop / status ---------------------------------------------------

    def stop(self, quiet=False):
        """Stop what this sandbox started (by PID); keep its files."""
        self.state = self._load_state() or self.state
        pids = self.pids()
        starts = self.state.get("starts", {})
        stopped = procs.stop_pids({pid: starts.get(key)
                                   for key, pid in pids.items()})
        from owtools.sandbox import backing
        backing.stop_all(self, quiet=quiet)
        for key in pids:
            (self.run_dir / f"{key}.pid").unlink(missing_ok=True)
        user_file = self.state.get("user_clouds_yaml")
        if user_file and self.api_url:
            try:
                config.restore_user_cloud(
                    self.cloud_name, self.api_url, Path(user_file),
                    self.state.get("user_clouds_sha"),
                    self._user_clouds_keep)
                self.state.pop("user_clouds_yaml", None)
                self.state.pop("user_clouds_sha", None)
            except SandboxError:
                if not quiet:
                    raise
        self.state["pids"] = {}
        self.state["starts"] = {}
        self.state["services"] = {}
        self.state["stopped_at"] = time.time()
        if self.dir.exists():
            self._save_state()
        return stopped

    def status(self):
        """A dict describing the sandbox and the liveness of its processes."""
        pids = self.pids()
        alive = {k: self._alive(k) for k in pids}
        answering = bool(self.api_url) and OctaviaApi(
            self.api_url, timeout=2).answering()
        return {"name": self.name, "dir": str(self.dir),
                "running": self.running() and answering,
                "api_url": self.api_url, "api_answering": answering,
                "standin_url": self.standin_url, "db_url": self.db_url,
                "transport_url": self.transport_url,
                "clouds_yaml": str(self.clouds_yaml),
                "cloud_name": self.cloud_name, "processes": pids,
                "alive": alive, "services": self.state.get("services", {}),
                "startup_seconds": self.state.get("startup_seconds")}

    # -- clients, injection, accounting, seeding -------------------------

    def connect(self):
        """An openstacksdk Connection to this sandbox (its own clouds.yaml,
        ignoring the user's and the OS_* environment)."""
        import openstack.config
        import openstack.connection
        cfg = openstack.config.OpenStackConfig(
            config_files=[str(self.clouds_yaml)], vendor_files=[],
            load_envvars=False)
        return openstack.connection.Connection(
            config=cfg.get_one(cloud=self.cloud_name))

    def backing_service(self, name):
        """The backing server ``name`` (``mariadb``, ``rabbitmq``) that this
        process started for the sandbox: chaos tests kill and start it."""
        for key, server in self._services:
            if key == name:
                return server
        raise SandboxError(f"{name} was not started by this sandbox in "
                           "this process")

    def health(self):
        """A :class:`owtools.sandbox.health.HealthControl`: the health
        managers and their settings."""
        from owtools.sandbox.health import HealthControl
        return HealthControl(self)

    def heartbeat_knobs(self, **knobs):
        """Set the amphora-agent stand-in's knobs (see
        :func:`owtools.sandbox.heartbeats.set_knobs`)."""
        from owtools.sandbox import heartbeats
        return heartbeats.set_knobs(self.knobs_path, **knobs)

    def inject(self, **knobs):
        """Set injection knobs (see :func:`owtools.sandbox.inject.update`)."""
        from owtools.sandbox import inject
        return inject.update(self.knobs_path, **knobs)

    def clear_injection(self):
        """Remove every delay, failure and amphora field override."""
        from owtools.sandbox import inject
        inject.clear(self.knobs_path)

    def accounting(self):
        """An :class:`owtools.sandbox.accounting.Accounting` for this
        sandbox."""
        from owtools.sandbox.accounting import Accounting
        return Accounting(self)


def check_api(url):
    """Raise SandboxError unless the API at ``url`` answers."""
    try:
        OctaviaApi(url, timeout=5).get("/")
    except ApiError as exc:
        raise SandboxError(f"the sandbox API does not answer: {exc}") from None
