"""The sandbox's backing services: MariaDB and RabbitMQ.

They are started and stopped through ``owtools.services`` (the project's
loopback service starters for the test tiers); this module only adapts that
interface to the sandbox and creates the ``octavia`` database.
"""

import contextlib
import urllib.parse

from owtools.sandbox.config import SandboxError


def _services():
    try:
        from owtools import services
    except ImportError as exc:
        raise SandboxError(
            "owtools.services is not available to start MariaDB/RabbitMQ; "
            "pass --db-url and --transport-url for existing servers") from exc
    return services


def start_mariadb(datadir):
    """Start a private MariaDB in ``datadir``; returns the server object."""
    server = _services().MariaDBServer(str(datadir))
    server.start()
    return server


def start_rabbitmq(datadir):
    """Start a private RabbitMQ in ``datadir``; returns the server object."""
    server = _services().RabbitMQServer(str(datadir))
    server.start()
    return server


def describe(server):
    """What the sandbox records about a started service (to stop it later
    from another process)."""
    return {"class": type(server).__name__,
            "dir": str(getattr(server, "datadir", "") or
                       getattr(server, "dir", "")),
            "port": getattr(server, "port", None),
            "url": getattr(server, "url", None)}


def mariadb_url(server, database):
    """SQLAlchemy URL of ``database`` on ``server`` (PyMySQL driver)."""
    url = server.url
    url = url() if callable(url) else url
    parts = urllib.parse.urlsplit(url)
    scheme = "mysql+pymysql"
    return urllib.parse.urlunsplit((scheme, parts.netloc, f"/{database}",
                                    parts.query, ""))


def rabbitmq_url(server):
    """oslo.messaging transport URL of ``server``."""
    url = server.url
    url = url() if callable(url) else url
    if url.startswith("amqp://"):
        url = "rabbit://" + url[len("amqp://"):]
    return url


def create_database(db_url):
    """CREATE DATABASE for the database named in ``db_url`` (idempotent)."""
    import pymysql
    parts = urllib.parse.urlsplit(db_url)
    database = parts.path.lstrip("/")
    if not database or not database.replace("_", "").isalnum():
        raise SandboxError(f"bad database name in {db_url!r}")
    try:
        conn = pymysql.connect(
            host=parts.hostname or "127.0.0.1", port=parts.port or 3306,
            user=urllib.parse.unquote(parts.username or "root"),
            password=urllib.parse.unquote(parts.password or ""),
            connect_timeout=10)
    except pymysql.MySQLError as exc:
        raise SandboxError(f"cannot reach MariaDB at {parts.hostname}:"
                           f"{parts.port}: {exc}") from None
    with contextlib.closing(conn):
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE IF NOT EXISTS `{database}` "
                        "CHARACTER SET utf8mb4")
        conn.commit()


def stop_all(sandbox, quiet=False):
    """Stop the services this sandbox started (recorded in its state)."""
    started = list(getattr(sandbox, "_services", []))
    sandbox._services = []
    names = set()
    for name, server in reversed(started):
        names.add(name)
        _stop(server, quiet)
    recorded = sandbox.state.get("services", {})
    if not recorded or names >= set(recorded):
        return
    services = _services()
    for name, info in recorded.items():
        if name in names or not info.get("dir"):
            continue
        cls = getattr(services, info.get("class") or "", None)
        if cls is None:
            continue
        kwargs = {"port": info["port"]} if info.get("port") else {}
        _stop(cls(info["dir"], **kwargs), quiet)


def _stop(server, quiet):
    try:
        server.stop()
    except Exception as exc:
        if not quiet:
            raise SandboxError(f"stopping {type(server).__name__}: {exc}") \
                from None
