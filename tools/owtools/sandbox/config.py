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


def is_sandbox_entry(entry):
    """True if a clouds.yaml entry is one a sandbox wrote (auth none, the
    load-balancer endpoint on loopback)."""
    return (isinstance(entry, dict) and entry.get("auth_type") == "none"
            and str(entry.get("load_balancer_endpoint_override", ""))
            .startswith("http://127.0.0.1:"))


def _write_atomic(path, data, mode=0o600):
    tmp = path.with_suffix(".yaml.tmp")
    tmp.write_bytes(data)
    tmp.chmod(mode)
    os.replace(tmp, path)


def merge_user_cloud(cloud_name, entry, path=None, keep=None):
    """Add ``cloud_name`` to the user's clouds.yaml, leaving the other
    clouds as they are.

    Refuses (SandboxError) to replace an entry of that name that no
    sandbox wrote.  ``keep``: a file where the user's clouds.yaml is
    saved byte for byte first (comments included), for
    :func:`restore_user_cloud`.  Returns (path, sha256 of what was
    written).
    """
    path = path or user_clouds_yaml()
    data = _load(path)
    clouds = data.setdefault("clouds", {}) or {}
    data["clouds"] = clouds
    old = clouds.get(cloud_name)
    if old is not None and not is_sandbox_entry(old):
        raise SandboxError(
            f"{path} already has a cloud {cloud_name!r} that is not a "
            f"sandbox's; start with --name OTHER or --no-user-clouds")
    if keep is not None:
        if path.exists():
            keep.write_bytes(path.read_bytes())
            keep.chmod(0o600)
        else:
            keep.unlink(missing_ok=True)
    clouds[cloud_name] = entry
    path.parent.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(data, default_flow_style=False,
                          sort_keys=False).encode()
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o600
    _write_atomic(path, text, mode)
    return path, hashlib.sha256(text).hexdigest()


def restore_user_cloud(cloud_name, api_url, path, written_sha=None,
                       keep=None):
    """Take this sandbox's entry out of the user's clouds.yaml.

    If the file is still exactly what :func:`merge_user_cloud` wrote, it
    gets back its earlier bytes (``keep``; removed if there was no file
    before); otherwise only this sandbox's entry is dropped, the other
    clouds left as they are.
    """
    path = Path(path)
    try:
        current = path.read_bytes()
    except FileNotFoundError:
        return False
    if written_sha and hashlib.sha256(current).hexdigest() == written_sha:
        if keep is not None and keep.exists():
            _write_atomic(path, keep.read_bytes(),
                          path.stat().st_mode & 0o777)
            keep.unlink()
        else:
            path.unlink()
        return True
    return remove_user_cloud(cloud_name, api_url, path)


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
    _write_atomic(path, yaml.safe_dump(data, default_flow_style=False,
                                       sort_keys=False).encode(),
                  path.stat().st_mode & 0o777)
    return True
