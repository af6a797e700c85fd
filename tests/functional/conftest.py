"""Functional tier: the real CLI and conductors on real Redis, ZooKeeper,
MariaDB and PostgreSQL (started by the session fixtures in
``tests/conftest.py``).

``deployment`` builds one configuration file for a (jobboard, store)
pair with a namespace and database unique to the test.
"""

import json
import signal

from clihelp import poll_job, run, start, write_conf
import pytest

BOARDS = ('redis', 'zookeeper')
STORES = ('sqlite', 'mariadb', 'postgresql')

#: Claim expiry used by these tests (seconds): short, so takeovers are
#: quick, but well above the keep-alive period.
EXPIRY = 4


def board_options(kind, server, namespace, expiry=EXPIRY, password=True):
    """The ``[task_flow]`` jobboard options for a test server."""
    opts = {'jobboard_enabled': True,
            'jobboard_backend_hosts': '127.0.0.1',
            'jobboard_backend_port': server.port,
            'jobboard_backend_namespace': namespace,
            'jobboard_expiration_time': expiry}
    if kind == 'redis':
        opts['jobboard_backend_driver'] = 'redis_taskflow_driver'
        if password:
            opts['jobboard_backend_password'] = server.password
    else:
        opts['jobboard_backend_driver'] = 'zookeeper_taskflow_driver'
        if password:
            opts['jobboard_backend_username'] = 'ow'
            opts['jobboard_backend_password'] = 'zk-digest-' + namespace
    return opts


class Deployment:
    """A configuration file plus helpers to drive the CLI against it."""

    def __init__(self, tmp_path, board, store, options):
        self.tmp_path = tmp_path
        self.board = board
        self.store = store
        self.options = options
        self.path = write_conf(tmp_path / 'ow.conf', **options)
        self.conductors = []

    def cli(self, *args, check=None, timeout=120):
        return run(self.path, *args, check=check, timeout=timeout)

    def submit(self, workflow, **params):
        args = ['submit', workflow, '-f', 'value', '-c', 'id']
        for key, value in params.items():
            args += ['--param', f'{key}={value}']
        return self.cli(*args, check=0).stdout.strip()

    def show(self, job_id):
        return json.loads(self.cli('show', job_id, '-f', 'json',
                                   check=0).stdout)

    def conductor(self, name, *args):
        log = self.tmp_path / f'conductor-{name}-{len(self.conductors)}.log'
        proc = start(self.path, '--debug', 'conductor', '--name', name,
                     *args, log=log)
        proc.log = log
        self.conductors.append(proc)
        return proc

    def wait_for(self, job_id, predicate, timeout=60, what='condition'):
        return poll_job(self.show, job_id, predicate, timeout, what,
                        interval=0.2)

    def stop_all(self):
        for proc in self.conductors:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
            proc.wait()


@pytest.fixture
def make_deployment(request, tmp_path, namespace):
    """``make_deployment(board, store, **group_overrides)``."""
    made = []

    def make(board, store, expiry=EXPIRY, upgrade=True, **groups):
        server = request.getfixturevalue(f'{board}_server')
        task_flow = board_options(board, server, namespace, expiry)
        if store == 'sqlite':
            url = f'sqlite:///{tmp_path}/persistence.sqlite'
        else:
            url = request.getfixturevalue(
                f'{store}_server').create_database(namespace)
        task_flow['persistence_connection'] = url
        task_flow.update(groups.pop('task_flow', {}))
        options = {'task_flow': task_flow,
                   'conductor': dict({'poll_interval': 0.2},
                                     **groups.pop('conductor', {}))}
        options.update(groups)
        deployment = Deployment(tmp_path, board, store, options)
        if upgrade:
            deployment.cli('db', 'upgrade', check=0)
        made.append(deployment)
        return deployment

    yield make
    for deployment in made:
        deployment.stop_all()


#: (board, store) pairs a test taking both runs on: every store on Redis,
#: SQLite and MariaDB also on ZooKeeper.  The store contract does not
#: depend on the board; PostgreSQL on ZooKeeper too would add ~50 s.
PAIRS = tuple((board, store) for board in BOARDS for store in STORES
              if board == 'redis' or store != 'postgresql')


def pytest_generate_tests(metafunc):
    names = metafunc.fixturenames
    if 'board' in names and 'store' in names:
        metafunc.parametrize('board,store', PAIRS)
    elif 'board' in names:
        metafunc.parametrize('board', BOARDS)
    elif 'store' in names:
        metafunc.parametrize('store', STORES)
