"""Files of a sandbox: directory layout, ports, certificates, octavia.conf
and clouds.yaml."""

import base64
import contextlib
import hashlib
import os
from pathlib import Path
import socket
import string
import subprocess

import yaml

PACKAGE_DIR = Path(__file__).resolve().parent
TOOLS_DIR = PACKAGE_DIR.parents[1]
REPO_DIR = TOOLS_DIR.parent
TEMPLATE = PACKAGE_DIR / "octavia.conf.template"
DRIVERS_DIST = PACKAGE_DIR / "drivers_dist"

# A system Octavia uses 9876 (API) and 5555 (health manager); the sandbox
# stays well clear: API 19876 + 10*k, stand-in API+1, health manager API+2.
BASE_API_PORT = 19876
PORT_SLOTS = 100
IMAGE_TAG = "amphora"
AMP_FLAVOR_ID = "sandbox-amphora-flavor"
MGMT_NET_ID = "6e5b2a3c-0c1e-4b5a-9d1a-0a0a0a0a0a01"


class SandboxError(Exception):
    """The sandbox cannot do what was asked; the message says why."""


def default_dir(name):
    """Where a sandbox lives unless told otherwise."""
    return REPO_DIR / ".state" / "sandbox" / name


def port_free(port):
    """True if nothing listens on 127.0.0.1:port."""
    with contextlib.closing(socket.socket()) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def choose_api_port(name, taken=()):
    """A free API port for ``name`` (stand-in and health ports follow it).

    The first slot tried is derived from the name, so a sandbox usually gets
    the same ports each time and differently named sandboxes do not clash.
    """
    first = int(hashlib.sha1(name.encode()).hexdigest(), 16) % PORT_SLOTS
    if name == "sandbox":
        first = 0
    for i in range(PORT_SLOTS):
        port = BASE_API_PORT + 10 * ((first + i) % PORT_SLOTS)
        if port in taken:
            continue
        if all(port_free(p) for p in (port, port + 1, port + 2)):
            return port
    raise SandboxError("no free loopback port range for the sandbox API")


def make_ca(cert_dir):
    """Create a self-signed CA with openssl (once) for the cert generator."""
    cert_dir.mkdir(parents=True, exist_ok=True)
    key, pem = cert_dir / "ca.key", cert_dir / "ca.pem"
    if key.exists() and pem.exists():
        return
    try:
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
             "-keyout", str(key), "-out", str(pem), "-days", "3650",
             "-subj", "/CN=octavia-workflows sandbox CA"],
            check=True, capture_output=True, text=True)
    except FileNotFoundError as exc:
        raise SandboxError("openssl not found; run tools/bootstrap") from exc
    except subprocess.CalledProcessError as exc:
        raise SandboxError(f"openssl failed: {exc.stderr.strip()}") from exc
    key.chmod(0o600)


def render_octavia_conf(path, *, name, api_port, db_url, transport_url,
                        cert_dir, lock_dir, debug=True):
    """Write octavia.conf from the template."""
    secret = hashlib.sha256(f"sandbox:{name}:{path}".encode()).digest()
    passphrase = base64.urlsafe_b64encode(secret).decode()[:32]
    text = string.Template(TEMPLATE.read_text()).substitute(
        name=name, api_port=api_port, health_port=api_port + 2,
        db_url=db_url, transport_url=transport_url,
        cert_dir=cert_dir, lock_dir=lock_dir, debug=str(bool(debug)),
        image_tag=IMAGE_TAG, amp_flavor_id=AMP_FLAVOR_ID,
        mgmt_net_id=MGMT_NET_ID, server_certs_key_passphrase=passphrase)
    path.write_text(text)


def cloud_entry(api_url, standin_url=None):
    """The clouds.yaml entry (a dict) for a sandbox."""
    entry = {
        "auth_type": "none",
        "region_name": "RegionOne",
        # The root URL: an endpoint ending in /v2 breaks version discovery.
        "load_balancer_endpoint_override": api_url,
    }
    if standin_url:
        entry["compute_endpoint_override"] = f"{standin_url}/compute/v2.1"
        entry["image_endpoint_override"] = f"{standin_url}/image"
    return entry


def write_clouds_yaml(path, cloud_name, entry):
    """Write a clouds.yaml holding only this sandbox's entry."""
    path.write_text(yaml.safe_dump({"clouds": {cloud_name: entry}},
                                   default_flow_style=False))


def user_clouds_yaml():
    """The user's own clouds.yaml (openstacksdk's per-user location)."""
    return Path(os.path.expanduser("~/.config/openstack/clouds.yaml"))


def _load(path):
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        return {}
    except yaml.YAMLError as exc:
        raise SandboxError(f"{path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise SandboxError(f"{path} does not hold a mapping")
    return data


def merge_user_cloud(cloud_name, entry, path=None):
    """Add or replace ``cloud_name`` in the user's clouds.yaml."""
    path = path or user_clouds_yaml()
    data = _load(path)
    clouds = data.setdefault("clouds", {}) or {}
    data["clouds"] = clouds
    clouds[cloud_name] = entry
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".yaml.tmp")
    tmp.write_text(yaml.safe_dump(data, default_flow_style=False))
    tmp.chmod(0o600)
    os.replace(tmp, path)
    return path


def remove_user_cloud(cloud_name, api_url, path=None):
    """Drop ``cloud_name`` from the user's clouds.yaml if it still points at
    this sandbox (another sandbox may have taken the name since)."""
    path = path or user_clouds_yaml()
    data = _load(path)
    clouds = data.get("clouds") or {}
    entry = clouds.get(cloud_name)
    if not entry or entry.get("load_balancer_endpoint_override") != api_url:
        return False
    del clouds[cloud_name]
    tmp = path.with_suffix(".yaml.tmp")
    tmp.write_text(yaml.safe_dump(data, default_flow_style=False))
    tmp.chmod(0o600)
    os.replace(tmp, path)
    return True
