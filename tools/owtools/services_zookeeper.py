"""ZooKeeper as production runs it: a three-node ensemble, TLS.

Built on :mod:`owtools.services` and the same Debian ZooKeeper 3.8 jars::

    from owtools.services_zookeeper import ZooKeeperEnsemble
    ensemble = ZooKeeperEnsemble('/tmp/x/zk', tls=True).start()
    ensemble.hosts          # 127.0.0.1:p1,127.0.0.1:p2,127.0.0.1:p3
    ensemble.secure_hosts   # the TLS ports (secureClientPort)
    ensemble.certs.ca       # CA the servers' certificates are signed by
    leader = ensemble.leader()
    ensemble.kill(leader)   # SIGKILL; the others elect a new leader
    ensemble.restart(leader)
    ensemble.stop()

Each node runs ``QuorumPeerMain`` in its own directory (``zoo.cfg``,
``data/myid``) with its own client, quorum, election and (with TLS)
secure client ports on 127.0.0.1.  The tick is short (200 ms) so
elections and session timeouts are quick; the JVM heap is 128 MB.
``srvr`` (the one four-letter word allowed besides ``ruok``) tells each
node's role; the AdminServer is off.

TLS: :class:`Certificates` makes a CA, a server certificate (SAN
127.0.0.1) in a PKCS#12 keystore, a truststore (``keytool``, from the
JRE) and a client certificate, all with ``openssl``; the servers use the
Netty connection factory and require a client certificate (mutual TLS).
The Debian ``zookeeper.jar`` manifest leaves netty-codec and
netty-resolver out of its class path (the Netty factory cannot start a
TLS handshake without them), so they are added here.

Anything that fails to start raises :class:`~owtools.services.ServiceError`
with the log's tail: callers fail, they never skip.
"""

import concurrent.futures
import os
import pathlib
import secrets
import shutil
import socket
import subprocess
import time

from owtools import services

JARS = '/usr/share/java'
#: Beside zookeeper.jar: what its manifest leaves out (Netty TLS) and a
#: logging binding so the log4j configuration takes effect.
EXTRA_JARS = ('netty-codec.jar', 'netty-resolver.jar', 'slf4j-log4j12.jar',
              'log4j-1.2.jar')
TICK_MS = 200


def _run(argv, what):
    if not shutil.which(argv[0]):
        raise services.ServiceError(f'{what}: {argv[0]} not found (openssl '
                                    'and default-jre-headless are needed)')
    result = subprocess.run(argv, capture_output=True, text=True,
                            check=False)
    if result.returncode:
        raise services.ServiceError(
            f'{what} failed: {(result.stderr or result.stdout)[-600:]}')


class Certificates:
    """A CA, a server keystore and truststore, a client key pair.

    Made once in ``directory`` (kept if already there).  ``other_ca`` is
    a second, unrelated CA: a client that trusts it must fail.
    """

    def __init__(self, directory):
        self.dir = pathlib.Path(directory).resolve()
        self.ca = self.dir / 'ca.pem'
        self.other_ca = self.dir / 'other-ca.pem'
        self.keystore = self.dir / 'keystore.p12'
        self.truststore = self.dir / 'truststore.p12'
        self.client_cert = self.dir / 'client.pem'
        self.client_key = self.dir / 'client.key'
        password_file = self.dir / 'store-password'
        if password_file.exists():
            self.password = password_file.read_text().strip()
        else:
            self.password = secrets.token_hex(12)
        self._password_file = password_file

    def make(self):
        if self.truststore.exists() and self.client_key.exists():
            return self
        self.dir.mkdir(parents=True, exist_ok=True)
        self._password_file.write_text(self.password)
        d = self.dir
        for name in ('ca', 'other-ca'):
            _run(['openssl', 'req', '-x509', '-newkey', 'rsa:2048',
                  '-nodes', '-days', '7', '-subj', f'/CN=ow-test-{name}',
                  '-keyout', str(d / f'{name}.key'),
                  '-out', str(d / f'{name}.pem')], f'openssl ({name})')
        (d / 'server.ext').write_text(
            'subjectAltName=IP:127.0.0.1,DNS:localhost\n')
        for name, ext in (('server', True), ('client', False)):
            _run(['openssl', 'req', '-newkey', 'rsa:2048', '-nodes',
                  '-subj', f'/CN=ow-test-{name}',
                  '-keyout', str(d / f'{name}.key'),
                  '-out', str(d / f'{name}.csr')], f'openssl ({name} key)')
            _run(['openssl', 'x509', '-req', '-days', '7',
                  '-in', str(d / f'{name}.csr'), '-CA', str(self.ca),
                  '-CAkey', str(d / 'ca.key'), '-CAcreateserial',
                  '-out', str(d / f'{name}.pem')] +
                 (['-extfile', str(d / 'server.ext')] if ext else []),
                 f'openssl ({name} certificate)')
        _run(['openssl', 'pkcs12', '-export', '-name', 'server',
              '-in', str(d / 'server.pem'), '-inkey', str(d / 'server.key'),
              '-certfile', str(self.ca), '-out', str(self.keystore),
              '-passout', f'pass:{self.password}'], 'openssl pkcs12')
        _run(['keytool', '-importcert', '-noprompt', '-alias', 'ca',
              '-file', str(self.ca), '-keystore', str(self.truststore),
              '-storetype', 'PKCS12', '-storepass', self.password],
             'keytool')
        return self


class ZooKeeperNode(services.ZooKeeperServer):
    """One ensemble member (``QuorumPeerMain``); ``port`` is its client
    port, ``extra`` holds myid, its quorum/election/secure ports."""

    name = 'zookeeper'
    start_timeout = 60.0

    def __init__(self, datadir, myid=1, peers=None, certs=None):
        super().__init__(datadir)
        self.extra.setdefault('myid', myid)
        for key in ('quorum_port', 'election_port', 'secure_port'):
            if not self.extra.get(key):
                self.extra[key] = services.free_port()
        self.peers = peers or [self]
        self.certs = certs

    @property
    def myid(self):
        return self.extra['myid']

    @property
    def secure_port(self):
        return self.extra['secure_port']

    def _prepare(self):
        data = self.datadir / 'data'
        data.mkdir(exist_ok=True)
        (data / 'myid').write_text(f'{self.myid}\n')
        lines = [f'tickTime={TICK_MS}', 'initLimit=10', 'syncLimit=5',
                 f'dataDir={data}', f'clientPort={self.port}',
                 'clientPortAddress=127.0.0.1', 'maxClientCnxns=200',
                 # sessions of 1-30 s (tests use short claim expiries)
                 'minSessionTimeout=1000', 'maxSessionTimeout=30000',
                 '4lw.commands.whitelist=srvr,ruok',
                 'admin.enableServer=false', 'autopurge.purgeInterval=0',
                 'electionPortBindRetry=0', 'cnxTimeout=1000',
                 'quorumListenOnAllIPs=false']
        if len(self.peers) > 1:
            lines += [f'server.{p.myid}=127.0.0.1:{p.extra["quorum_port"]}:'
                      f'{p.extra["election_port"]}' for p in self.peers]
        if self.certs is not None:
            c = self.certs
            lines += [
                f'secureClientPort={self.secure_port}',
                'secureClientPortAddress=127.0.0.1',
                'serverCnxnFactory='
                'org.apache.zookeeper.server.NettyServerCnxnFactory',
                f'ssl.keyStore.location={c.keystore}',
                f'ssl.keyStore.password={c.password}',
                'ssl.keyStore.type=PKCS12',
                f'ssl.trustStore.location={c.truststore}',
                f'ssl.trustStore.password={c.password}',
                'ssl.trustStore.type=PKCS12', 'ssl.clientAuth=need']
        (self.datadir / 'zoo.cfg').write_text('\n'.join(lines) + '\n')
        (self.datadir / 'log4j.properties').write_text(
            'log4j.rootLogger=WARN, CONSOLE\n'
            'log4j.appender.CONSOLE=org.apache.log4j.ConsoleAppender\n'
            'log4j.appender.CONSOLE.layout=org.apache.log4j.PatternLayout\n'
            'log4j.appender.CONSOLE.layout.ConversionPattern='
            '%d %-5p [%t] %c{1}: %m%n\n'
            'log4j.logger.org.apache.zookeeper.server.quorum=INFO\n')

    def _command(self):
        if not os.path.exists(self.jar):
            raise services.ServiceError(f'zookeeper: {self.jar} not found; '
                                        'run tools/bootstrap')
        jars = [self.jar] + [f'{JARS}/{j}' for j in EXTRA_JARS
                             if os.path.exists(f'{JARS}/{j}')]
        if self.certs is not None and not all(
                os.path.exists(f'{JARS}/{j}') for j in EXTRA_JARS[:2]):
            raise services.ServiceError(
                'zookeeper TLS: netty-codec.jar/netty-resolver.jar missing '
                'from /usr/share/java (Debian package libnetty-java)')
        argv = ['java', '-Xmx128m', '-XX:+UseSerialGC',
                '-XX:TieredStopAtLevel=1',
                '-Dzookeeper.log.dir=' + str(self.datadir),
                '-Dlog4j.configuration=file:' +
                str(self.datadir / 'log4j.properties')]
        if self.certs is not None:
            argv.append('-Dzookeeper.serverCnxnFactory='
                        'org.apache.zookeeper.server.NettyServerCnxnFactory')
        return argv + ['-cp', ':'.join([str(self.datadir)] + jars),
                       'org.apache.zookeeper.server.quorum.QuorumPeerMain',
                       str(self.datadir / 'zoo.cfg')]

    def _ready(self):
        # The process answers (it may not be in a quorum yet).
        return four_letter_word(self.port, 'ruok') == 'imok'

    def mode(self):
        """'leader', 'follower', 'standalone' or None (not serving)."""
        if not self.running:
            return None
        try:
            text = four_letter_word(self.port, 'srvr')
        except OSError:
            return None
        for line in text.splitlines():
            if line.startswith('Mode:'):
                return line.split(':', 1)[1].strip()
        return None


def four_letter_word(port, word, timeout=2.0):
    with socket.create_connection(('127.0.0.1', port),
                                  timeout=timeout) as sock:
        sock.sendall(word.encode())
        chunks = []
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                break
            chunks.append(chunk)
    return b''.join(chunks).decode(errors='replace')


class ZooKeeperEnsemble:
    """Three (``size``) ZooKeeper nodes on loopback forming one quorum."""

    def __init__(self, directory, size=3, tls=False):
        self.dir = pathlib.Path(directory).resolve()
        self.certs = Certificates(self.dir / 'tls') if tls else None
        self.nodes = [ZooKeeperNode(self.dir / f'node{i}', myid=i,
                                    certs=self.certs)
                      for i in range(1, size + 1)]
        for node in self.nodes:
            node.peers = self.nodes

    @property
    def hosts(self):
        """The kazoo / ``jobboard_backend_hosts`` list (plain ports)."""
        return ','.join(f'127.0.0.1:{n.port}' for n in self.nodes)

    @property
    def secure_hosts(self):
        return ','.join(f'127.0.0.1:{n.secure_port}' for n in self.nodes)

    def start(self, timeout=90.0):
        """Start every node (in parallel) and wait for a quorum."""
        if self.certs is not None:
            self.certs.make()
        with concurrent.futures.ThreadPoolExecutor(len(self.nodes)) as pool:
            futures = [pool.submit(n.start) for n in self.nodes]
            errors = [f.exception() for f in futures if f.exception()]
        if errors:
            self.stop()
            raise errors[0]
        self.wait_quorum(timeout)
        return self

    def wait_quorum(self, timeout=60.0, nodes=None):
        """Wait until a leader serves and every running node (or every
        one of ``nodes``) has a role; returns the leader."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            modes = {n.myid: n.mode() for n in self.nodes if n.running}
            wanted = [n.myid for n in (nodes or self.nodes) if n.running]
            if 'leader' in modes.values() and all(modes[i] for i in wanted):
                return self.leader()
            time.sleep(0.1)
        tails = '\n'.join(f'node{n.myid} ({n.mode()}):\n{n.log_tail(6)}'
                          for n in self.nodes)
        raise services.ServiceError(
            f'zookeeper ensemble: no quorum within {timeout} s\n{tails}')

    def leader(self):
        """The node that is leader now, or None."""
        for node in self.nodes:
            if node.mode() == 'leader':
                return node
        return None

    def kill(self, node):
        """SIGKILL one node (a crash)."""
        node.kill()

    def restart(self, node, timeout=60.0):
        """Start a stopped or killed node again; wait until it has
        rejoined the quorum."""
        node.start()
        self.wait_quorum(timeout, nodes=[node])
        return node

    def stop(self):
        for node in self.nodes:
            node.stop()
