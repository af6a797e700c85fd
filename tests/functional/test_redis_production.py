"""Production-shaped Redis jobboards: Sentinel, and TLS with an ACL user.

Real servers from ``owtools.services_redis`` (one primary, one replica,
three sentinels with their own password; a TLS-only Redis whose
``default`` user is off and whose ACL user has a password, a client
certificate and only the rights doc/production-redis.md recommends:
the namespace's keys and channels, no admin command), the real CLI and
a real conductor process.  A selftest job is posted, claimed and
finished through each; a wrong CA, a wrong password, the data password
given to the sentinels: each is one line on stderr and exit code 2, with
nothing posted or recorded, and no password in any output, log or board
key.
"""

import shutil
import sqlite3

import pytest
import redis
from redis import backoff as redis_backoff
from redis import retry as redis_retry

from functional.conftest import Deployment
from owtools import services, services_redis

pytestmark = pytest.mark.functional

EXPIRY = 6

#: The ACL doc/production-redis.md recommends, for the test namespaces
#: (``owt_*``): the board's keys and channels only, no admin command.
ACL = ('~owt_* &owt_* -@all +@read +@write +@keyspace +@scripting '
       '+@pubsub +@connection +@transaction -@dangerous +info')


@pytest.fixture(scope='module')
def sentinel_cluster(tmp_path_factory):
    cluster = services_redis.RedisSentinelCluster(
        tmp_path_factory.mktemp('sentinel'))
    try:
        cluster.start()
    except services.ServiceError as exc:
        pytest.fail(f'redis sentinel cluster could not start: {exc}',
                    pytrace=False)
    yield cluster
    cluster.stop()


@pytest.fixture(scope='module')
def tls_redis(tmp_path_factory):
    server = services_redis.RedisTLSServer(tmp_path_factory.mktemp('tls'),
                                           acl=ACL)
    try:
        server.start()
    except services.ServiceError as exc:
        pytest.fail(f'redis with TLS could not start: {exc}', pytrace=False)
    yield server
    server.stop()


def sentinel_options(cluster, namespace, **overrides):
    opts = {'jobboard_enabled': True,
            'jobboard_backend_driver': 'redis_taskflow_driver',
            'jobboard_backend_hosts': cluster.sentinel_hosts,
            'jobboard_redis_sentinel': cluster.master_name,
            'jobboard_redis_sentinel_password': cluster.sentinel_password,
            'jobboard_backend_password': cluster.password,
            'jobboard_backend_namespace': namespace,
            'jobboard_expiration_time': EXPIRY}
    opts.update(overrides)
    return opts


def tls_options(server, namespace, **overrides):
    opts = {'jobboard_enabled': True,
            'jobboard_backend_driver': 'redis_taskflow_driver',
            'jobboard_backend_hosts': '127.0.0.1',
            'jobboard_backend_port': server.port,
            'jobboard_backend_username': server.username,
            'jobboard_backend_password': server.password,
            'jobboard_redis_backend_ssl_options': server.ssl_options(),
            'jobboard_backend_namespace': namespace,
            'jobboard_expiration_time': EXPIRY}
    opts.update(overrides)
    return opts


@pytest.fixture(scope='module')
def empty_store(tmp_path_factory):
    """An SQLite store that ``db upgrade`` made, copied by each test (the
    CLI checks the schema before it connects to the board)."""
    directory = tmp_path_factory.mktemp('store')
    Deployment(directory, 'redis', 'sqlite', {'task_flow': {
        'persistence_connection':
            f'sqlite:///{directory}/persistence.sqlite'}}).cli(
        'db', 'upgrade', check=0)
    return directory / 'persistence.sqlite'


@pytest.fixture
def deployment(tmp_path, empty_store):
    made = []

    def make(task_flow):
        store = tmp_path / f'persistence-{len(made)}.sqlite'
        shutil.copy(empty_store, store)
        dep = Deployment(tmp_path, 'redis', 'sqlite', {
            'task_flow': dict(task_flow,
                              persistence_connection=f'sqlite:///{store}'),
            'conductor': {'poll_interval': 0.2}})
        dep.store_path = store
        made.append(dep)
        return dep

    yield make
    for dep in made:
        dep.stop_all()


def _board_bytes(client, namespace):
    chunks = []
    for key in client.scan_iter(match=f'{namespace}*', count=1000):
        chunks += [key, client.dump(key) or b'']
    return b'\n'.join(chunks)


def _run_selftest(dep, tmp_path, steps=5):
    record = tmp_path / 'steps.txt'
    dep.conductor('ctl-prod')
    job_id = dep.submit('selftest', steps=steps, step_seconds=0,
                        record_to=record)
    job = dep.wait_for(job_id, lambda j: j['state'] == 'SUCCESS',
                       timeout=60, what='SUCCESS')
    numbers = [int(line.split()[1]) for line in
               record.read_text().splitlines()]
    assert numbers == list(range(1, steps + 1))
    assert job['owner'].startswith('ctl-prod-')
    return job_id


def _no_secret_anywhere(dep, job_id, secrets, board_bytes):
    shown = dep.cli('show', job_id, '-f', 'json', check=0).stdout
    listed = dep.cli('list', '--all', '-f', 'json', check=0).stdout
    logs = ''.join(p.log.read_text(errors='replace')
                   for p in dep.conductors)
    assert 'claimed by' in logs           # the debug log is the real one
    for secret in secrets:
        assert secret not in shown and secret not in listed
        assert secret not in logs
        assert secret.encode() not in board_bytes


def _one_line_exit_2(dep, *args):
    proc = dep.cli(*args)
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith('octavia-workflow: error: jobboard ')
    assert 'Traceback' not in proc.stderr
    return lines[0]


def _nothing_recorded(dep):
    with sqlite3.connect(dep.store_path) as db:
        assert db.execute('SELECT count(*) FROM ow_jobs').fetchone() == (0,)


# -- Sentinel -----------------------------------------------------------


def test_sentinel_post_claim_finish(sentinel_cluster, deployment, tmp_path,
                                    namespace):
    cluster = sentinel_cluster
    dep = deployment(sentinel_options(cluster, namespace))
    try:
        job_id = _run_selftest(dep, tmp_path)
        log = dep.conductors[0].log.read_text()
        assert f'redis+sentinel://{cluster.master_name}@' in log
        primary = cluster.primary_node()
        with services_redis._client(primary.port, cluster.password) as c:
            board = _board_bytes(c, namespace)
        assert namespace.encode() in board
        _no_secret_anywhere(dep, job_id,
                            [cluster.password, cluster.sentinel_password],
                            board)
    finally:
        dep.stop_all()


def test_sentinels_have_their_own_password(sentinel_cluster, deployment,
                                           namespace):
    """The data password does not open the sentinels (and none at all
    does not either): one line, exit 2, nothing submitted."""
    cluster = sentinel_cluster
    for wrong in (cluster.password, ''):
        dep = deployment(sentinel_options(
            cluster, namespace, jobboard_redis_sentinel_password=wrong))
        line = _one_line_exit_2(dep, 'submit', 'selftest',
                                '--param', 'steps=1')
        assert 'sentinels ' in line and 'authentication failed' in line
        assert 'jobboard_redis_sentinel_password' in line
        assert cluster.password not in line
        _nothing_recorded(dep)


def test_sentinel_wrong_data_password_or_master(sentinel_cluster,
                                                deployment, namespace):
    cluster = sentinel_cluster
    dep = deployment(sentinel_options(
        cluster, namespace, jobboard_backend_password='not-it'))
    line = _one_line_exit_2(dep, 'submit', 'selftest', '--param', 'steps=1')
    assert 'authentication failed' in line
    assert 'jobboard_backend_password' in line
    dep = deployment(sentinel_options(
        cluster, namespace, jobboard_redis_sentinel='elsewhere'))
    line = _one_line_exit_2(dep, 'submit', 'selftest', '--param', 'steps=1')
    assert "no master named 'elsewhere'" in line
    for secret in (cluster.password, cluster.sentinel_password):
        assert secret not in line
    _nothing_recorded(dep)


# -- TLS and an ACL user -------------------------------------------------


def test_tls_acl_user_post_claim_finish(tls_redis, deployment, tmp_path,
                                        namespace):
    dep = deployment(tls_options(tls_redis, namespace))
    try:
        job_id = _run_selftest(dep, tmp_path)
        assert 'rediss://127.0.0.1:' in dep.conductors[0].log.read_text()
        with tls_redis.client() as client:
            board = _board_bytes(client, namespace)
        assert namespace.encode() in board
        _no_secret_anywhere(dep, job_id, [tls_redis.password], board)
    finally:
        dep.stop_all()


def test_tls_default_user_and_plain_text_are_refused(tls_redis):
    """The harness's server is what the tests claim it is: no plain-text
    port answers, the ``default`` user is off, and the ACL user may touch
    its namespaces only."""
    once = redis_retry.Retry(redis_backoff.NoBackoff(), 0)
    plain = redis.Redis(host='127.0.0.1', port=tls_redis.port,
                        socket_timeout=2, socket_connect_timeout=2,
                        retry=once)
    with pytest.raises(redis.ConnectionError):
        plain.ping()
    with tls_redis.client() as client:
        assert client.set('owt_probe', 'x') and client.delete('owt_probe')
        # least privilege: no key outside the namespaces, no admin command
        with pytest.raises(redis.exceptions.NoPermissionError):
            client.set('elsewhere', 'x')
        with pytest.raises(redis.exceptions.NoPermissionError):
            client.config_get('requirepass')
    nobody = redis.Redis(
        host='127.0.0.1', port=tls_redis.port, password=tls_redis.password,
        ssl=True, ssl_ca_certs=str(tls_redis.ca_path),
        ssl_certfile=str(tls_redis.client_cert),
        ssl_keyfile=str(tls_redis.client_key), socket_timeout=2,
        retry=once)
    with pytest.raises(redis.AuthenticationError):
        nobody.ping()


@pytest.mark.parametrize('mistake', ['wrong-ca', 'wrong-password',
                                     'no-user'])
def test_tls_mistakes_are_one_line_exit_2(tls_redis, deployment, tmp_path,
                                          namespace, mistake):
    if mistake == 'wrong-ca':
        other, _ = services_redis.make_ca(tmp_path / 'other', 'other')
        opts = tls_options(tls_redis, namespace,
                           jobboard_redis_backend_ssl_options=(
                               tls_redis.ssl_options(ca=other)))
        expect = ('certificate verify failed: self-signed certificate in '
                  'certificate chain (_ssl.c')
        hint = '(check jobboard_redis_backend_ssl_options)'
    elif mistake == 'wrong-password':
        opts = tls_options(tls_redis, namespace,
                           jobboard_backend_password='not-it')
        expect = 'authentication failed'
        hint = '(jobboard_backend_username/jobboard_backend_password)'
    else:
        opts = tls_options(tls_redis, namespace)
        del opts['jobboard_backend_username']
        expect = 'authentication failed'
        hint = '(jobboard_backend_username/jobboard_backend_password)'
    dep = deployment(opts)
    for args in (('submit', 'selftest', '--param', 'steps=1'),
                 ('conductor', '--name', 'ctl-bad')):
        line = _one_line_exit_2(dep, *args)
        assert line.startswith('octavia-workflow: error: jobboard rediss://')
        assert expect in line and line.endswith(hint), line
        assert tls_redis.password not in line
    _nothing_recorded(dep)


def test_an_unreadable_ca_file_is_a_config_error(tls_redis, deployment,
                                                 tmp_path, namespace):
    missing = tmp_path / 'no-such-ca.crt'
    dep = deployment(tls_options(
        tls_redis, namespace,
        jobboard_redis_backend_ssl_options=tls_redis.ssl_options(
            ca=missing)))
    proc = dep.cli('submit', 'selftest', '--param', 'steps=1')
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        'octavia-workflow: error: [task_flow] '
        'jobboard_redis_backend_ssl_options ssl_ca_certs: cannot read '
        f'{missing}')
    _nothing_recorded(dep)
