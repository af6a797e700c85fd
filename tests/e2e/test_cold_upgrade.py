"""cold-upgrade against a sandbox of its own (stock Octavia, no-op drivers).

The runbook stops and starts this sandbox's real octavia-api and
octavia-worker processes (``owtools.sandbox.servicectl``, standing in
for ``systemctl``), backs up its MariaDB database with ``mariadb-dump``
(password given as a secret), and runs the real ``octavia-db-manage
upgrade head``.  A dedicated sandbox, so the session sandbox that other
tests use is never without its API.  Conductors are real processes on
the real Redis jobboard, killed with SIGKILL while the job waits at the
approval gate and while the database upgrade runs.
"""

import contextlib
import json
import pathlib
import signal
import sys
import time
import uuid

import pytest

from e2e.runbookhelp import RunbookCli
from owtools.sandbox import Sandbox, SandboxError, seed
from owtools.sandbox.api import ApiError, OctaviaApi

pytestmark = pytest.mark.e2e

EXPIRY = 4
TOOLS = str(pathlib.Path(__file__).resolve().parents[2] / 'tools')
VENV_BIN = str(pathlib.Path(sys.executable).parent)


@pytest.fixture(scope='module')
def box(tmp_path_factory, mariadb_server):
    """A sandbox for this module only (its own RabbitMQ; the session's
    MariaDB)."""
    directory = tmp_path_factory.mktemp('cu-sandbox')
    sandbox = Sandbox(f'cu{uuid.uuid4().hex[:6]}', directory=directory)
    db_url = mariadb_server.create_database(
        f'octavia_cu_{uuid.uuid4().hex[:6]}')
    try:
        sandbox.start(db_url=db_url, user_clouds=False)
    except SandboxError as exc:
        pytest.fail(f'sandbox could not start: {exc}', pytrace=False)
    yield sandbox
    sandbox.stop(quiet=True)


class Upgrade(RunbookCli):
    """A configuration whose [cold_upgrade] drives the sandbox ``box``."""

    def __init__(self, tmp_path, box, mariadb, redis=None):
        self.tmp = tmp_path
        self.box = box
        self.svc_log = tmp_path / 'services.log'
        self.db_log = tmp_path / 'db-upgrade.log'
        self.fail_once = tmp_path / 'fail-once'
        self.password = mariadb.password
        ctl = (f'env PYTHONPATH={TOOLS} {sys.executable} -m '
               f'owtools.sandbox.servicectl --dir {box.dir} --log '
               f'{self.svc_log} --fail-once {self.fail_once} --host {{host}}')
        group = {'controllers': 'ctl1', 'command_timeout': 120,
                 'secrets': f'db:{self.password}',
                 'backup_file': f'{tmp_path}/octavia-{{job_id}}.sql'}
        for service in ('housekeeping', 'health_manager', 'api', 'worker'):
            label = service.replace('_', '-')
            for verb in ('stop', 'start'):
                group[f'{service}_{verb}_command'] = f'{ctl} {verb} {label}'
        database = box.db_url.rsplit('/', 1)[1]
        group['backup_command'] = (
            f'shell: mariadb-dump --host=127.0.0.1 --port={mariadb.port} '
            f'--user={mariadb.user} --password={{secret:db}} {database} '
            f'> {{backup_file}}')
        group['db_upgrade_command'] = (
            f'shell: echo started >> {self.db_log} && sleep 2 && '
            f'{VENV_BIN}/octavia-db-manage --config-file {box.conf_path} '
            f'upgrade head')
        super().__init__(
            tmp_path, 'redis' if redis else None, redis, expiry=EXPIRY,
            cloud=box.cloud_name, groups={'cold_upgrade': group},
            env={'OS_CLIENT_CONFIG_FILE': str(box.clouds_yaml)})

    def services(self):
        if not self.svc_log.exists():
            return []
        return [tuple(line.split()[:2]) for line in
                self.svc_log.read_text().splitlines()]


@pytest.fixture
def upgrade(tmp_path, box, mariadb_server, request):
    made = []

    def make(board=False):
        redis = request.getfixturevalue('redis_server') if board else None
        made.append(Upgrade(tmp_path, box, mariadb_server, redis))
        return made[-1]

    yield make
    for item in made:
        item.stop()
    # Whatever happened, leave the sandbox's services running.
    from owtools.sandbox import servicectl

    for service in ('worker', 'api'):
        servicectl.start(box, service)


@pytest.fixture
def own_lbs(box):
    """Seeds load balancers for one test and deletes them afterwards
    (after ``upgrade`` restarted the services, when listed before it).

    The module's tests share one sandbox and every cold-upgrade pre-flight
    looks at all its load balancers: each test leaves none behind (none
    still ``PENDING_*`` from its failovers, above all).
    """
    made = []

    def make(count, topology='SINGLE'):
        made.extend(seed.seed_api(box.api, count, topology=topology))
        return made[-count:]

    yield make
    if made:
        remove_lbs(box, made)


def remove_lbs(box, lb_ids, timeout=120):
    """Wait until no load balancer of ``lb_ids`` is PENDING_*, delete
    them (cascade) and wait until they are gone."""
    deadline = time.monotonic() + timeout
    left = set(lb_ids)
    while left:
        lbs = {lb['id']: lb for lb in box.api.list_all(
            '/v2/lbaas/loadbalancers', 'loadbalancers')}
        left &= set(lbs)
        for lb_id in sorted(left):
            status = lbs[lb_id]['provisioning_status']
            if status in ('ACTIVE', 'ERROR'):
                with contextlib.suppress(ApiError):   # busy: next round
                    box.api.delete(f'/v2/lbaas/loadbalancers/{lb_id}'
                                   '?cascade=true')
        if not left:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f'load balancers not removed in {timeout} '
                                 f's: {sorted(left)}')
        time.sleep(0.2)


def api_answers(box):
    return OctaviaApi(box.api_url, timeout=2).answering()


def wait_file_lines(path, count, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and len(path.read_text().splitlines()) >= count:
            return
        time.sleep(0.05)
    raise AssertionError(f'{path} has not {count} lines')


STOPS = [('stop', 'housekeeping'), ('stop', 'health-manager'),
         ('stop', 'api'), ('stop', 'worker')]
STARTS = [('start', 'worker'), ('start', 'api'),
          ('start', 'health-manager'), ('start', 'housekeeping')]


def test_preflight_refuses_pending_and_bad_input_posts_nothing(
        box, own_lbs, upgrade):
    up = upgrade()
    proc = up.cli('submit', 'cold-upgrade', '--param', 'nosuch=1')
    assert proc.returncode == 2 and 'unknown parameter' in proc.stderr
    proc = up.cli('submit', 'cold-upgrade', '--param',
                  'image_file=/nonexistent.qcow2')
    assert proc.returncode == 2 and 'is not a file' in proc.stderr
    assert up.cli('list', '--all', '-f', 'value', check=0).stdout == ''
    [busy] = own_lbs(1)
    box.inject(delays={'compute.build': 6.0})
    try:
        box.connect().load_balancer.failover_load_balancer(busy)
        proc = up.cli('submit', 'cold-upgrade', '--wait', '-f', 'json')
    finally:
        box.clear_injection()
    assert proc.returncode == 1, proc.stderr
    job = json.loads(proc.stdout)
    assert job['state'] == 'FAILED'
    assert job['reason'].startswith('pre-flight refused: 1 load balancer')
    assert busy in job['reason'] and 'nothing was stopped' in job['reason']
    assert up.services() == []
    assert api_answers(box)


def test_cold_upgrade_survives_kills_at_gate_and_during_db_upgrade(
        box, own_lbs, upgrade):
    up = upgrade(board=True)
    # Nothing another test left may make the pre-flight refuse.
    assert not [lb for lb in box.api.list_all('/v2/lbaas/loadbalancers',
                                              'loadbalancers')
                if lb['provisioning_status'].startswith('PENDING_')]
    lbs = own_lbs(2)
    image_file = up.tmp / 'amphora-new.qcow2'
    image_file.write_bytes(b'QFI\xfb' + b'\0' * 4096)
    up.fail_once.write_text('start health-manager')
    params = ['--param', f'image_file={image_file}', '--param',
              'rotate=true', '--param', 'rotate_concurrency=2']

    plan = up.cli('submit', 'cold-upgrade', *params, '--dry-run', check=0)
    assert 'approve:upgrade-packages' in plan.stdout
    assert '--password=***' in plan.stdout
    assert up.password not in plan.stdout

    job_id = up.cli('submit', 'cold-upgrade', *params, '-f', 'value', '-c',
                    'id', check=0).stdout.strip()
    first = up.conductor('a')
    proc = up.cli('wait', job_id, '--timeout', '120')
    assert proc.returncode == 4, proc.stderr
    assert ('approval needed: upgrade the Octavia packages on all '
            'controllers now') in proc.stderr
    assert f'octavia-workflow approve {job_id}' in proc.stderr
    assert up.services() == STOPS
    assert not api_answers(box)
    backup = up.tmp / f'octavia-{job_id}.sql'
    assert b'CREATE TABLE `load_balancer`' in backup.read_bytes()
    job = up.show(job_id)
    assert job['state'] == 'PAUSED'
    assert job['gate'].startswith('upgrade the Octavia packages')

    # The conductor dies while the job waits at the gate; another one
    # continues after the approval.
    first.send_signal(signal.SIGKILL)
    first.wait()
    up.cli('approve', job_id, check=0)
    second = up.conductor('b')
    wait_file_lines(up.db_log, 1)
    second.send_signal(signal.SIGKILL)        # during octavia-db-manage
    second.wait()
    up.conductor('c')
    proc = up.cli('wait', job_id, '--timeout', '120')
    assert proc.returncode == 4, proc.stderr
    job = up.show(job_id)
    assert 'db-upgrade was running on b-' in job['gate']
    assert 'outcome is unknown' in job['gate']
    assert len(up.db_log.read_text().splitlines()) == 1   # not re-run

    up.cli('approve', job_id, check=0)
    proc = up.cli('wait', job_id, '--timeout', '120')
    assert proc.returncode == 4, proc.stderr
    assert 'start:health-manager@ctl1 failed: exit 1: injected failure' \
        in up.show(job_id)['gate']
    up.cli('approve', job_id, '--gate', 'start:health-manager@ctl1:retry-1',
           check=0)
    proc = up.cli('wait', job_id, '--timeout', '120')
    assert proc.returncode == 0, proc.stderr

    assert up.services() == STOPS + [
        ('start', 'worker'), ('start', 'api'), ('start', 'health-manager'),
        ('start', 'health-manager'), ('start', 'housekeeping')]
    assert len(up.db_log.read_text().splitlines()) == 2
    assert api_answers(box)
    report = up.report(job_id)
    assert {r['state'] for r in report.values()} == {'DONE'}
    assert report['backup']['after'] == {'backup_file': str(backup)}
    assert report['db-upgrade']['attempts'] == 2
    image = report['image']['after']['image']
    assert report['image']['after']['untagged']
    job = up.show(job_id)
    assert [a['gate'] for a in job['approvals']] == [
        'cold-upgrade:approve:upgrade-packages', 'db-upgrade:unknown-1',
        'start:health-manager@ctl1:retry-1']

    rotate = report['rotate']['after']['job']
    proc = up.cli('wait', rotate, '--timeout', '120')
    assert proc.returncode == 0, proc.stderr
    amphorae = list(box.connect().load_balancer.amphorae())
    for lb_id in lbs:
        live = [a for a in amphorae if a.loadbalancer_id == lb_id
                and a.status != 'DELETED']
        assert live and {a.image_id for a in live} == {image}

    # Nothing secret anywhere: outputs, logs, the persistence store.
    seen = [up.cli('show', job_id, '-f', 'json').stdout,
            up.cli('report', job_id, '-f', 'json').stdout,
            (up.tmp / 'persistence.sqlite').read_bytes().decode(
                errors='replace')]
    seen += [p.log.read_text(errors='replace') for p in up.procs]
    assert '--password=***' in seen[2]     # the command, masked
    for text in seen:
        assert up.password not in text
