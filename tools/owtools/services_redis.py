"""Production-shaped Redis for the test tiers: Sentinel, and TLS + ACL.

Built on :mod:`owtools.services` (same rules: Debian's redis-server 7,
127.0.0.1 only, free ports, a private directory, stopped by PID)::

    from owtools.services_redis import RedisSentinelCluster, RedisTLSServer

    cluster = RedisSentinelCluster('/tmp/x/sentinel').start()
    cluster.sentinel_hosts      # '127.0.0.1:p1,127.0.0.1:p2,127.0.0.1:p3'
    cluster.password            # the data nodes' requirepass/masterauth
    cluster.sentinel_password   # the sentinels' own requirepass
    cluster.primary_node().kill()
    cluster.wait_for_failover(old_port)
    cluster.stop()

    tls = RedisTLSServer('/tmp/x/tls').start()
    tls.ca_path, tls.client_cert, tls.client_key, tls.username, tls.password

:class:`RedisSentinelCluster` is one primary, one replica and three
sentinels (quorum 2, ``down-after-milliseconds`` 1000, a short failover
timeout, so a failover takes a few seconds).  The data nodes and the
sentinels run from config files that Sentinel rewrites, so a node that is
killed and started again comes back with what Sentinel made of it.
:class:`RedisTLSServer` listens on TLS only, with certificates the harness
makes with ``openssl`` (a CA, a server certificate for 127.0.0.1, a client
certificate); its ``default`` user is off and one ACL user holds a
password.  :func:`make_ca` makes a CA of its own (for wrong-CA tests).

Failures: a server that does not start, a cluster that does not settle
(replica not in sync, sentinels not agreeing) or a failover that does not
happen in time raise :class:`~owtools.services.ServiceError` with the
relevant log's tail; nothing here ever skips.
"""

import json
import pathlib
import secrets
import subprocess
import time

import redis

from owtools.services import Service, ServiceError, free_port

MASTER_NAME = 'owmaster'


def _client(port, password=None, username=None, **kwargs):
    return redis.Redis(host='127.0.0.1', port=port, username=username,
                       password=password, socket_timeout=2,
                       socket_connect_timeout=2, **kwargs)


class RedisNode(Service):
    """A redis-server data node run from ``redis.conf`` in its directory.

    ``password`` is both ``requirepass`` and ``masterauth`` (every node of
    a Sentinel group shares it); ``replica_of`` a primary's port.  The
    config is written once: after a failover it holds what Sentinel
    rewrote into it.  Data is kept in an append-only file.
    """

    name = 'redis'
    start_timeout = 20.0

    def __init__(self, datadir, port=None, password=None, replica_of=None):
        super().__init__(datadir, port)
        if password:
            self.password = password
        self.replica_of = replica_of

    @property
    def conf_path(self):
        return self.datadir / 'redis.conf'

    def _prepare(self):
        if self.conf_path.exists():
            return
        lines = [
            'bind 127.0.0.1', f'port {self.port}', f'dir {self.datadir}',
            'daemonize no', 'protected-mode yes', 'save ""',
            'appendonly yes', 'appendfsync everysec',
            f'requirepass {self.password}', f'masterauth {self.password}',
            'repl-diskless-sync yes', 'repl-diskless-sync-delay 0',
        ]
        if self.replica_of:
            lines.append(f'replicaof 127.0.0.1 {self.replica_of}')
        self.conf_path.write_text('\n'.join(lines) + '\n')
        self.conf_path.chmod(0o600)

    def _command(self):
        return ['redis-server', str(self.conf_path)]

    def _ready(self):
        with _client(self.port, self.password) as client:
            return client.ping()

    def role(self):
        """``'master'`` or ``'slave'`` (as INFO says), None if down."""
        try:
            with _client(self.port, self.password) as client:
                return client.info('replication')['role']
        except (redis.RedisError, OSError):
            return None


class Sentinel(Service):
    """``redis-server --sentinel`` watching one primary.

    ``password`` is the sentinel's own ``requirepass`` (all sentinels of
    a group share it: they authenticate to each other with it);
    ``data_password`` goes into ``sentinel auth-pass``.
    """

    name = 'sentinel'
    start_timeout = 20.0

    def __init__(self, datadir, port=None, password=None, primary_port=None,
                 data_password=None, down_after_ms=1000,
                 failover_timeout_ms=4000):
        super().__init__(datadir, port)
        if password:
            self.password = password
        self.primary_port = primary_port
        self.data_password = data_password
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms

    @property
    def conf_path(self):
        return self.datadir / 'sentinel.conf'

    def _prepare(self):
        if self.conf_path.exists():
            return
        m = MASTER_NAME
        lines = [
            'bind 127.0.0.1', f'port {self.port}', f'dir {self.datadir}',
            'daemonize no', 'protected-mode yes',
            f'requirepass {self.password}',
            f'sentinel monitor {m} 127.0.0.1 {self.primary_port} 2',
            f'sentinel auth-pass {m} {self.data_password}',
            f'sentinel down-after-milliseconds {m} {self.down_after_ms}',
            f'sentinel failover-timeout {m} {self.failover_timeout_ms}',
            f'sentinel parallel-syncs {m} 1',
        ]
        self.conf_path.write_text('\n'.join(lines) + '\n')
        self.conf_path.chmod(0o600)

    def _command(self):
        return ['redis-server', str(self.conf_path), '--sentinel']

    def _ready(self):
        with _client(self.port, self.password) as client:
            return client.ping()

    def query(self, *args):
        with _client(self.port, self.password) as client:
            return client.execute_command(*args)


class RedisSentinelCluster:
    """One primary, one replica, three sentinels, on loopback.

    :param directory: private directory (one sub-directory per process).
    :param down_after_ms: sentinels' ``down-after-milliseconds``.
    :param failover_timeout_ms: sentinels' ``failover-timeout``.
    """

    def __init__(self, directory, down_after_ms=1000,
                 failover_timeout_ms=4000):
        self.directory = pathlib.Path(directory).resolve()
        self.directory.mkdir(parents=True, exist_ok=True)
        state_file = self.directory / 'cluster.json'
        try:
            state = json.loads(state_file.read_text())
        except (OSError, ValueError):
            state = {'password': secrets.token_hex(12),
                     'sentinel_password': secrets.token_hex(12),
                     'ports': _distinct_ports(5)}
            state_file.write_text(json.dumps(state))
            state_file.chmod(0o600)
        self.password = state['password']
        self.sentinel_password = state['sentinel_password']
        ports = state['ports']
        self.master_name = MASTER_NAME
        self.nodes = [
            RedisNode(self.directory / 'node-0', ports[0], self.password),
            RedisNode(self.directory / 'node-1', ports[1], self.password,
                      replica_of=ports[0])]
        self.sentinels = [
            Sentinel(self.directory / f'sentinel-{i}', port,
                     self.sentinel_password, primary_port=ports[0],
                     data_password=self.password,
                     down_after_ms=down_after_ms,
                     failover_timeout_ms=failover_timeout_ms)
            for i, port in enumerate(ports[2:])]

    @property
    def sentinel_hosts(self):
        """``jobboard_backend_hosts`` for this cluster (host:port each)."""
        return ','.join(f'127.0.0.1:{s.port}' for s in self.sentinels)

    def start(self, timeout=30.0):
        """Start every process and wait until failover is possible."""
        try:
            for server in self.nodes + self.sentinels:
                server.start()
            self.wait_settled(timeout)
        except ServiceError:
            self.stop()
            raise
        return self

    def stop(self):
        for server in self.sentinels + self.nodes:
            server.stop()

    def primary_port(self):
        """The primary's port as the sentinels report it (majority)."""
        votes = {}
        for sentinel in self.sentinels:
            if not sentinel.running:
                continue
            try:
                _, port = sentinel.query(
                    'SENTINEL', 'GET-MASTER-ADDR-BY-NAME', self.master_name)
            except (redis.RedisError, OSError, TypeError, ValueError):
                continue
            votes[int(port)] = votes.get(int(port), 0) + 1
        if not votes:
            return None
        return max(votes, key=votes.get)

    def primary_node(self):
        port = self.primary_port()
        return next(n for n in self.nodes if n.port == port)

    def wait_settled(self, timeout=30.0):
        """Until one primary has an in-sync replica, every sentinel sees
        the others and the replica, and a failover can be authorised."""
        deadline = time.monotonic() + timeout
        why = 'not checked'
        while time.monotonic() < deadline:
            why = self._unsettled()
            if why is None:
                return
            time.sleep(0.2)
        logs = '\n'.join(f'--- {s.log_path}\n{s.log_tail(8)}'
                         for s in self.nodes + self.sentinels)
        raise ServiceError(f'redis sentinel cluster not settled in '
                           f'{timeout} s: {why}\n{logs}')

    def _unsettled(self):
        port = self.primary_port()
        if port is None:
            return 'no sentinel reports a primary'
        primary = next((n for n in self.nodes if n.port == port), None)
        if primary is None or primary.role() != 'master':
            return f'the reported primary {port} is not a master'
        for node in self.nodes:
            if node is primary:
                continue
            try:
                with _client(node.port, self.password) as client:
                    info = client.info('replication')
            except (redis.RedisError, OSError) as exc:
                return f'replica {node.port}: {exc}'
            if info.get('role') != 'slave' or \
                    info.get('master_link_status') != 'up' or \
                    int(info.get('master_port', 0)) != port:
                return f'replica {node.port} not in sync with {port}'
        for sentinel in self.sentinels:
            try:
                sentinel.query('SENTINEL', 'CKQUORUM', self.master_name)
                master = sentinel.query('SENTINEL', 'MASTER',
                                        self.master_name)
                replicas = sentinel.query('SENTINEL', 'REPLICAS',
                                          self.master_name)
            except (redis.RedisError, OSError) as exc:
                return f'sentinel {sentinel.port}: {exc}'
            fields = _pairs(master)
            if int(fields.get('num-other-sentinels', 0)) < 2:
                return f'sentinel {sentinel.port} does not see the others'
            if 's_down' in fields.get('flags', '') or \
                    'failover' in fields.get('flags', ''):
                return f'sentinel {sentinel.port}: {fields.get("flags")}'
            healthy = [r for r in map(_pairs, replicas)
                       if r.get('flags') == 'slave']
            if len(healthy) < len(self.nodes) - 1:
                return f'sentinel {sentinel.port} does not see the replica'
        return None

    def wait_for_failover(self, old_port, timeout=30.0):
        """Until the sentinels report a primary other than ``old_port``
        that answers as a master; returns its node."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            port = self.primary_port()
            if port is not None and port != old_port:
                node = next(n for n in self.nodes if n.port == port)
                if node.role() == 'master':
                    return node
            time.sleep(0.2)
        logs = '\n'.join(f'--- {s.log_path}\n{s.log_tail(10)}'
                         for s in self.sentinels)
        raise ServiceError(f'no failover from {old_port} in {timeout} s\n'
                           f'{logs}')


def _distinct_ports(count):
    ports = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


def _pairs(flat):
    """A Redis flat ``[k, v, k, v]`` reply (or redis-py's dict) as dict."""
    if isinstance(flat, dict):
        return {_text(k): _text(v) for k, v in flat.items()}
    items = [_text(x) for x in flat]
    return dict(zip(items[::2], items[1::2], strict=False))


def _text(value):
    return value.decode() if isinstance(value, bytes) else str(value)


# -- TLS ---------------------------------------------------------------


def _openssl(*args, cwd):
    result = subprocess.run(['openssl', *args], cwd=cwd, capture_output=True,
                            text=True, check=False)
    if result.returncode:
        raise ServiceError(f'openssl {args[0]} failed: '
                           f'{(result.stderr or result.stdout)[-600:]}')


def make_ca(directory, name='ca'):
    """A self-signed CA in ``directory``: (cert path, key path)."""
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / f'{name}.crt', directory / f'{name}.key'
    if not cert.exists():
        _openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes',
                 '-keyout', key.name, '-out', cert.name, '-days', '2',
                 '-subj', f'/CN=octavia-workflows test {name}',
                 cwd=directory)
    return cert, key


def _issue(directory, ca, name, cn, extensions):
    cert, key = directory / f'{name}.crt', directory / f'{name}.key'
    if cert.exists():
        return cert, key
    ext = directory / f'{name}.ext'
    ext.write_text(extensions + '\n')
    _openssl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', key.name,
             '-out', f'{name}.csr', '-subj', f'/CN={cn}', cwd=directory)
    _openssl('x509', '-req', '-in', f'{name}.csr', '-CA', ca[0].name,
             '-CAkey', ca[1].name, '-CAcreateserial', '-days', '2',
             '-out', cert.name, '-extfile', ext.name, cwd=directory)
    key.chmod(0o600)
    return cert, key


class RedisTLSServer(Service):
    """redis-server on a TLS port only, ``default`` user off, one ACL user.

    :param username: the ACL user (password: ``self.password``).
    :param acl: the user's rules after ``on >password`` (keys, channels,
        commands); the default allows everything.
    :param auth_clients: ``tls-auth-clients`` (``yes``: a client
        certificate signed by the CA is required).
    """

    name = 'redis-tls'
    start_timeout = 20.0

    def __init__(self, datadir, port=None, username='octavia-workflows',
                 acl='~* &* +@all', auth_clients='yes'):
        super().__init__(datadir, port)
        self.username = username
        self.acl = acl
        self.auth_clients = auth_clients
        self.tls_dir = self.datadir / 'tls'

    @property
    def ca_path(self):
        return self.tls_dir / 'ca.crt'

    @property
    def client_cert(self):
        return self.tls_dir / 'client.crt'

    @property
    def client_key(self):
        return self.tls_dir / 'client.key'

    def _prepare(self):
        ca = make_ca(self.tls_dir, 'ca')
        self.server_cert = _issue(
            self.tls_dir, ca, 'server', '127.0.0.1',
            'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth')
        _issue(self.tls_dir, ca, 'client', 'octavia-workflows',
               'extendedKeyUsage=clientAuth')
        conf = self.datadir / 'redis.conf'
        conf.write_text('\n'.join([
            'bind 127.0.0.1', 'port 0', f'tls-port {self.port}',
            f'dir {self.datadir}', 'daemonize no', 'protected-mode yes',
            'save ""', 'appendonly no',
            f'tls-cert-file {self.server_cert[0]}',
            f'tls-key-file {self.server_cert[1]}',
            f'tls-ca-cert-file {self.ca_path}',
            f'tls-auth-clients {self.auth_clients}',
            'user default off',
            f'user {self.username} on >{self.password} {self.acl}',
        ]) + '\n')
        conf.chmod(0o600)

    def _command(self):
        return ['redis-server', str(self.datadir / 'redis.conf')]

    def client(self, **kwargs):
        """A redis-py client as the ACL user, over TLS."""
        return _client(self.port, self.password, self.username, ssl=True,
                       ssl_ca_certs=str(self.ca_path),
                       ssl_certfile=str(self.client_cert),
                       ssl_keyfile=str(self.client_key), **kwargs)

    def _ready(self):
        with self.client() as client:
            return client.ping()

    def ssl_options(self, ca=None):
        """``jobboard_redis_backend_ssl_options`` for this server."""
        return (f'ssl:true,ssl_ca_certs:{ca or self.ca_path},'
                f'ssl_certfile:{self.client_cert},'
                f'ssl_keyfile:{self.client_key},ssl_cert_reqs:required')
