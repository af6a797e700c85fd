"""The Nova + Glance stand-in, driven by real openstacksdk.

These tests need no Octavia sandbox: each starts ``python -m owtools.standin
serve`` as a subprocess on a free loopback port with a fresh state file and
talks to it with openstacksdk (``auth_type: none`` plus endpoint overrides),
while the test process writes the same state file the way the sandbox compute
driver does inside octavia-worker.
"""

import hashlib
import json
import os
import pathlib
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import openstack
import openstack.config
import openstack.connection
import pytest

import owtools
from owtools.standin import Conflict, StandinState

TOOLS_DIR = str(pathlib.Path(owtools.__file__).resolve().parent.parent)


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (TOOLS_DIR, env.get("PYTHONPATH")) if p)
    return env


class Standin:
    """A running stand-in server: its state, port, process and an sdk
    connection built from a temporary clouds.yaml."""

    def __init__(self, tmp_path, extra_args=()):
        self.state_path = str(tmp_path / "standin.db")
        self.state = StandinState(self.state_path)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "owtools.standin", "serve",
             "--state", self.state_path, "--port", "0", *extra_args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=_env())
        lines = {}
        deadline = time.monotonic() + 20
        while len(lines) < 2 and time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            key, _, value = line.strip().partition(" ")
            lines[key] = value
        if "PORT" not in lines:
            self.stop()
            raise RuntimeError("stand-in did not start: "
                               + self.proc.stderr.read())
        assert int(lines["PID"]) == self.proc.pid
        self.port = int(lines["PORT"])
        self.url = f"http://127.0.0.1:{self.port}"
        try:
            self.conn = self._connect(tmp_path)
        except BaseException:
            self.stop()
            raise

    def _connect(self, tmp_path):
        clouds = tmp_path / "clouds.yaml"
        clouds.write_text(textwrap.dedent(f"""\
            clouds:
              standin:
                auth_type: none
                compute_endpoint_override: {self.url}/compute/v2.1
                image_endpoint_override: {self.url}/image
            """))
        config = openstack.config.OpenStackConfig(
            config_files=[str(clouds)], vendor_files=[])
        return openstack.connection.Connection(
            config=config.get_one("standin"))

    def stop(self):
        """SIGTERM our own server process; returns its exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()
        self.proc.stderr.close()
        return self.proc.returncode


@pytest.fixture
def standin(tmp_path, monkeypatch):
    # Our own clouds.yaml; OS_CLIENT_CONFIG_FILE (set for the sandbox)
    # would override it.
    monkeypatch.delenv("OS_CLIENT_CONFIG_FILE", raising=False)
    s = Standin(tmp_path)
    yield s
    s.conn.close()
    assert s.stop() == 0, "stand-in did not stop cleanly on SIGTERM"


def _service(conn, host):
    (svc,) = conn.compute.services(binary="nova-compute", host=host)
    return svc


def test_version_discovery(standin):
    compute = standin.conn.compute.get_endpoint_data()
    assert compute.min_microversion == (2, 1)
    assert compute.max_microversion == (2, 95)
    image = standin.conn.image.get_endpoint_data()
    assert image.api_version[0] == 2
    assert image.url.rstrip("/").endswith("/image/v2")


def test_disable_enable_round_trip(standin):
    conn, state = standin.conn, standin.state
    svc = _service(conn, "compute-2")
    assert (svc.status, svc.state, svc.availability_zone) == (
        "enabled", "up", "az1")

    out = conn.compute.disable_service(svc, disabled_reason="evacuating")
    assert (out.status, out.disabled_reason) == ("disabled", "evacuating")
    assert not state.service_enabled("compute-2")
    again = _service(conn, "compute-2")
    assert (again.status, again.disabled_reason) == ("disabled", "evacuating")
    hyp = {h.name: h.status for h in conn.compute.hypervisors()}
    assert hyp == {"compute-1": "enabled", "compute-2": "disabled",
                   "compute-3": "enabled"}

    out = conn.compute.enable_service(None, host="compute-2",
                                      binary="nova-compute")
    assert (out.status, out.disabled_reason) == ("enabled", None)
    assert state.service_enabled("compute-2")
    journal = state.events(host="compute-2")
    assert [(e["kind"], e["via"], json.loads(e["detail"])["status"])
            for e in journal] == [("service-update", "compute-api",
                                   "disabled"),
                                  ("service-update", "compute-api",
                                   "enabled")]
    assert journal[0]["at"] <= journal[1]["at"]


def test_placement_only_on_enabled_hosts(standin):
    conn, state = standin.conn, standin.state
    conn.compute.disable_service(_service(conn, "compute-1"),
                                 disabled_reason="maintenance")
    hosts = [state.place_server(f"amp-{i}", f"amphora-{i}")
             for i in range(6)]
    assert "compute-1" not in hosts
    assert sorted(hosts) == ["compute-2"] * 3 + ["compute-3"] * 3
    # placing an existing id keeps its host
    assert state.place_server("amp-0", "amphora-0") == hosts[0]

    state.add_host("compute-9", "az2")
    assert state.place_server("amp-z", "amp", availability_zone="az2") == \
        "compute-9"
    conn.compute.disable_service(_service(conn, "compute-9"))
    with pytest.raises(Conflict, match="No valid host"):
        state.place_server("amp-y", "amp", availability_zone="az2")
    with pytest.raises(Conflict, match="No valid host"):
        state.place_server("amp-x", "amp", availability_zone="nowhere")

    conn.compute.enable_service(_service(conn, "compute-1"))
    assert state.place_server("amp-6", "amphora-6") == "compute-1"


def test_servers_by_host(standin):
    conn, state = standin.conn, standin.state
    placed = {f"amp-{i}": state.place_server(f"amp-{i}", f"amphora-{i}",
                                             image_id="img-1")
              for i in range(5)}
    state.add_server("orphan-1", "compute-3", name="amphora-orphan")
    for host in ("compute-1", "compute-2", "compute-3"):
        expected = {s for s, h in placed.items() if h == host}
        if host == "compute-3":
            expected.add("orphan-1")
        found = list(conn.compute.servers(all_projects=True,
                                          compute_host=host, details=True))
        assert {s.id for s in found} == expected
        assert set(state.servers_on(host)) == expected
        for s in found:
            assert s.compute_host == host
            assert s.hypervisor_hostname == host
            assert s.availability_zone == "az1"
            assert s.status == "ACTIVE"
    orphan = conn.compute.get_server("orphan-1")
    assert orphan.name == "amphora-orphan"
    assert conn.compute.get_server("amp-0").image["id"] == "img-1"

    # openstacksdk 4.22 also filters a ``host=`` query client-side on the
    # Server's top-level "host" attribute, which Nova never returns: a
    # host filter must be spelled ``compute_host=``. The stand-in keeps
    # that behaviour rather than hiding it.
    assert list(conn.compute.servers(all_projects=True, host="compute-3",
                                     details=True)) == []


def test_delete_server_idempotent(standin):
    conn, state = standin.conn, standin.state
    host = state.place_server("amp-1", "amphora-1")
    assert conn.compute.get_server("amp-1").compute_host == host
    conn.compute.delete_server("amp-1")
    assert state.servers_on(host) == []
    conn.compute.delete_server("amp-1")  # ignore_missing=True: no error
    with pytest.raises(openstack.exceptions.NotFoundException):
        conn.compute.delete_server("amp-1", ignore_missing=False)
    with pytest.raises(openstack.exceptions.NotFoundException):
        conn.compute.get_server("amp-1")
    assert state.delete_server("amp-1") is False
    # the journal: one deletion, through the API, from its host
    state.place_server("amp-2", "amphora-2")
    assert state.delete_server("amp-2") is True
    assert [(e["subject"], e["host"], e["via"]) for e in state.events(
        kind="server-delete")] == [("amp-1", host, "compute-api"),
                                   ("amp-2", host, "direct")]


def _new_image(conn, name, tags, data=b"qcow2-bytes"):
    return conn.image.create_image(
        name=name, disk_format="qcow2", container_format="bare", tags=tags,
        data=data, allow_duplicates=True)


def test_images_by_tag_and_current_image(standin):
    conn, state = standin.conn, standin.state
    old = _new_image(conn, "amphora-old", ["amphora"])
    new = _new_image(conn, "amphora-new", ["amphora"])
    other = _new_image(conn, "other", ["other"])
    listed = [i.id for i in conn.image.images(tag="amphora")]
    assert listed == [new.id, old.id]  # newest first
    assert [i.id for i in conn.image.images(tag="other")] == [other.id]
    assert state.image_for(tag="amphora") == new.id
    assert state.image_for(image_id=old.id) == old.id
    assert state.image_for(tag="missing") is None
    assert state.image_for(image_id="missing") is None

    conn.image.remove_tag(new, "amphora")
    assert state.image_for(tag="amphora") == old.id
    assert [i.id for i in conn.image.images(tag="amphora")] == [old.id]
    conn.image.add_tag(other, "amphora")
    assert state.image_for(tag="amphora") == other.id
    assert conn.image.get_image(other.id).tags == ["amphora", "other"]
    with pytest.raises(openstack.exceptions.NotFoundException):
        conn.image.remove_tag(new, "amphora")

    conn.image.delete_image(other)
    assert state.image_for(tag="amphora") == old.id
    with pytest.raises(openstack.exceptions.NotFoundException):
        conn.image.get_image(other.id)


def test_upload_stores_bytes_and_checksum(standin, tmp_path):
    conn, state = standin.conn, standin.state
    payload = os.urandom(200_000)
    path = tmp_path / "amphora.qcow2"
    path.write_bytes(payload)
    with open(path, "rb") as data:
        created = conn.image.create_image(
            name="amphora-x", disk_format="qcow2", container_format="bare",
            tags=["amphora"], data=data)
    image = conn.image.get_image(created.id)
    assert image.status == "active"
    assert image.size == len(payload)
    assert image.checksum == hashlib.md5(payload).hexdigest()
    assert image.hash_algo == "sha512"
    assert image.hash_value == hashlib.sha512(payload).hexdigest()
    assert conn.image.download_image(image).content == payload
    stored = state.image(image.id)
    assert pathlib.Path(stored["data_path"]).read_bytes() == payload

    # the cloud layer (find by name, POST, PUT file) works as well
    cloud = conn.create_image("amphora-y", filename=str(path),
                              disk_format="qcow2", container_format="bare",
                              tags=["amphora"], wait=True)
    assert conn.image.get_image(cloud.id).checksum == image.checksum
    assert state.image_for(tag="amphora") == cloud.id

    # a second upload is refused like Glance does
    response = image.upload(conn.image, data=b"again")
    with pytest.raises(openstack.exceptions.ConflictException):
        openstack.exceptions.raise_from_response(response)

    with pytest.raises(openstack.exceptions.BadRequestException,
                       match="disk format"):
        conn.image.create_image(name="bad", disk_format="nope",
                                container_format="bare",
                                allow_duplicates=True)


def test_errors_have_service_shaped_json_bodies(standin):
    conn = standin.conn
    r = conn.compute.get("/servers/unknown")
    assert r.status_code == 404
    assert r.json()["itemNotFound"]["code"] == 404
    r = conn.image.get("/images/unknown")
    assert r.status_code == 404
    assert r.json()["code"] == 404 and "unknown" in r.json()["message"]
    svc = _service(conn, "compute-1")
    r = conn.compute.put(f"/os-services/{svc.id}", data=b"{not json",
                         headers={"Content-Type": "application/json"},
                         microversion="2.53")
    assert r.status_code == 400 and "badRequest" in r.json()
    r = conn.compute.put(f"/os-services/{svc.id}",
                         json={"status": "sideways"}, microversion="2.53")
    assert r.status_code == 400
    r = conn.compute.put("/os-services/unknown-id",
                         json={"status": "disabled"}, microversion="2.53")
    assert r.status_code == 404
    r = conn.compute.get("/nothing-here")
    assert r.status_code == 404
    r = conn.compute.post("/servers/detail", json={})
    assert r.status_code == 405
    r = conn.compute.get("/servers/detail", microversion="3.0")
    assert r.status_code == 406
    assert r.headers["OpenStack-API-Version"] == "compute 2.1"
    r = conn.compute.get("/servers/detail", microversion="2.60")
    assert r.headers["OpenStack-API-Version"] == "compute 2.60"


_WRITER = """
import sys
from owtools.standin import StandinState
state = StandinState(sys.argv[1])
tag = sys.argv[2]
for i in range(int(sys.argv[3])):
    state.place_server(f"{tag}-{i}", f"amphora-{tag}-{i}")
    if i % 10 == 0:
        state.create_image(f"img-{tag}-{i}", ["amphora", tag], b"x" * i)
    if i % 3 == 0:
        state.delete_server(f"{tag}-{i}")
"""


def test_concurrent_writers_do_not_corrupt_state(standin):
    conn, state = standin.conn, standin.state
    count = 150
    writers = [subprocess.Popen(
        [sys.executable, "-c", _WRITER, standin.state_path, tag, str(count)],
        env=_env(), stderr=subprocess.PIPE, text=True) for tag in ("a", "b")]
    # the HTTP server reads and writes meanwhile
    svc = _service(conn, "compute-3")
    rounds = 0
    while any(w.poll() is None for w in writers):
        conn.compute.disable_service(svc, disabled_reason="flap")
        conn.compute.enable_service(svc)
        # raw reads: building hundreds of sdk objects would be the slow part
        assert conn.compute.get("/servers/detail").status_code == 200
        assert conn.image.get("/images?tag=amphora").status_code == 200
        rounds += 1
    print(f"{rounds} HTTP rounds overlapped the writers")
    assert rounds > 0
    for w in writers:
        _, err = w.communicate(timeout=60)
        assert w.returncode == 0, err

    kept = count - len(range(0, count, 3))
    servers = state.servers()
    assert len(servers) == 2 * kept
    assert len({s["id"] for s in servers}) == 2 * kept
    http_ids = {s.id for s in conn.compute.servers(all_projects=True)}
    assert http_ids == {s["id"] for s in servers}
    images = list(conn.image.images(tag="amphora"))
    assert len(images) == 2 * len(range(0, count, 10))
    assert all(i.status == "active" for i in images)
    assert state.service_enabled("compute-3")
    db = sqlite3.connect(standin.state_path)
    try:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        db.close()


def test_refuses_non_loopback_address(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "owtools.standin", "serve", "--state",
         str(tmp_path / "s.db"), "--port", "0", "--host", "0.0.0.0"],
        env=_env(), capture_output=True, text=True, timeout=30)
    assert proc.returncode == 1
    assert "loopback" in proc.stderr
