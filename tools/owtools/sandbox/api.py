"""A minimal JSON client for the sandbox's Octavia API (standard library).

The sandbox runs with ``auth_strategy = noauth``: no token is needed and
every request is admin. openstacksdk works too (see ``Sandbox.connect``);
this client only exists so that start-up and seeding stay fast and free of
client-library quirks.
"""

import contextlib
import json
import time
import urllib.error
import urllib.request


class ApiError(Exception):
    """An Octavia API call failed; ``status`` is the HTTP code (0: none)."""

    def __init__(self, message, status=0):
        super().__init__(message)
        self.status = status


class OctaviaApi:
    """``OctaviaApi("http://127.0.0.1:19876").get("/v2/lbaas/loadbalancers")``"""

    def __init__(self, url, timeout=30.0):
        self.url = url.rstrip("/")
        self.timeout = timeout

    def request(self, method, path, body=None):
        """Send one request; return the decoded JSON body (or None)."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            self.url + path, data=data, method=method,
            headers={"Content-Type": "application/json",
                     "Accept": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:300]
            with contextlib.suppress(ValueError, AttributeError):
                detail = json.loads(detail).get("faultstring", detail)
            raise ApiError(f"{method} {path}: HTTP {exc.code}: {detail}",
                           exc.code) from None
        except (urllib.error.URLError, OSError) as exc:
            raise ApiError(f"{method} {path}: {exc}") from None
        return json.loads(raw) if raw else None

    def get(self, path):
        """GET ``path``."""
        return self.request("GET", path)

    def post(self, path, body):
        """POST ``body`` to ``path``."""
        return self.request("POST", path, body)

    def put(self, path, body=None):
        """PUT ``body`` to ``path``."""
        return self.request("PUT", path, body)

    def delete(self, path):
        """DELETE ``path``."""
        return self.request("DELETE", path)

    def list_all(self, path, key):
        """Every item of a paginated collection (``key``: its JSON name)."""
        items, marker = [], None
        while True:
            sep = "&" if "?" in path else "?"
            page = self.get(f"{path}{sep}limit=1000"
                            + (f"&marker={marker}" if marker else ""))
            batch = page.get(key, [])
            items.extend(batch)
            if len(batch) < 1000 or not page.get(f"{key}_links"):
                return items
            marker = batch[-1]["id"]

    def answering(self):
        """True if the API answers its version document."""
        try:
            self.get("/")
        except ApiError:
            return False
        return True

    def wait_lbs(self, lb_ids, status="ACTIVE", timeout=120.0, poll=0.2):
        """Wait until every load balancer has ``status``.

        Raises ApiError naming the ones that went to ERROR or did not get
        there in time.
        """
        pending = set(lb_ids)
        deadline = time.monotonic() + timeout
        while pending:
            for lb in self.list_all("/v2/lbaas/loadbalancers",
                                    "loadbalancers"):
                if lb["id"] not in pending:
                    continue
                if lb["provisioning_status"] == status:
                    pending.discard(lb["id"])
                elif lb["provisioning_status"] == "ERROR" != status:
                    raise ApiError(f"load balancer {lb['id']} went to ERROR")
            if not pending:
                return
            if time.monotonic() > deadline:
                raise ApiError(f"{len(pending)} load balancer(s) not {status}"
                               f" after {timeout:.0f}s")
            time.sleep(poll)

