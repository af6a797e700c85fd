"""Private Redis, ZooKeeper, MariaDB and RabbitMQ servers on loopback.

The test tiers, the sandbox cloud and the benchmarks start the services
they need from the Debian packages (``tools/bootstrap`` installs them),
each in its own directory, on free loopback ports, owned by the caller::

    from owtools.services import RedisServer
    redis = RedisServer("/tmp/x/redis").start()
    redis.url           # redis://:<password>@127.0.0.1:<port>/0
    redis.stop()

Every server writes ``service.json`` (port, password, pid) into its
directory, so ``RedisServer(directory).stop()`` from another process stops
the one that was started there, by PID, and nothing else.  ``kill()``
sends SIGKILL (for chaos tests) and ``start()`` after it restarts the
server on the same port with the same data.

A server that cannot start raises :class:`ServiceError` with the tail of
its log: callers (pytest fixtures) fail on it, they never skip.
"""

import contextlib
import json
import os
import pathlib
import secrets
import shutil
import signal
import socket
import subprocess
import time


class ServiceError(Exception):
    """A service could not be started or stopped."""


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def _alive(pid):
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):
        with open(f'/proc/{pid}/stat', encoding='ascii') as handle:
            if handle.read().split(')')[-1].split()[0] == 'Z':
                return False
    return True


class Service:
    """One server process in its own directory.

    Subclasses set ``name`` and implement ``_prepare`` (write config,
    initialise data), ``_command`` (argv) and ``_ready`` (True once it
    answers).  Leave out ``_prepare`` and the server starts on whatever is
    in its directory; leave out ``_ready`` and ``start`` returns as soon as
    the port accepts connections.
    """

    name = 'service'
    start_timeout = 60.0

    def __init__(self, datadir, port=None):
        self.datadir = pathlib.Path(datadir).resolve()
        self._state_file = self.datadir / 'service.json'
        state = self._load()
        self.port = int(port or state.get('port') or free_port())
        self.password = state.get('password') or secrets.token_hex(12)
        self.extra = state.get('extra', {})
        self.pid = state.get('pid')
        self._proc = None

    # -- state -------------------------------------------------------------

    def _load(self):
        try:
            return json.loads(self._state_file.read_text())
        except (OSError, ValueError):
            return {}

    def _save(self):
        self.datadir.mkdir(parents=True, exist_ok=True)
        tmp = self._state_file.with_suffix('.tmp')
        tmp.write_text(json.dumps({
            'class': type(self).__name__, 'port': self.port,
            'password': self.password, 'pid': self.pid,
            'extra': self.extra}))
        os.replace(tmp, self._state_file)

    @property
    def log_path(self):
        return self.datadir / f'{self.name}.log'

    def log_tail(self, lines=15):
        try:
            text = self.log_path.read_text(errors='replace')
        except OSError:
            return '(no log)'
        return '\n'.join(text.splitlines()[-lines:])

    @property
    def running(self):
        return _alive(self.pid)

    # -- lifecycle ---------------------------------------------------------

    def start(self, timeout=None):
        """Start the server and wait until it answers; returns ``self``.

        Raises :class:`ServiceError` (with the log's tail) if the binary is
        missing, the process exits, or it does not answer in time; the
        half-started process is stopped first.
        """
        if self.running:
            return self
        self.datadir.mkdir(parents=True, exist_ok=True)
        self._prepare()
        argv = self._command()
        if not shutil.which(argv[0]):
            raise ServiceError(f'{self.name}: {argv[0]} not found; run '
                               'tools/bootstrap to install the Debian '
                               'packages')
        log = open(self.log_path, 'ab')
        kwargs = dict(cwd=self.datadir, env=self._environ(),
                      start_new_session=True)
        kwargs.update(self._popen_kwargs())
        with log:
            self._proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, **kwargs)
        self.pid = self._proc.pid
        self._save()
        deadline = time.monotonic() + (timeout or self.start_timeout)
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                self._proc = None
                raise ServiceError(
                    f'{self.name} exited during start-up; log '
                    f'{self.log_path}:\n{self.log_tail()}')
            try:
                if self._ready():
                    return self
            except Exception:  # not up yet: keep polling
                pass
            time.sleep(0.1)
        self.stop()
        waited = timeout or self.start_timeout
        raise ServiceError(f'{self.name} did not answer on 127.0.0.1:'
                           f'{self.port} within {waited} s; log '
                           f'{self.log_path}:\n{self.log_tail()}')

    def stop(self, timeout=20.0):
        """SIGTERM the server's process group, SIGKILL after ``timeout``."""
        self._signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while self.running and time.monotonic() < deadline:
            self._reap()
            time.sleep(0.05)
        if self.running:
            self._signal(signal.SIGKILL)
        self._wait_gone()
        self._after_stop()

    def kill(self):
        """SIGKILL the server (a crash); ``start()`` brings it back."""
        self._signal(signal.SIGKILL)
        self._wait_gone()
        self._after_stop()

    def restart(self, timeout=None):
        self.stop()
        return self.start(timeout)

    def _signal(self, signum):
        if not self.pid:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signum)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(self.pid, signum)

    def _reap(self):
        if self._proc is not None:
            self._proc.poll()

    def _wait_gone(self, timeout=10.0):
        deadline = time.monotonic() + timeout
        while self.running and time.monotonic() < deadline:
            self._reap()
            time.sleep(0.05)
        self._reap()
        self._proc = None
        self.pid = None
        if self.datadir.exists():
            self._save()

    # -- hooks -------------------------------------------------------------

    def _prepare(self):
        """Write configuration and initialise the data directory."""

    def _command(self):
        raise NotImplementedError

    def _environ(self):
        return dict(os.environ)

    def _popen_kwargs(self):
        """``subprocess.Popen`` arguments beyond argv and its output:
        ``cwd``, ``env`` and ``start_new_session`` by default."""
        return {}

    def _ready(self):
        with socket.create_connection(('127.0.0.1', self.port), timeout=1):
            return True

    def _after_stop(self):
        """Clean up helper processes the server left behind."""


class RedisServer(Service):
    """redis-server with a password and no persistence by default.

    ``appendonly=True`` keeps data across ``kill()``/``start()`` (chaos
    tests restart Redis mid-run).
    """

    name = 'redis'
    start_timeout = 20.0

    def __init__(self, datadir, port=None, appendonly=False):
        super().__init__(datadir, port)
        self.appendonly = appendonly

    def _command(self):
        return ['redis-server', '--bind', '127.0.0.1',
                '--port', str(self.port), '--dir', str(self.datadir),
                '--requirepass', self.password, '--save', '',
                '--appendonly', 'yes' if self.appendonly else 'no',
                '--daemonize', 'no', '--protected-mode', 'yes']

    def _ready(self):
        with socket.create_connection(('127.0.0.1', self.port),
                                      timeout=1) as sock:
            sock.sendall(f'AUTH {self.password}\r\nPING\r\n'.encode())
            return b'+PONG' in sock.recv(256)

    @property
    def url(self):
        return f'redis://:{self.password}@127.0.0.1:{self.port}/0'


class ZooKeeperServer(Service):
    """A standalone ZooKeeper 3.8 run straight from the Debian jars.

    tickTime is 500 ms so sessions may be 1-30 s (tests use short claim
    expiries); the four-letter words kazoo uses are whitelisted and the
    admin HTTP server (port 8080) is off.
    """

    name = 'zookeeper'
    start_timeout = 60.0
    jar = '/usr/share/java/zookeeper.jar'

    def _prepare(self):
        data = self.datadir / 'data'
        data.mkdir(exist_ok=True)
        (self.datadir / 'zoo.cfg').write_text(
            f'tickTime=500\ninitLimit=10\nsyncLimit=5\n'
            f'dataDir={data}\nclientPort={self.port}\n'
            'clientPortAddress=127.0.0.1\nmaxClientCnxns=200\n'
            'minSessionTimeout=1000\nmaxSessionTimeout=30000\n'
            '4lw.commands.whitelist=*\nadmin.enableServer=false\n'
            'autopurge.purgeInterval=0\n')
        (self.datadir / 'log4j.properties').write_text(
            'log4j.rootLogger=WARN, CONSOLE\n'
            'log4j.appender.CONSOLE=org.apache.log4j.ConsoleAppender\n'
            'log4j.appender.CONSOLE.layout=org.apache.log4j.PatternLayout\n'
            'log4j.appender.CONSOLE.layout.ConversionPattern='
            '%d %-5p [%t] %c{1}: %m%n\n')

    def _command(self):
        if not os.path.exists(self.jar):
            raise ServiceError(f'zookeeper: {self.jar} not found; run '
                               'tools/bootstrap')
        classpath = f'{self.datadir}:{self.jar}'
        return ['java', '-Xmx128m', '-XX:+UseSerialGC',
                '-Dzookeeper.log.dir=' + str(self.datadir),
                '-Dlog4j.configuration=file:' +
                str(self.datadir / 'log4j.properties'),
                '-cp', classpath,
                'org.apache.zookeeper.server.ZooKeeperServerMain',
                str(self.datadir / 'zoo.cfg')]

    def _ready(self):
        with socket.create_connection(('127.0.0.1', self.port),
                                      timeout=1) as sock:
            sock.sendall(b'ruok')
            return sock.recv(16) == b'imok'

    @property
    def url(self):
        return f'127.0.0.1:{self.port}'


class MariaDBServer(Service):
    """mariadbd with its own datadir; user ``ow`` with a random password.

    Durability settings are relaxed (no binlog, flush once a second): this
    is a test server.  ``create_database(name)`` returns a SQLAlchemy URL.
    """

    name = 'mariadb'
    start_timeout = 60.0
    user = 'ow'

    @property
    def socket_path(self):
        return self.datadir / 'mysqld.sock'

    def _prepare(self):
        data = self.datadir / 'data'
        if (data / 'mysql').is_dir():
            return
        data.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(
            ['mariadb-install-db', '--no-defaults', f'--datadir={data}',
             '--user=root', '--auth-root-authentication-method=socket',
             '--skip-test-db'],
            capture_output=True, text=True, check=False)
        if result.returncode:
            shutil.rmtree(data, ignore_errors=True)
            raise ServiceError('mariadb-install-db failed: ' +
                               (result.stderr or result.stdout)[-800:])
        self.extra['initialised'] = False

    def _command(self):
        return ['mariadbd', '--no-defaults', '--user=root',
                f'--datadir={self.datadir / "data"}',
                f'--port={self.port}', '--bind-address=127.0.0.1',
                f'--socket={self.socket_path}',
                f'--pid-file={self.datadir / "mysqld.pid"}',
                '--skip-log-bin', '--innodb-flush-log-at-trx-commit=2',
                '--innodb-buffer-pool-size=128M', '--max-connections=1000',
                '--character-set-server=utf8mb4',
                '--collation-server=utf8mb4_general_ci']

    def _root(self):
        import pymysql
        return pymysql.connect(unix_socket=str(self.socket_path),
                               user='root', connect_timeout=2,
                               autocommit=True)

    def _ready(self):
        with contextlib.closing(self._root()) as conn:
            if not self.extra.get('initialised'):
                with conn.cursor() as cur:
                    for host in ('127.0.0.1', 'localhost'):
                        cur.execute(
                            f"CREATE USER IF NOT EXISTS '{self.user}'@"
                            f"'{host}' IDENTIFIED BY %s", (self.password,))
                        cur.execute(f"GRANT ALL ON *.* TO '{self.user}'@"
                                    f"'{host}' WITH GRANT OPTION")
                self.extra['initialised'] = True
                self._save()
        return True

    @property
    def url(self):
        return (f'mysql+pymysql://{self.user}:{self.password}@127.0.0.1:'
                f'{self.port}/')

    def create_database(self, name):
        """CREATE DATABASE ``name`` (idempotent); its SQLAlchemy URL."""
        if not name.replace('_', '').isalnum():
            raise ServiceError(f'bad database name {name!r}')
        with contextlib.closing(self._root()) as conn:
            with conn.cursor() as cur:
                cur.execute(f'CREATE DATABASE IF NOT EXISTS `{name}` '
                            'CHARACTER SET utf8mb4')
        return self.url + name

    def drop_database(self, name):
        with contextlib.closing(self._root()) as conn:
            with conn.cursor() as cur:
                cur.execute(f'DROP DATABASE IF EXISTS `{name}`')


class RabbitMQServer(Service):
    """A private RabbitMQ node with its own epmd, cookie and user.

    The node name, Erlang distribution port and epmd port are private, so
    it neither joins nor disturbs a system RabbitMQ; ``stop()`` also ends
    the epmd it started.
    """

    name = 'rabbitmq'
    start_timeout = 90.0
    user = 'ow'
    server = '/usr/lib/rabbitmq/bin/rabbitmq-server'

    def _prepare(self):
        for key in ('dist_port', 'epmd_port'):
            if not self.extra.get(key):
                self.extra[key] = free_port()
        (self.datadir / 'log').mkdir(exist_ok=True)
        (self.datadir / 'rabbitmq.conf').write_text(
            f'default_user = {self.user}\ndefault_pass = {self.password}\n'
            'loopback_users = none\nlog.console = false\n'
            'log.file.level = warning\n'
            'disk_free_limit.absolute = 50MB\n')
        (self.datadir / 'enabled_plugins').write_text('[].\n')
        (self.datadir / 'rabbitmq-env.conf').write_text('')
        cookie = self.datadir / '.erlang.cookie'
        if not cookie.exists():
            cookie.write_text(secrets.token_hex(16))
            cookie.chmod(0o400)

    def _command(self):
        return [self.server]

    def _environ(self):
        env = dict(os.environ)
        base = self.datadir
        env.update({
            'HOME': str(base),
            'RABBITMQ_NODENAME': f'ow{self.port}@localhost',
            'RABBITMQ_NODE_IP_ADDRESS': '127.0.0.1',
            'RABBITMQ_NODE_PORT': str(self.port),
            'RABBITMQ_DIST_PORT': str(self.extra['dist_port']),
            'ERL_EPMD_PORT': str(self.extra['epmd_port']),
            'ERL_EPMD_ADDRESS': '127.0.0.1',
            'RABBITMQ_MNESIA_BASE': str(base / 'mnesia'),
            'RABBITMQ_LOG_BASE': str(base / 'log'),
            'RABBITMQ_CONFIG_FILE': str(base / 'rabbitmq.conf'),
            'RABBITMQ_ADVANCED_CONFIG_FILE': str(base / 'advanced.config'),
            'RABBITMQ_ENABLED_PLUGINS_FILE': str(base / 'enabled_plugins'),
            'RABBITMQ_CONF_ENV_FILE': str(base / 'rabbitmq-env.conf'),
            'RABBITMQ_PID_FILE': str(base / 'rabbitmq.pid'),
        })
        return env

    def _ready(self):
        with socket.create_connection(('127.0.0.1', self.port),
                                      timeout=2) as sock:
            sock.sendall(b'AMQP\x00\x00\x09\x01')
            return sock.recv(1) == b'\x01'      # Connection.Start frame

    def _after_stop(self):
        if not self.extra.get('epmd_port') or not shutil.which('epmd'):
            return
        env = dict(os.environ, ERL_EPMD_PORT=str(self.extra['epmd_port']))
        subprocess.run(['epmd', '-kill'], env=env, capture_output=True,
                       check=False, timeout=10)

    @property
    def url(self):
        return f'rabbit://{self.user}:{self.password}@127.0.0.1:{self.port}/'


SERVICES = {cls.name: cls for cls in (RedisServer, ZooKeeperServer,
                                       MariaDBServer, RabbitMQServer)}
