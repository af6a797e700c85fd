"""HTTP front end of the Nova + Glance stand-in (see ``owtools.standin``).

Serves, under ``/compute`` and ``/image``, the part of the Compute v2.1 and
Image v2 APIs that openstacksdk needs to list, show and delete servers, list
and enable/disable nova-compute services, list hypervisors, and create,
upload, tag, list and delete images. Errors come back as the real services
shape them: Nova ``{"itemNotFound": {"code": 404, "message": ...}}``,
Glance ``{"code": 404, "title": "Not Found", "message": ...}``.

Run with ``python -m owtools.standin serve --state FILE --port P``.
"""

import hashlib
import http.server
import ipaddress
import json
import os
import re
import signal
import socket
import sys
import threading
import urllib.parse

from owtools.standin import StandinError, StandinState

PROJECT_ID = "5e4f7a0b1c2d4e5f8a9b0c1d2e3f4a5b"
#: ``via`` of the changes made through this server (the state's journal).
VIA = "compute-api"
NOVA_MIN, NOVA_MAX = "2.1", "2.95"
GLANCE_VERSIONS = ("2.16", "2.15", "2.9", "2.7", "2.6", "2.5", "2.4", "2.3",
                   "2.2", "2.1", "2.0")
_NOVA_FAULTS = {400: "badRequest", 403: "forbidden", 404: "itemNotFound",
                405: "HTTPMethodNotAllowed", 409: "conflictingRequest"}


class _Body:
    """File-like reader of a request body (Content-Length or chunked)."""

    def __init__(self, handler):
        self._rfile = handler.rfile
        te = handler.headers.get("Transfer-Encoding", "").lower()
        self._chunked = "chunked" in te
        self._left = int(handler.headers.get("Content-Length") or 0)
        self._done = False

    def read(self, size=-1):
        if self._chunked:
            return self._read_chunk()
        if self._left <= 0:
            return b""
        n = self._left if size is None or size < 0 else min(size, self._left)
        data = self._rfile.read(n)
        if not data:
            raise StandinError("Request body ended early")
        self._left -= len(data)
        return data

    def _read_chunk(self):
        while not self._done:
            line = self._rfile.readline(65537).split(b";")[0].strip()
            size = int(line or b"0", 16)
            if size == 0:
                while self._rfile.readline(65537).strip():
                    pass  # trailers
                self._done = True
                break
            data = self._rfile.read(size)
            self._rfile.readline()
            if data:
                return data
        return b""

    def read_all(self):
        return b"".join(iter(lambda: self.read(65536), b""))


def _iso(ts):
    """Glance and Nova print seconds only, e.g. 2024-01-01T00:00:00Z."""
    return ts[:19] + "Z"


class Handler(http.server.BaseHTTPRequestHandler):
    """One request; ``self.server.state`` is the ``StandinState``."""

    protocol_version = "HTTP/1.1"
    server_version = "owtools-standin/1"
    # Headers and body go out in two writes; with Nagle on, the body
    # waits for the client's delayed ACK of the headers (~40 ms on
    # Linux), a latency no real Glance or Nova adds to every request.
    disable_nagle_algorithm = True

    def log_message(self, fmt, *args):
        if self.server.verbose:
            sys.stderr.write("standin: " + (fmt % args) + "\n")

    def log_error(self, fmt, *args):
        sys.stderr.write("standin: error: " + (fmt % args) + "\n")

    # -- responses ---------------------------------------------------------

    def _send(self, code, body=None, headers=(), ctype="application/json"):
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        body = body or b""
        self.send_response(code)
        if code != 204:
            self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for key, value in headers:
            self.send_header(key, value)
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def _error(self, code, message, service):
        if service == "compute":
            fault = _NOVA_FAULTS.get(code, "computeFault")
            body = {fault: {"code": code, "message": message}}
        else:
            title = http.HTTPStatus(code).phrase
            body = {"code": code, "title": title, "message": message}
        self._send(code, body, self._extra_headers(service))

    def _base(self):
        return f"http://{self.headers.get('Host') or self._server_addr()}"

    def _server_addr(self):
        host, port = self.server.server_address[:2]
        return f"{host}:{port}"

    def _extra_headers(self, service):
        if service != "compute":
            return []
        try:
            ver = self._microversion()
        except StandinError:  # answering that very error
            ver = NOVA_MIN
        return [("OpenStack-API-Version", f"compute {ver}"),
                ("X-OpenStack-Nova-API-Version", ver),
                ("Vary",
                 "OpenStack-API-Version, X-OpenStack-Nova-API-Version")]

    def _microversion(self):
        """The requested compute microversion, clamped to what we serve."""
        raw = self.headers.get("OpenStack-API-Version", "")
        m = re.search(r"compute\s+([\d.]+|latest)", raw)
        ver = m.group(1) if m else self.headers.get(
            "X-OpenStack-Nova-API-Version", NOVA_MIN)
        if ver == "latest":
            return NOVA_MAX
        try:
            req = tuple(int(p) for p in ver.split("."))
        except ValueError as exc:
            raise StandinError(f"Invalid API version request: {ver}") from exc
        if len(req) != 2:
            raise StandinError(f"Invalid API version request: {ver}")
        top = tuple(int(p) for p in NOVA_MAX.split("."))
        low = tuple(int(p) for p in NOVA_MIN.split("."))
        if not low <= req <= top:
            raise StandinError(f"Version {ver} is not supported by the API. "
                               f"Minimum is {NOVA_MIN} and maximum is "
                               f"{NOVA_MAX}.", 406)
        return ver

    # -- dispatch ----------------------------------------------------------

    def do_GET(self):
        self._dispatch()

    do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    def _dispatch(self):
        url = urllib.parse.urlsplit(self.path)
        self.query = urllib.parse.parse_qs(url.query, keep_blank_values=True)
        parts = [urllib.parse.unquote(p) for p in url.path.split("/") if p]
        service = parts[0] if parts else ""
        body = _Body(self)
        try:
            if service == "compute":
                self._compute(parts[1:], body)
            elif service == "image":
                self._image(parts[1:], body)
            else:
                raise StandinError(f"Unknown path {url.path}", 404)
        except StandinError as exc:
            if exc.code == 204:
                self._send(204)
            else:
                self._error(exc.code, str(exc), service)
        except (ValueError, KeyError, TypeError) as exc:
            self._error(400, f"Bad request: {exc}", service)
        except Exception as exc:  # a stand-in bug: say so, keep serving
            self.log_error("unexpected error: %r", exc)
            self._error(500, f"Unexpected error: {exc!r}", service)
        # drain what a handler did not read so keep-alive stays in sync
        try:
            body.read_all()
        except (StandinError, ValueError, OSError):
            self.close_connection = True

    def _json(self, body):
        raw = body.read_all()
        try:
            data = json.loads(raw or b"{}")
        except ValueError as exc:
            raise StandinError(f"Malformed request body: {exc}") from exc
        if not isinstance(data, dict):
            raise StandinError("Malformed request body: expected an object")
        return data

    def _q(self, key):
        vals = self.query.get(key)
        return vals[-1] if vals else None

    def _route(self, routes, parts, body, what):
        path = "/" + "/".join(parts)
        known = False
        for method, pattern, fn in routes:
            m = re.fullmatch(pattern, path)
            if m:
                known = True
                if method == self.command or (
                        method == "GET" and self.command == "HEAD"):
                    return fn(body, *m.groups())
        if known:
            raise StandinError(f"Method {self.command} not allowed on "
                               f"{what} {path}", 405)
        raise StandinError(f"Unknown {what} path {path}", 404)

    # -- compute -----------------------------------------------------------

    def _nova_version(self):
        return {"id": "v2.1", "status": "CURRENT", "version": NOVA_MAX,
                "min_version": NOVA_MIN, "updated": "2013-07-23T11:33:21Z",
                "links": [{"rel": "self",
                           "href": f"{self._base()}/compute/v2.1/"}],
                "media-types": [{
                    "base": "application/json",
                    "type": "application/vnd.openstack.compute+json;"
                            "version=2.1"}]}

    def _compute(self, parts, body):
        if not parts:
            v = self._nova_version()
            return self._send(200, {"versions": [v]})
        if parts[0] != "v2.1":
            raise StandinError(f"Unknown compute API version {parts[0]}", 404)
        if len(parts) > 1 and re.fullmatch(r"[0-9a-f]{32}", parts[1]):
            parts = parts[:1] + parts[2:]  # tolerate /v2.1/{project_id}
        if len(parts) == 1:
            return self._send(200, {"version": self._nova_version()})
        self.mv = self._microversion()
        routes = [
            ("GET", r"/servers", lambda b: self._servers(False)),
            ("GET", r"/servers/detail", lambda b: self._servers(True)),
            ("GET", r"/servers/([^/]+)", self._server_show),
            ("DELETE", r"/servers/([^/]+)", self._server_delete),
            ("GET", r"/os-services", self._services),
            ("PUT", r"/os-services/([^/]+)", self._service_update),
            ("GET", r"/os-hypervisors", lambda b: self._hypervisors(False)),
            ("GET", r"/os-hypervisors/detail",
             lambda b: self._hypervisors(True)),
        ]
        self._route(routes, parts[1:], body, "compute")

    def _nsend(self, code, data=None):
        self._send(code, data, self._extra_headers("compute"))

    def _server_view(self, s, detail=True):
        link = f"{self._base()}/compute/v2.1/servers/{s['id']}"
        view = {"id": s["id"], "name": s["name"],
                "links": [{"rel": "self", "href": link}]}
        if not detail:
            return view
        host_id = hashlib.sha224(
            (PROJECT_ID + s["host"]).encode()).hexdigest()
        view.update({
            "status": s["status"], "tenant_id": PROJECT_ID,
            "user_id": PROJECT_ID, "created": _iso(s["created"]),
            "updated": _iso(s["updated"]), "hostId": host_id,
            "image": ({"id": s["image_id"], "links": []}
                      if s["image_id"] else ""),
            "flavor": {"vcpus": 1, "ram": 1024, "disk": 2, "ephemeral": 0,
                       "swap": 0, "original_name": "amphora",
                       "extra_specs": {}},
            "addresses": {}, "metadata": {}, "key_name": None,
            "accessIPv4": "", "accessIPv6": "", "config_drive": "",
            "progress": 0, "locked": False, "tags": [],
            "description": None, "security_groups": [],
            "OS-DCF:diskConfig": "MANUAL",
            "OS-EXT-AZ:availability_zone": s["az"],
            "OS-EXT-SRV-ATTR:host": s["host"],
            "OS-EXT-SRV-ATTR:hypervisor_hostname": s["host"],
            "OS-EXT-SRV-ATTR:instance_name": f"instance-{s['seq']:08x}",
            "OS-EXT-STS:vm_state": s["status"].lower(),
            "OS-EXT-STS:task_state": None, "OS-EXT-STS:power_state": 1,
            "OS-SRV-USG:launched_at": _iso(s["created"])[:-1] + ".000000",
            "OS-SRV-USG:terminated_at": None,
            "os-extended-volumes:volumes_attached": [],
        })
        return view

    def _servers(self, detail):
        host = self._q("host") or self._q("node")
        servers = self.server.state.servers(
            host=host, name=None, status=self._q("status"))
        name = self._q("name")
        if name:  # Nova treats name as a regular expression
            servers = [s for s in servers if re.search(name, s["name"] or "")]
        servers.reverse()  # Nova lists newest first
        marker = self._q("marker")
        if marker:
            ids = [s["id"] for s in servers]
            if marker not in ids:
                raise StandinError(f"marker [{marker}] not found")
            servers = servers[ids.index(marker) + 1:]
        limit = self._q("limit")
        if limit is not None:
            servers = servers[:int(limit)]
        self._nsend(200, {"servers": [self._server_view(s, detail)
                                      for s in servers]})

    def _server_show(self, body, server_id):
        self._nsend(200, {"server": self._server_view(
            self.server.state.server(server_id))})

    def _server_delete(self, body, server_id):
        if not self.server.state.delete_server(server_id, via=VIA):
            raise StandinError(f"Instance {server_id} could not be found.",
                               404)
        self._nsend(204)

    def _service_view(self, h):
        return {"id": h["service_id"], "binary": "nova-compute",
                "host": h["name"], "zone": h["az"], "status": h["status"],
                "state": "down" if h["forced_down"] else "up",
                "disabled_reason": h["disabled_reason"],
                "forced_down": bool(h["forced_down"]),
                "updated_at": h["updated_at"][:26]}

    def _services(self, body):
        binary, host = self._q("binary"), self._q("host")
        hosts = [h for h in self.server.state.hosts()
                 if binary in (None, "nova-compute")
                 and host in (None, h["name"])]
        self._nsend(200, {"services": [self._service_view(h)
                                       for h in hosts]})

    def _service_update(self, body, service_id):
        """PUT /os-services/{id} (microversion 2.53 and later; the older
        PUT /os-services/{disable,enable} forms are not served because
        openstacksdk uses this one whenever 2.53 is available)."""
        if self.mv_tuple() < (2, 53):
            raise StandinError(f"Unknown action {service_id} (this form "
                               "needs microversion 2.53 or later)", 404)
        data = self._json(body)
        unknown = set(data) - {"status", "disabled_reason", "forced_down"}
        if unknown or not data:
            raise StandinError("Invalid input for field/attribute: "
                               f"{sorted(unknown) or 'empty body'}")
        if "disabled_reason" in data and data.get("status") != "disabled":
            raise StandinError("Specifying 'disabled_reason' with status "
                               "other than 'disabled' is invalid.")
        if "forced_down" in data and not isinstance(data["forced_down"],
                                                     bool):
            raise StandinError("forced_down must be a boolean")
        h = self.server.state.host(service_id=service_id)
        h = self.server.state.set_service(
            h["name"], status=data.get("status"),
            disabled_reason=data.get("disabled_reason"),
            forced_down=data.get("forced_down"), via=VIA)
        self._nsend(200, {"service": self._service_view(h)})

    def mv_tuple(self):
        return tuple(int(p) for p in self.mv.split("."))

    def _hypervisor_view(self, h, detail):
        view = {"id": h["hypervisor_id"], "hypervisor_hostname": h["name"],
                "state": "down" if h["forced_down"] else "up",
                "status": h["status"]}
        if detail:
            view.update({
                "host_ip": "127.0.0.1", "hypervisor_type": "QEMU",
                "hypervisor_version": 8002000,
                "service": {"host": h["name"], "id": h["service_id"],
                            "disabled_reason": h["disabled_reason"]},
                "uptime": None})
        return view

    def _hypervisors(self, detail):
        self._nsend(200, {"hypervisors": [
            self._hypervisor_view(h, detail)
            for h in self.server.state.hosts()]})

    # -- image -------------------------------------------------------------

    def _glance_versions(self):
        href = f"{self._base()}/image/v2/"
        return {"versions": [
            {"id": f"v{v}", "status": "CURRENT" if i == 0 else "SUPPORTED",
             "links": [{"rel": "self", "href": href}]}
            for i, v in enumerate(GLANCE_VERSIONS)]}

    def _image(self, parts, body):
        if not parts or parts == ["versions"]:
            return self._send(300 if not parts else 200,
                              self._glance_versions())
        if parts[0] != "v2":
            raise StandinError(f"Unknown image API version {parts[0]}", 404)
        if len(parts) == 1:
            return self._send(200, self._glance_versions())
        routes = [
            ("GET", r"/images", self._images),
            ("POST", r"/images", self._image_create),
            ("GET", r"/images/([^/]+)", self._image_show),
            ("PATCH", r"/images/([^/]+)", self._image_patch),
            ("DELETE", r"/images/([^/]+)", self._image_delete),
            ("PUT", r"/images/([^/]+)/file", self._image_upload),
            ("GET", r"/images/([^/]+)/file", self._image_download),
            ("PUT", r"/images/([^/]+)/tags/([^/]+)", self._tag_add),
            ("DELETE", r"/images/([^/]+)/tags/([^/]+)", self._tag_remove),
        ]
        self._route(routes, parts[1:], body, "image")

    @staticmethod
    def _image_view(img):
        view = dict(img.pop("extra"))
        for key in ("data_path", "seq"):
            img.pop(key)
        view.update(img)
        view.update({
            "created_at": _iso(img["created_at"]),
            "updated_at": _iso(img["updated_at"]),
            "virtual_size": None, "os_hidden": False,
            "self": f"/v2/images/{img['id']}",
            "file": f"/v2/images/{img['id']}/file",
            "schema": "/v2/schemas/image"})
        return view

    def _images(self, body):
        tags = self.query.get("tag", [])
        images = self.server.state.images(
            tag=tags, name=self._q("name"), status=self._q("status"))
        if (self._q("os_hidden") or "false").lower() == "true":
            images = []  # the stand-in has no hidden images
        for key in ("visibility", "owner", "disk_format",
                    "container_format"):
            val = self._q(key)
            if val is not None and not (key == "visibility" and val == "all"):
                images = [i for i in images if i[key] == val]
        sort_key = self._q("sort_key") or "created_at"
        sort_dir = self._q("sort_dir") or "desc"
        sort = self._q("sort")
        if sort:  # new syntax, e.g. "created_at:desc"; first key only
            sort_key, _, sort_dir = sort.split(",")[0].partition(":")
            sort_dir = sort_dir or "desc"
        if sort_dir not in ("asc", "desc"):
            raise StandinError(f"Invalid sort direction: {sort_dir}")
        if sort_key not in ("created_at", "updated_at", "name", "id", "size",
                            "status"):
            raise StandinError(f"Invalid sort key: {sort_key}")
        if sort_key != "created_at":  # state already sorts newest first
            images.sort(key=lambda i: (i[sort_key] is None, i[sort_key]),
                        reverse=sort_dir == "desc")
        elif sort_dir == "asc":
            images.reverse()
        marker = self._q("marker")
        if marker:
            ids = [i["id"] for i in images]
            if marker not in ids:
                raise StandinError(f"Invalid marker {marker}: not found")
            images = images[ids.index(marker) + 1:]
        out = {"first": "/v2/images", "schema": "/v2/schemas/images"}
        limit = self._q("limit")
        if limit is not None and len(images) > int(limit):
            images = images[:int(limit)]
            query = {k: v for k, v in self.query.items() if k != "marker"}
            query["marker"] = [images[-1]["id"]]
            out["next"] = "/v2/images?" + urllib.parse.urlencode(query, True)
        out["images"] = [self._image_view(i) for i in images]
        self._send(200, out)

    def _image_create(self, body):
        data = self._json(body)
        for key in ("status", "size", "checksum", "created_at", "file",
                    "self", "schema", "os_hash_value", "locations"):
            if key in data:
                raise StandinError(f"Attribute '{key}' is read-only.", 403)
        if data.get("disk_format") not in (None, "qcow2", "raw", "vhd",
                                           "vmdk", "vdi", "iso", "ami",
                                           "ari", "aki", "vhdx", "ploop"):
            raise StandinError(f"Invalid disk format "
                               f"'{data['disk_format']}' for image.")
        tags = data.pop("tags", [])
        name = data.pop("name", None)
        image_id = data.pop("id", None)
        img = self.server.state.new_image(name, tags, image_id=image_id,
                                          **data)
        self._send(201, self._image_view(img), [
            ("Location", f"{self._base()}/image/v2/images/{img['id']}"),
            ("OpenStack-image-import-methods", "")])

    def _image_show(self, body, image_id):
        self._send(200, self._image_view(self.server.state.image(image_id)))

    def _image_patch(self, body, image_id):
        ctype = self.headers.get("Content-Type", "")
        if "json-patch" not in ctype:
            raise StandinError(f"Unsupported Content-Type {ctype}", 415)
        ops = json.loads(body.read_all() or b"[]")
        if not isinstance(ops, list):
            raise StandinError("Malformed JSON patch: expected a list")
        changes = {}
        for op in ops:
            kind, path = op.get("op"), op.get("path", "")
            key = path.lstrip("/")
            if kind not in ("add", "replace", "remove") or not key or \
                    "/" in key:
                raise StandinError(f"Unsupported patch operation {op}")
            changes[key] = None if kind == "remove" else op.get("value")
        img = self.server.state.update_image(image_id, **changes)
        self._send(200, self._image_view(img))

    def _image_delete(self, body, image_id):
        self.server.state.delete_image(image_id)
        self._send(204)

    def _image_upload(self, body, image_id):
        ctype = self.headers.get("Content-Type", "")
        if ctype != "application/octet-stream":
            raise StandinError(f"Content-Type {ctype!r} not supported; use "
                               "application/octet-stream", 415)
        self.server.state.upload_image(image_id, body)
        self._send(204)

    def _image_download(self, body, image_id):
        data = self.server.state.image_data(image_id)
        img = self.server.state.image(image_id)
        self._send(200, data, [("Content-MD5", img["checksum"])],
                   ctype="application/octet-stream")

    def _tag_add(self, body, image_id, tag):
        self.server.state.add_tag(image_id, tag)
        self._send(204)

    def _tag_remove(self, body, image_id, tag):
        self.server.state.remove_tag(image_id, tag)
        self._send(204)


class StandinServer(http.server.ThreadingHTTPServer):
    """Threaded HTTP server bound to a loopback address only."""

    daemon_threads = True

    def __init__(self, state, host="127.0.0.1", port=0, verbose=False):
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = host == "localhost"
        if not loopback:
            raise ValueError(f"refusing to bind {host}: the stand-in only "
                             "listens on loopback addresses")
        if ":" in host:
            self.address_family = socket.AF_INET6
        self.state = state
        self.verbose = verbose
        super().__init__((host, port), Handler)


def serve(state_path, host="127.0.0.1", port=0, verbose=False,
          out=sys.stdout):
    """Serve until SIGTERM/SIGINT; prints ``PID n`` and ``PORT p`` first.

    Fails with ``OSError`` if the port is taken and ``ValueError`` for a
    non-loopback host.
    """
    server = StandinServer(StandinState(state_path), host, port, verbose)
    stopping = threading.Event()

    def _stop(signum, frame):
        if not stopping.is_set():
            stopping.set()
            threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    print(f"PID {os.getpid()}", file=out, flush=True)
    print(f"PORT {server.server_address[1]}", file=out, flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
    return 0
