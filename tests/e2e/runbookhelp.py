"""What the e2e runbook tests share: a configuration + CLI driver, and
counts read from the sandbox's own Octavia database."""

import json
import signal
import time
import uuid

from clihelp import poll_job, run, start, write_conf
import sqlalchemy as sa

from octavia_workflows.engine import records as rec


class RunbookCli:
    """One configuration file (inline, or a Redis or ZooKeeper jobboard)
    and the real CLI and conductors against it.

    ``groups`` adds configuration groups; ``env`` is passed to every
    process started; ``url`` is the persistence store (default: SQLite
    in ``tmp_path``).
    """

    def __init__(self, tmp_path, board=None, server=None, expiry=4,
                 cloud='sandbox', groups=None, env=None, url=None):
        self.tmp_path = tmp_path
        self.env = env
        self.url = url or f'sqlite:///{tmp_path}/persistence.sqlite'
        task_flow = {'persistence_connection': self.url,
                     'jobboard_enabled': bool(board),
                     'jobboard_expiration_time': expiry}
        if board:
            task_flow.update(
                jobboard_backend_driver=f'{board}_taskflow_driver',
                jobboard_backend_hosts='127.0.0.1',
                jobboard_backend_port=server.port,
                jobboard_backend_namespace=f'owe2e_{uuid.uuid4().hex[:10]}')
            if board == 'redis':
                task_flow['jobboard_backend_password'] = server.password
        self.conf = write_conf(tmp_path / 'ow.conf', task_flow=task_flow,
                               conductor={'poll_interval': 0.2},
                               cloud={'name': cloud}, **(groups or {}))
        self.procs = []
        self.cli('db', 'upgrade', check=0)

    def cli(self, *args, check=None, timeout=180):
        return run(self.conf, *args, check=check, timeout=timeout,
                   env=self.env)

    @staticmethod
    def params(params):
        return [f'--param={k}={v}' for k, v in params.items()]

    def plan(self, workflow, **params):
        return json.loads(self.cli('submit', workflow, '--dry-run', '-f',
                                   'json', *self.params(params),
                                   check=0).stdout)

    def submit(self, workflow, check=None, **params):
        proc = self.cli('submit', workflow, '-f', 'json',
                        *self.params(params), check=check)
        return json.loads(proc.stdout) if proc.stdout.strip() else None

    def show(self, job_id):
        return json.loads(self.cli('show', job_id, '-f', 'json',
                                   check=0).stdout)

    def report(self, job_id):
        rows = json.loads(self.cli('report', job_id, '-f', 'json',
                                   check=0).stdout)
        return {r['target']: r for r in rows}

    def jobs(self):
        return json.loads(self.cli('list', '--all', '-f', 'json',
                                   check=0).stdout)

    def background(self, name, *args):
        """Start ``octavia-workflow --debug ARGS`` with its log in
        ``<tmp>/<name>.log`` (``proc.log``)."""
        log = self.tmp_path / f'{name}.log'
        proc = start(self.conf, '--debug', *args, log=log, env=self.env)
        proc.log = log
        self.procs.append(proc)
        return proc

    def conductor(self, name):
        return self.background(f'conductor-{name}', 'conductor', '--name',
                               name)

    def wait_for(self, job_id, predicate, timeout=90, what='condition'):
        return poll_job(self.show, job_id, predicate, timeout, what,
                        interval=0.1)

    def records(self):
        return rec.Records(sa.create_engine(self.url))

    def targets(self, job_id):
        """The job's target records, straight from the database."""
        engine = sa.create_engine(self.url)
        try:
            return rec.Records(engine).get_targets(job_id)
        finally:
            engine.dispose()

    def stop(self):
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
            proc.wait()


def live_amphorae(sandbox, lb_id):
    return [a for a in sandbox.accounting().amphorae(lb_id)
            if a['status'] != 'DELETED']


def failovers(sandbox, lb_ids):
    """{lb: (live, deleted)} -- (n, n) means exactly one failover each."""
    result = {}
    for lb_id, by_status in sandbox.accounting().amphorae_by_lb(
            lb_ids).items():
        live = sum(n for s, n in by_status.items() if s != 'DELETED')
        result[lb_id] = (live, by_status.get('DELETED', 0))
    return result


def lb_status(sandbox, lb_ids):
    """{lb: provisioning_status} from Octavia's database."""
    with sandbox.accounting().engine.connect() as conn:
        rows = conn.execute(sa.text(
            'SELECT id, provisioning_status FROM load_balancer WHERE id IN '
            ':ids').bindparams(sa.bindparam('ids', expanding=True)),
            {'ids': list(lb_ids)})
        return dict(rows.fetchall())


def until(what, check, timeout=60, every=0.3):
    """``check()``'s first true value, looked at every ``every`` seconds;
    AssertionError naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f'not {what} after {timeout} s')
        time.sleep(every)
