"""A small Nova + Glance stand-in for tests (standard library only).

The sandbox control plane runs stock Octavia with no-op drivers; there is no
Nova or Glance. Runbooks that move amphorae off a compute host or resolve an
image tag still need to talk to *something*, so this module provides:

* ``StandinState`` -- the state (compute hosts and their nova-compute
  services, servers, images) in one SQLite file that several processes may
  share: the sandbox compute driver inside octavia-worker writes to it, the
  HTTP server and the tests read and write it.
* An HTTP server serving the subset of the Compute v2.1 and Image v2 APIs
  that openstacksdk uses for those runbooks::

      python -m owtools.standin serve --state FILE --port P [--host 127.0.0.1]

  It prints ``PID <pid>`` and ``PORT <port>`` on start and stops cleanly on
  SIGTERM or SIGINT. Point openstacksdk at it with ``auth_type: none``,
  ``compute_endpoint_override: http://127.0.0.1:P/compute/v2.1`` and
  ``image_endpoint_override: http://127.0.0.1:P/image``.

Servers are listed by host with ``conn.compute.servers(all_projects=True,
compute_host=HOST, details=True)``: openstacksdk turns a ``host=`` argument
into the same query but also filters the results client-side on a top-level
``host`` attribute that Nova never returns, so ``host=`` yields nothing here
and against a real Nova alike.

This is a test double, not an emulator: anything not listed is answered with
404 (unknown path) or 405 (known path, unsupported method).
"""

import contextlib
import datetime
import hashlib
import json
import os
import sqlite3
import threading
import time
import uuid

DEFAULT_HOSTS = (("compute-1", "az1"), ("compute-2", "az1"),
                 ("compute-3", "az1"))


class StandinError(Exception):
    """A request the stand-in refuses; ``code`` is the HTTP status to use."""

    def __init__(self, message, code=400):
        super().__init__(message)
        self.code = code


class NotFound(StandinError):
    """The server, image, host or service does not exist (HTTP 404)."""

    def __init__(self, message):
        super().__init__(message, 404)


class Conflict(StandinError):
    """The request conflicts with the current state (HTTP 409)."""

    def __init__(self, message):
        super().__init__(message, 409)


def _now():
    return datetime.datetime.now(datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%S.%fZ")


_SCHEMA = """
CREATE TABLE IF NOT EXISTS hosts (
    name TEXT PRIMARY KEY, az TEXT NOT NULL, service_id TEXT NOT NULL UNIQUE,
    hypervisor_id TEXT NOT NULL UNIQUE,
    status TEXT NOT NULL DEFAULT 'enabled', disabled_reason TEXT,
    forced_down INTEGER NOT NULL DEFAULT 0, updated_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS servers (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE,
    name TEXT, host TEXT NOT NULL, az TEXT NOT NULL, status TEXT NOT NULL,
    image_id TEXT, created TEXT NOT NULL, updated TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS images (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE,
    name TEXT, tags TEXT NOT NULL DEFAULT '[]', status TEXT NOT NULL,
    size INTEGER, checksum TEXT, os_hash_algo TEXT, os_hash_value TEXT,
    data_path TEXT, disk_format TEXT, container_format TEXT,
    visibility TEXT NOT NULL DEFAULT 'shared', protected INTEGER DEFAULT 0,
    min_disk INTEGER DEFAULT 0, min_ram INTEGER DEFAULT 0, owner TEXT,
    extra TEXT NOT NULL DEFAULT '{}',
    created_at TEXT NOT NULL, updated_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL,
    kind TEXT NOT NULL, subject TEXT NOT NULL, host TEXT, detail TEXT,
    via TEXT NOT NULL);
"""

#: ``via`` of a change made by a direct call (the sandbox compute driver
#: inside octavia-worker, or a test), as opposed to the HTTP API.
DIRECT = "direct"


class StandinState:
    """Compute hosts, servers and images in one SQLite file.

    Safe for several processes and threads: every call opens its own
    connection, writes run in ``BEGIN IMMEDIATE`` transactions and the file
    uses WAL journaling with a 30 s busy timeout, so a writer that cannot get
    the lock within that time gets ``sqlite3.OperationalError``.

    ``hosts`` (a sequence of ``(name, availability_zone)``) seeds the compute
    hosts the first time the file is created; later opens keep what is there.
    Image bytes live in the directory ``<path>.images``.

    Failures: unknown ids raise ``NotFound``, state conflicts ``Conflict``,
    bad input ``StandinError`` (all carry the matching HTTP ``code``).
    """

    def __init__(self, path, hosts=DEFAULT_HOSTS):
        self.path = os.path.abspath(path)
        self.image_dir = self.path + ".images"
        os.makedirs(self.image_dir, exist_ok=True)
        with self._tx() as db:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            seeded = db.execute(
                "SELECT value FROM meta WHERE key='seeded'").fetchone()
            if not seeded:
                db.execute("INSERT INTO meta VALUES ('seeded', '1')")
                for name, az in hosts:
                    self._insert_host(db, name, az)

    # -- plumbing ---------------------------------------------------------

    def _connect(self):
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA busy_timeout = 30000")
        with contextlib.suppress(sqlite3.OperationalError):
            db.execute("PRAGMA journal_mode = WAL")
        return db

    @contextlib.contextmanager
    def _tx(self):
        """A write transaction; rolled back if the body raises."""
        db = self._connect()
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        finally:
            db.close()

    @contextlib.contextmanager
    def _ro(self):
        db = self._connect()
        try:
            yield db
        finally:
            db.close()

    @staticmethod
    def _insert_host(db, name, az):
        db.execute(
            "INSERT INTO hosts (name, az, service_id, hypervisor_id,"
            " updated_at) VALUES (?, ?, ?, ?, ?)",
            (name, az, str(uuid.uuid4()), str(uuid.uuid4()), _now()))

    # -- agreed interface for the sandbox compute driver -------------------

    def place_server(self, server_id, name, availability_zone=None, *,
                     image_id=None):
        """Record an ACTIVE server on an enabled host and return the host.

        The host is the least-loaded enabled host (ties: lowest name) in
        ``availability_zone`` (any zone when None), so placement is
        deterministic. Placing an id that already exists returns its current
        host unchanged. Raises ``Conflict`` ("No valid host") when the zone
        has no enabled host.
        """
        with self._tx() as db:
            row = db.execute("SELECT host FROM servers WHERE id=?",
                             (server_id,)).fetchone()
            if row:
                return row["host"]
            sql = ("SELECT h.name, h.az, (SELECT COUNT(*) FROM servers s"
                   " WHERE s.host = h.name) AS load FROM hosts h"
                   " WHERE h.status = 'enabled' AND h.forced_down = 0")
            args = ()
            if availability_zone:
                sql += " AND h.az = ?"
                args = (availability_zone,)
            hosts = db.execute(sql + " ORDER BY load, h.name", args).fetchall()
            if not hosts:
                raise Conflict("No valid host was found: no enabled compute "
                               f"host in zone {availability_zone or '(any)'}")
            host = hosts[0]
            now = _now()
            db.execute(
                "INSERT INTO servers (id, name, host, az, status, image_id,"
                " created, updated) VALUES (?, ?, ?, ?, 'ACTIVE', ?, ?, ?)",
                (server_id, name, host["name"], host["az"], image_id, now,
                 now))
            return host["name"]

    def delete_server(self, server_id, via=DIRECT):
        """Remove a server. Returns True if it existed, False otherwise.

        A deletion is journalled (:meth:`events`) with the server's host
        and ``via``, who asked: the HTTP API passes ``"compute-api"``.
        """
        with self._tx() as db:
            row = db.execute("SELECT host FROM servers WHERE id=?",
                             (server_id,)).fetchone()
            if not row:
                return False
            db.execute("DELETE FROM servers WHERE id=?", (server_id,))
            self._event(db, "server-delete", server_id, row["host"], None,
                        via)
            return True

    @staticmethod
    def _event(db, kind, subject, host, detail, via):
        db.execute(
            "INSERT INTO events (at, kind, subject, host, detail, via)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (time.time(), kind, subject, host, detail, via))

    def events(self, host=None, kind=None):
        """The journal of changes, oldest first: dicts with ``at`` (epoch
        seconds, when the change was committed), ``kind``
        (``server-delete``, ``service-update``), ``subject`` (the server
        id, or the host), ``host``, ``detail`` (a service update: its new
        status, reason and forced_down as JSON) and ``via``."""
        sql, args = "SELECT * FROM events WHERE 1=1", []
        for col, val in (("host", host), ("kind", kind)):
            if val is not None:
                sql += f" AND {col}=?"
                args.append(val)
        with self._ro() as db:
            return [dict(r) for r in db.execute(sql + " ORDER BY seq", args)]

    def image_for(self, tag=None, image_id=None):
        """Resolve the image an amphora should boot from.

        Returns ``image_id`` if that image exists, else the id of the newest
        active image carrying ``tag``, else None (never raises for a miss).
        """
        with self._ro() as db:
            if image_id:
                row = db.execute("SELECT id FROM images WHERE id=?",
                                 (image_id,)).fetchone()
                if row:
                    return row["id"]
            if tag:
                for row in db.execute(
                        "SELECT id, tags FROM images WHERE status='active'"
                        " ORDER BY created_at DESC, seq DESC"):
                    if tag in json.loads(row["tags"]):
                        return row["id"]
        return None

    # -- hosts and services ------------------------------------------------

    def add_host(self, name, az="az1"):
        """Add an enabled compute host; ``Conflict`` if the name exists."""
        with self._tx() as db:
            if db.execute("SELECT 1 FROM hosts WHERE name=?",
                          (name,)).fetchone():
                raise Conflict(f"Compute host {name} already exists")
            self._insert_host(db, name, az)

    def hosts(self):
        """All hosts as dicts, ordered by name."""
        with self._ro() as db:
            return [dict(r) for r in db.execute(
                "SELECT * FROM hosts ORDER BY name")]

    def host(self, name=None, service_id=None):
        """One host by name or by service id; ``NotFound`` if unknown."""
        with self._ro() as db:
            if service_id is not None:
                row = db.execute("SELECT * FROM hosts WHERE service_id=?",
                                 (service_id,)).fetchone()
            else:
                row = db.execute("SELECT * FROM hosts WHERE name=?",
                                 (name,)).fetchone()
        if not row:
            raise NotFound(f"Compute host {name or service_id} not found")
        return dict(row)

    def service_enabled(self, host):
        """True if the host's nova-compute service is enabled.

        Raises ``NotFound`` for an unknown host.
        """
        return self.host(host)["status"] == "enabled"

    def set_service(self, host, *, status=None, disabled_reason=None,
                    forced_down=None, via=DIRECT):
        """Enable/disable a host's service or set forced_down.

        ``status`` is 'enabled' or 'disabled' (``StandinError`` otherwise);
        enabling clears the reason. Returns the updated host dict; raises
        ``NotFound`` for an unknown host. Journalled (:meth:`events`) with
        ``via`` as for :meth:`delete_server`.
        """
        if status not in (None, "enabled", "disabled"):
            raise StandinError(f"Invalid status {status!r}: expected "
                               "'enabled' or 'disabled'")
        with self._tx() as db:
            row = db.execute("SELECT * FROM hosts WHERE name=?",
                             (host,)).fetchone()
            if not row:
                raise NotFound(f"Compute host {host} not found")
            new = dict(row)
            if status is not None:
                new["status"] = status
                new["disabled_reason"] = (disabled_reason
                                          if status == "disabled" else None)
            if forced_down is not None:
                new["forced_down"] = int(bool(forced_down))
            new["updated_at"] = _now()
            db.execute(
                "UPDATE hosts SET status=?, disabled_reason=?, forced_down=?,"
                " updated_at=? WHERE name=?",
                (new["status"], new["disabled_reason"], new["forced_down"],
                 new["updated_at"], host))
            self._event(db, "service-update", host, host, json.dumps(
                {"status": new["status"],
                 "disabled_reason": new["disabled_reason"],
                 "forced_down": bool(new["forced_down"])}), via)
            return new

    # -- servers -----------------------------------------------------------

    def add_server(self, server_id, host, name=None, status="ACTIVE",
                   image_id=None):
        """Record a server on ``host`` regardless of the service status.

        For tests: an orphan amphora VM that shows up again when a failed
        hypervisor comes back. ``NotFound`` for an unknown host, ``Conflict``
        if the id exists.
        """
        with self._tx() as db:
            h = db.execute("SELECT az FROM hosts WHERE name=?",
                           (host,)).fetchone()
            if not h:
                raise NotFound(f"Compute host {host} not found")
            if db.execute("SELECT 1 FROM servers WHERE id=?",
                          (server_id,)).fetchone():
                raise Conflict(f"Server {server_id} already exists")
            now = _now()
            db.execute(
                "INSERT INTO servers (id, name, host, az, status, image_id,"
                " created, updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (server_id, name or f"server-{server_id[:8]}", host, h["az"],
                 status, image_id, now, now))

    def servers(self, host=None, name=None, status=None):
        """Servers (dicts) ordered by creation, optionally filtered."""
        sql, args = "SELECT * FROM servers WHERE 1=1", []
        for col, val in (("host", host), ("name", name), ("status", status)):
            if val is not None:
                sql += f" AND {col}=?"
                args.append(val)
        with self._ro() as db:
            return [dict(r) for r in db.execute(sql + " ORDER BY seq", args)]

    def servers_on(self, host):
        """Ids of the servers on ``host``, in creation order."""
        return [s["id"] for s in self.servers(host=host)]

    def server(self, server_id):
        """One server as a dict; ``NotFound`` if unknown."""
        with self._ro() as db:
            row = db.execute("SELECT * FROM servers WHERE id=?",
                             (server_id,)).fetchone()
        if not row:
            raise NotFound(f"Instance {server_id} could not be found.")
        return dict(row)

    # -- images ------------------------------------------------------------

    _IMAGE_COLS = ("name", "disk_format", "container_format", "visibility",
                   "protected", "min_disk", "min_ram", "owner")

    def new_image(self, name=None, tags=(), image_id=None, **fields):
        """Record a 'queued' image without data and return it as a dict.

        ``fields`` may hold the Glance columns (disk_format,
        container_format, visibility, protected, min_disk, min_ram, owner);
        other keys are kept as extra properties. ``Conflict`` if
        ``image_id`` exists, ``StandinError`` for a non-list ``tags``.
        """
        if isinstance(tags, str) or not all(isinstance(t, str)
                                            for t in tags):
            raise StandinError("tags must be a list of strings")
        image_id = image_id or str(uuid.uuid4())
        cols = {k: fields.pop(k) for k in list(fields)
                if k in self._IMAGE_COLS}
        cols["name"] = name
        now = _now()
        with self._tx() as db:
            if db.execute("SELECT 1 FROM images WHERE id=?",
                          (image_id,)).fetchone():
                raise Conflict(f"Image with identifier {image_id} "
                               "already exists!")
            names = ", ".join(cols)
            marks = ", ".join("?" for _ in cols)
            db.execute(
                f"INSERT INTO images (id, tags, status, extra, created_at,"
                f" updated_at, {names}) VALUES (?, ?, 'queued', ?, ?, ?,"
                f" {marks})",
                (image_id, json.dumps(sorted(set(tags))), json.dumps(fields),
                 now, now, *cols.values()))
        return self.image(image_id)

    def create_image(self, name, tags=(), data=b"", **fields):
        """Create an image and store ``data`` (bytes); it becomes 'active'.

        Returns the image dict. See ``new_image`` for ``fields`` and errors.
        """
        image = self.new_image(name, tags, **fields)
        return self.upload_image(image["id"], data)

    def upload_image(self, image_id, data):
        """Store the image bytes (bytes or a binary file object).

        Sets size, checksum (md5), os_hash_value (sha512) and status
        'active'. ``NotFound`` for an unknown image, ``Conflict`` unless the
        image is 'queued' (Glance refuses a second upload the same way).
        """
        if self.image(image_id)["status"] != "queued":
            raise Conflict(f"Image {image_id} is not queued; its data "
                           "cannot be replaced")
        path = os.path.join(self.image_dir, image_id)
        md5, sha, size = hashlib.md5(), hashlib.sha512(), 0
        tmp = f"{path}.{os.getpid()}.{threading.get_ident()}.part"
        with open(tmp, "wb") as out:
            chunks = [data] if isinstance(data, (bytes, bytearray)) else \
                iter(lambda: data.read(65536), b"")
            for chunk in chunks:
                md5.update(chunk)
                sha.update(chunk)
                size += len(chunk)
                out.write(chunk)
        with self._tx() as db:
            row = db.execute("SELECT status FROM images WHERE id=?",
                             (image_id,)).fetchone()
            if not row or row["status"] != "queued":
                os.unlink(tmp)
                if not row:
                    raise NotFound(f"No image found with ID {image_id}")
                raise Conflict(f"Image {image_id} is not queued")
            os.replace(tmp, path)
            db.execute(
                "UPDATE images SET status='active', size=?, checksum=?,"
                " os_hash_algo='sha512', os_hash_value=?, data_path=?,"
                " updated_at=? WHERE id=?",
                (size, md5.hexdigest(), sha.hexdigest(), path, _now(),
                 image_id))
        return self.image(image_id)

    def image_data(self, image_id):
        """The stored bytes; ``NotFound`` if unknown, ``NoContent`` style
        ``StandinError`` (code 204) if the image has no data yet."""
        image = self.image(image_id)
        if not image["data_path"]:
            raise StandinError(f"Image {image_id} has no data", 204)
        with open(image["data_path"], "rb") as f:
            return f.read()

    def images(self, tag=None, name=None, status=None):
        """Images (dicts) newest first, optionally filtered.

        ``tag`` may be a string or a list (all must match, as in Glance).
        """
        tags = [tag] if isinstance(tag, str) else list(tag or [])
        sql, args = "SELECT * FROM images WHERE 1=1", []
        for col, val in (("name", name), ("status", status)):
            if val is not None:
                sql += f" AND {col}=?"
                args.append(val)
        with self._ro() as db:
            rows = [self._image_dict(r) for r in db.execute(
                sql + " ORDER BY created_at DESC, seq DESC", args)]
        return [r for r in rows if all(t in r["tags"] for t in tags)]

    def image(self, image_id):
        """One image as a dict; ``NotFound`` if unknown."""
        with self._ro() as db:
            row = db.execute("SELECT * FROM images WHERE id=?",
                             (image_id,)).fetchone()
        if not row:
            raise NotFound(f"No image found with ID {image_id}")
        return self._image_dict(row)

    @staticmethod
    def _image_dict(row):
        d = dict(row)
        d["tags"] = json.loads(d["tags"])
        d["extra"] = json.loads(d["extra"])
        d["protected"] = bool(d["protected"])
        return d

    def update_image(self, image_id, **changes):
        """Set image attributes (Glance columns, ``tags`` or extra
        properties; a value of None removes an extra property).

        ``NotFound`` for an unknown image; ``StandinError`` (403, as Glance)
        for read-only attributes.
        """
        readonly = {"id", "status", "size", "checksum", "os_hash_algo",
                    "os_hash_value", "created_at", "updated_at", "file",
                    "self", "schema", "virtual_size", "direct_url",
                    "locations", "data_path", "seq"}
        bad = readonly & set(changes)
        if bad:
            raise StandinError(f"Attribute '{sorted(bad)[0]}' is read-only.",
                               403)
        with self._tx() as db:
            row = db.execute("SELECT * FROM images WHERE id=?",
                             (image_id,)).fetchone()
            if not row:
                raise NotFound(f"No image found with ID {image_id}")
            cur = self._image_dict(row)
            extra = cur["extra"]
            for key, val in changes.items():
                if key == "tags":
                    if isinstance(val, str) or not all(
                            isinstance(t, str) for t in val):
                        raise StandinError("tags must be a list of strings")
                    cur["tags"] = sorted(set(val))
                elif key in self._IMAGE_COLS:
                    cur[key] = val
                elif val is None:
                    extra.pop(key, None)
                else:
                    extra[key] = val
            sets = ", ".join(f"{c}=?" for c in self._IMAGE_COLS)
            db.execute(
                f"UPDATE images SET {sets}, tags=?, extra=?, updated_at=?"
                " WHERE id=?",
                (*(cur[c] for c in self._IMAGE_COLS), json.dumps(cur["tags"]),
                 json.dumps(extra), _now(), image_id))
        return self.image(image_id)

    def add_tag(self, image_id, tag):
        """Add ``tag`` to the image (no-op if present); ``NotFound``."""
        tags = self.image(image_id)["tags"]
        return self.update_image(image_id, tags=tags + [tag])

    def remove_tag(self, image_id, tag):
        """Remove ``tag``; ``NotFound`` for an unknown image or tag."""
        tags = self.image(image_id)["tags"]
        if tag not in tags:
            raise NotFound(f"Tag {tag} not found on image {image_id}")
        return self.update_image(image_id,
                                 tags=[t for t in tags if t != tag])

    def delete_image(self, image_id):
        """Delete the image and its bytes; ``NotFound`` if unknown,
        ``StandinError`` 403 if protected."""
        with self._tx() as db:
            row = db.execute("SELECT protected, data_path FROM images"
                             " WHERE id=?", (image_id,)).fetchone()
            if not row:
                raise NotFound(f"No image found with ID {image_id}")
            if row["protected"]:
                raise StandinError(f"Image {image_id} is protected and "
                                   "cannot be deleted.", 403)
            db.execute("DELETE FROM images WHERE id=?", (image_id,))
        if row["data_path"]:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(row["data_path"])


def main(argv=None):
    """``serve --state FILE --port P [--host 127.0.0.1] [--hosts ...]``.

    Exit status 2 for bad arguments (argparse), 1 if the server cannot start
    (port in use, non-loopback host), 0 after a clean SIGTERM/SIGINT stop.
    """
    import argparse
    import sys

    parser = argparse.ArgumentParser(
        prog="python -m owtools.standin",
        description="Nova + Glance stand-in for tests")
    sub = parser.add_subparsers(dest="command", required=True)
    srv = sub.add_parser("serve", help="serve the HTTP API until SIGTERM")
    srv.add_argument("--state", required=True, help="SQLite state file")
    srv.add_argument("--port", type=int, default=0, help="0: a free port")
    srv.add_argument("--host", default="127.0.0.1",
                     help="loopback address to bind")
    srv.add_argument("--hosts", default=None,
                     help="compute hosts to seed a new state file with, as "
                          "name:az,name:az (default compute-1..3 in az1)")
    srv.add_argument("--verbose", action="store_true",
                     help="log each request to stderr")
    args = parser.parse_args(argv)
    from owtools import standin_http

    try:
        if args.hosts:
            seeds = [tuple((h.split(":") + ["az1"])[:2])
                     for h in args.hosts.split(",") if h]
            StandinState(args.state, hosts=seeds)
        return standin_http.serve(args.state, args.host, args.port,
                                  args.verbose)
    except (OSError, ValueError) as exc:
        print(f"standin: cannot serve: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
