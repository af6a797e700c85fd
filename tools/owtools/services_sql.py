"""Private PostgreSQL servers and MariaDB Galera clusters on loopback.

Companions of :mod:`owtools.services` for the production database tests::

    from owtools.services_sql import PostgreSQLServer, GaleraCluster
    pg = PostgreSQLServer('/tmp/x/pg').start()
    pg.create_database('ow')     # postgresql+psycopg://ow:<pw>@127.0.0.1:<p>/ow

    cluster = GaleraCluster('/tmp/x/galera').start()    # three nodes
    cluster.create_database('ow')   # mysql+pymysql://...?host=..&host=..
    cluster.kill(0)                 # SIGKILL node 0 (a crash)

PostgreSQL refuses to run as root, so when the caller is root the server
runs as the ``postgres`` system user the Debian package creates, with its
data in a private directory that user owns (``remove()`` deletes it).
Its Unix socket is in that directory too, so it never meets a system
PostgreSQL; TCP clients log in with a password (scram-sha-256) on
127.0.0.1 only.

A Galera node is a ``mariadbd`` with the wsrep provider loaded, its own
ports for clients, group communication (gcomm), IST and rsync SST.  The
first node bootstraps the cluster (``--wsrep-new-cluster``), the others
join it by SST.  A server or node that cannot start raises
:class:`~owtools.services.ServiceError` with its log's tail.
"""

import contextlib
import os
import pathlib
import pwd
import shutil
import socket
import subprocess
import tempfile

from owtools.services import MariaDBServer, Service, ServiceError, free_port

PG_BIN = pathlib.Path('/usr/lib/postgresql/15/bin')
GALERA_PROVIDER = '/usr/lib/galera/libgalera_smm.so'


def _valid_name(name):
    if not name.replace('_', '').isalnum():
        raise ServiceError(f'bad database name {name!r}')
    return name


class PostgreSQLServer(Service):
    """A private PostgreSQL 15; superuser ``ow`` with a random password.

    ``create_database(name)`` returns a ``postgresql+psycopg://`` URL.
    Durability is relaxed (``fsync=off``): this is a test server.
    """

    name = 'postgresql'
    start_timeout = 60.0
    user = 'ow'

    @property
    def pgdata(self):
        """The private directory the server owns (data and socket)."""
        if not self.extra.get('pgdata'):
            if os.geteuid() == 0:
                base = tempfile.mkdtemp(prefix='ow-pg-', dir='/tmp')
            else:
                base = str(self.datadir / 'pg')
                os.makedirs(base, exist_ok=True)
            self.extra['pgdata'] = base
            self._save()
        return pathlib.Path(self.extra['pgdata'])

    def _run_as(self):
        return 'postgres' if os.geteuid() == 0 else None

    def _prepare(self):
        base = self.pgdata
        data = base / 'data'
        owner = self._run_as()
        if owner:
            entry = pwd.getpwnam(owner)
            os.chown(base, entry.pw_uid, entry.pw_gid)
            os.chmod(base, 0o700)
        if (data / 'PG_VERSION').exists():
            return
        pwfile = base / 'pw'
        pwfile.write_text(self.password + '\n')
        if owner:
            os.chown(pwfile, entry.pw_uid, entry.pw_gid)
        result = subprocess.run(
            [str(PG_BIN / 'initdb'), '-D', str(data), '-U', self.user,
             f'--pwfile={pwfile}', '--auth-local=peer',
             '--auth-host=scram-sha-256', '-E', 'UTF8', '--locale=C.UTF-8',
             '--no-sync'],
            capture_output=True, text=True, check=False, user=owner,
            cwd=base)
        pwfile.unlink()
        if result.returncode:
            shutil.rmtree(data, ignore_errors=True)
            raise ServiceError('initdb failed: ' +
                               (result.stderr or result.stdout)[-800:])

    def _command(self):
        return [str(PG_BIN / 'postgres'), '-D', str(self.pgdata / 'data'),
                '-c', 'listen_addresses=127.0.0.1', '-c', f'port={self.port}',
                '-c', f'unix_socket_directories={self.pgdata}',
                '-c', 'fsync=off', '-c', 'synchronous_commit=off',
                '-c', 'full_page_writes=off', '-c', 'max_connections=300',
                '-c', 'shared_buffers=64MB', '-c', 'log_min_messages=warning']

    def start(self, timeout=None):
        if not (PG_BIN / 'postgres').exists():
            raise ServiceError(f'postgresql: {PG_BIN}/postgres not found; '
                               'run tools/bootstrap')
        return super().start(timeout)

    def _popen_kwargs(self):
        # The caller's directory may be closed to the server's user.
        return {'user': self._run_as(), 'cwd': self.pgdata}

    def _connect(self, dbname='postgres'):
        import psycopg

        return psycopg.connect(host='127.0.0.1', port=self.port,
                               user=self.user, password=self.password,
                               dbname=dbname, connect_timeout=2,
                               autocommit=True)

    def _ready(self):
        with contextlib.closing(self._connect()) as conn:
            conn.execute('SELECT 1')
        return True

    @property
    def url(self):
        return (f'postgresql+psycopg://{self.user}:{self.password}@'
                f'127.0.0.1:{self.port}/')

    def create_database(self, name):
        """CREATE DATABASE ``name`` (idempotent); its SQLAlchemy URL."""
        _valid_name(name)
        with contextlib.closing(self._connect()) as conn:
            exists = conn.execute('SELECT 1 FROM pg_database WHERE '
                                  'datname = %s', (name,)).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{name}"')
        return self.url + name

    def drop_database(self, name):
        _valid_name(name)
        with contextlib.closing(self._connect()) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def remove(self):
        """Stop the server and delete its private data directory."""
        self.stop()
        if self.extra.get('pgdata'):
            shutil.rmtree(self.extra['pgdata'], ignore_errors=True)


class GaleraNode(MariaDBServer):
    """One MariaDB Galera node (see :class:`GaleraCluster`).

    Its service state and log are in ``datadir``; its configuration,
    data, socket and pid file in ``home``, a private directory the
    server's user owns (rsync SST runs as that user and must write it).
    """

    name = 'galera'
    start_timeout = 120.0

    def __init__(self, datadir, home, cluster_address, bootstrap=False):
        super().__init__(datadir)
        self.home = pathlib.Path(home)
        self.cluster_address = cluster_address
        self.bootstrap = bootstrap
        for key in ('gcomm_port', 'ist_port', 'sst_port'):
            if not self.extra.get(key):
                self.extra[key] = free_port()

    @property
    def gcomm_address(self):
        return f'127.0.0.1:{self.extra["gcomm_port"]}'

    @property
    def socket_path(self):
        return self.home / 'mysqld.sock'

    def _run_as(self):
        return 'mysql' if os.geteuid() == 0 else None

    def _popen_kwargs(self):
        return {'user': self._run_as(), 'cwd': self.home}

    def _prepare(self):
        data = self.home / 'data'
        data.mkdir(parents=True, exist_ok=True)
        conf = self.home / 'my.cnf'
        conf.write_text(self._config())
        owner = self._run_as()
        if owner:
            entry = pwd.getpwnam(owner)
            for path in (self.home, conf, data):
                os.chown(path, entry.pw_uid, entry.pw_gid)
            os.chmod(self.home, 0o700)
        if self.bootstrap and not (data / 'mysql').is_dir():
            result = subprocess.run(
                ['mariadb-install-db', f'--defaults-file={conf}',
                 f'--user={owner or pwd.getpwuid(os.geteuid()).pw_name}',
                 '--auth-root-authentication-method=socket',
                 '--skip-test-db'],
                capture_output=True, text=True, check=False, cwd=self.home)
            if result.returncode:
                raise ServiceError('mariadb-install-db failed: ' +
                                   (result.stderr or result.stdout)[-800:])
            self.extra['initialised'] = False

    def _config(self):
        gcomm = self.extra['gcomm_port']
        return (
            '[mysqld]\n'
            f'datadir={self.home / "data"}\n'
            f'port={self.port}\nbind-address=127.0.0.1\n'
            f'socket={self.socket_path}\n'
            f'pid-file={self.home / "mysqld.pid"}\n'
            'skip-log-bin\n'
            'binlog_format=ROW\ndefault_storage_engine=InnoDB\n'
            'innodb_autoinc_lock_mode=2\n'
            'innodb_flush_log_at_trx_commit=2\n'
            'innodb_buffer_pool_size=64M\ninnodb_log_file_size=16M\n'
            'max_connections=500\n'
            'character-set-server=utf8mb4\n'
            'collation-server=utf8mb4_general_ci\n'
            'wsrep_on=ON\n'
            f'wsrep_provider={GALERA_PROVIDER}\n'
            f'wsrep_cluster_address={self.cluster_address}\n'
            'wsrep_cluster_name=ow-test\n'
            f'wsrep_node_address=127.0.0.1:{gcomm}\n'
            f'wsrep_node_name=node-{self.port}\n'
            'wsrep_sst_method=rsync\n'
            f'wsrep_sst_receive_address=127.0.0.1:{self.extra["sst_port"]}\n'
            'wsrep_provider_options="'
            f'gmcast.listen_addr=tcp://127.0.0.1:{gcomm};'
            f'ist.recv_addr=127.0.0.1:{self.extra["ist_port"]};'
            'evs.suspect_timeout=PT3S;evs.inactive_timeout=PT6S;'
            'evs.install_timeout=PT6S;gcache.size=32M"\n'
            '[sst]\nprogress=0\n')

    def _command(self):
        argv = ['mariadbd', f'--defaults-file={self.home / "my.cnf"}']
        if self.bootstrap:
            argv.append('--wsrep-new-cluster')
        return argv

    def _environ(self):
        env = dict(os.environ)
        env['PATH'] = '/usr/bin:/usr/sbin:/bin:/sbin:' + env.get('PATH', '')
        return env

    def _ready(self):
        with contextlib.closing(self._root()) as conn:
            with conn.cursor() as cur:
                cur.execute("SHOW STATUS LIKE 'wsrep_local_state_comment'")
                row = cur.fetchone()
                if not row or row[1] != 'Synced':
                    return False
        return super()._ready()

    def wsrep_status(self):
        """``{name: value}`` of the node's wsrep status variables."""
        with contextlib.closing(self._root()) as conn:
            with conn.cursor() as cur:
                cur.execute("SHOW STATUS LIKE 'wsrep_%'")
                return dict(cur.fetchall())


class GaleraCluster:
    """Three (``size``) Galera nodes on loopback in one directory.

    ``start()`` bootstraps node 0 and joins the others; ``kill(n)`` sends
    node ``n`` SIGKILL; ``restart(n)`` brings it back (it rejoins by IST
    or SST).  All nodes share the user ``ow`` and its password (created
    on node 0, replicated to the others).
    """

    def __init__(self, directory, size=3):
        self.directory = pathlib.Path(directory).resolve()
        self.directory.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            # The nodes run as ``mysql``: their files go where it may go.
            self.home = pathlib.Path(tempfile.mkdtemp(prefix='ow-galera-',
                                                      dir='/tmp'))
            os.chmod(self.home, 0o711)
        else:
            self.home = self.directory / 'home'
        self.nodes = [GaleraNode(self.directory / f'node{index}',
                                 self.home / f'node{index}', '',
                                 bootstrap=index == 0)
                      for index in range(size)]
        address = 'gcomm://' + ','.join(n.gcomm_address for n in self.nodes)
        for index, node in enumerate(self.nodes):
            node.cluster_address = address
            if index:
                node.password = self.nodes[0].password
                node.extra['initialised'] = True   # the user replicates
            node._save()

    @property
    def password(self):
        return self.nodes[0].password

    @property
    def user(self):
        return self.nodes[0].user

    def start(self):
        """Start every node, the first one bootstrapping the cluster."""
        try:
            for index, node in enumerate(self.nodes):
                node.bootstrap = index == 0 and not any(
                    n.running for n in self.nodes[1:])
                node.start()
        except ServiceError:
            self.stop()
            raise
        return self

    def stop(self):
        for node in reversed(self.nodes):
            node.stop()

    def remove(self):
        """Stop every node and delete the nodes' private files."""
        self.stop()
        shutil.rmtree(self.home, ignore_errors=True)

    def kill(self, index):
        """SIGKILL node ``index`` (a crash)."""
        self.nodes[index].kill()

    def restart(self, index):
        """Start a killed node again: it rejoins the running cluster."""
        node = self.nodes[index]
        node.bootstrap = False
        return node.start()

    def url(self, name, order=None):
        """The SQLAlchemy URL of database ``name`` listing every node
        (``order``: node indexes in the order to try; all by default)."""
        order = range(len(self.nodes)) if order is None else order
        hosts = '&'.join(f'host=127.0.0.1:{self.nodes[i].port}'
                         for i in order)
        return (f'mysql+pymysql://{self.user}:{self.password}@/{name}'
                f'?{hosts}')

    def create_database(self, name, order=None):
        """CREATE DATABASE on the cluster; its multi-host URL."""
        _valid_name(name)
        node = next(n for n in self.nodes if n.running)
        with contextlib.closing(node._root()) as conn:
            with conn.cursor() as cur:
                cur.execute(f'CREATE DATABASE IF NOT EXISTS `{name}` '
                            'CHARACTER SET utf8mb4')
        return self.url(name, order)

    def cluster_size(self, index):
        """``wsrep_cluster_size`` as node ``index`` sees it."""
        return int(self.nodes[index].wsrep_status()['wsrep_cluster_size'])


def port_open(port):
    with contextlib.suppress(OSError):
        with socket.create_connection(('127.0.0.1', port), timeout=0.5):
            return True
    return False
