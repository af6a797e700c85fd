"""Fixtures shared by the test tiers: real services, started here.

Every server is started from the Debian packages by ``owtools.services``
on a free loopback port with a private directory, once per test session,
and stopped (by PID) at the end.  A server that cannot start fails the
tests that need it; nothing is ever skipped for a missing service.
"""

import os
import uuid

import pytest

from owtools import services, services_sql


def _start(request, tmp_path_factory, cls, **kwargs):
    directory = tmp_path_factory.mktemp(cls.name)
    server = cls(directory, **kwargs)
    try:
        server.start()
    except services.ServiceError as exc:
        pytest.fail(f'{cls.name} could not start: {exc}', pytrace=False)
    request.addfinalizer(server.stop)
    return server


@pytest.fixture(scope='session')
def redis_server(request, tmp_path_factory):
    return _start(request, tmp_path_factory, services.RedisServer)


@pytest.fixture(scope='session')
def zookeeper_server(request, tmp_path_factory):
    return _start(request, tmp_path_factory, services.ZooKeeperServer)


@pytest.fixture(scope='session')
def mariadb_server(request, tmp_path_factory):
    return _start(request, tmp_path_factory, services.MariaDBServer)


@pytest.fixture(scope='session')
def postgresql_server(request, tmp_path_factory):
    server = _start(request, tmp_path_factory,
                    services_sql.PostgreSQLServer)
    request.addfinalizer(server.remove)
    return server


@pytest.fixture
def namespace():
    """A jobboard namespace (and database name) unique to one test."""
    return f'owt_{uuid.uuid4().hex[:12]}'


@pytest.fixture(scope='session')
def sandbox(request, tmp_path_factory, mariadb_server):
    """One stock Octavia sandbox (no-op drivers) for the e2e session.

    It uses the session's MariaDB and its own RabbitMQ; its clouds.yaml is
    exported through ``OS_CLIENT_CONFIG_FILE`` so the CLI under test and
    openstacksdk reach it as cloud ``sandbox``.
    """
    from owtools.sandbox import Sandbox, SandboxError
    directory = tmp_path_factory.mktemp('sandbox')
    box = Sandbox('sandbox', directory=directory)
    db_url = mariadb_server.create_database('octavia')
    try:
        box.start(db_url=db_url, user_clouds=False)
    except SandboxError as exc:
        pytest.fail(f'sandbox could not start: {exc}', pytrace=False)
    request.addfinalizer(lambda: box.stop(quiet=True))
    os.environ['OS_CLIENT_CONFIG_FILE'] = str(box.dir / 'clouds.yaml')
    return box
