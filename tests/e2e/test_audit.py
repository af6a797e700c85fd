"""``octavia-workflow audit`` and the conductor's fleet gauges against the
sandbox (stock Octavia): every figure equals a count taken with SQL from
Octavia's own database, and the audit changes nothing (only GETs reach
the API; no row of Octavia's database moves)."""

import datetime
import fcntl
import hashlib
import json
import os
import signal
import struct
import subprocess
import termios
import time
import urllib.request
import uuid

from clihelp import BIN
import pytest
import sqlalchemy as sa

from e2e.runbookhelp import RunbookCli
from owtools import services
from owtools.sandbox import heartbeats, seed

pytestmark = pytest.mark.e2e

TAG = 'amphora'
LIVE = "a.status NOT IN ('DELETED', 'PENDING_DELETE')"


def utcnow():
    return datetime.datetime.now(datetime.timezone.utc).replace(
        tzinfo=None, microsecond=0)


def execute(sandbox, statement, **params):
    with sandbox.accounting().engine.begin() as conn:
        return conn.execute(sa.text(statement), params)


def rows(sandbox, statement, **params):
    with sandbox.accounting().engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text(statement), params)]


def heartbeats_interval(sandbox):
    return float(sandbox.health().settings().get('heartbeat_interval') or 2)


@pytest.fixture(scope='module')
def fleet(sandbox):
    """Seeded load balancers in every state the census reports; marked
    DELETED afterwards (the API then no longer lists them)."""
    from owtools.standin import StandinState

    images = StandinState(str(sandbox.dir / 'standin.db'))
    old = images.create_image(f'amphora-old-{uuid.uuid4().hex[:6]}',
                              tags=[TAG])['id']
    project = f'audit-{uuid.uuid4().hex[:8]}'
    single = seed.seed_db(sandbox.db_url, 10, project_id=project,
                          prefix='audit', image_id=old, cert_days=(60, 300))
    pairs = seed.seed_db(sandbox.db_url, 2, topology='ACTIVE_STANDBY',
                         project_id=project, prefix='audit-ha', image_id=old,
                         cert_days=(60, 300))
    time.sleep(1.1)             # the new image is strictly newer
    new = images.create_image(f'amphora-new-{uuid.uuid4().hex[:6]}',
                              tags=[TAG])['id']
    now = utcnow()

    def lb(index, **values):
        sets = ', '.join(f'{k} = :{k}' for k in values)
        execute(sandbox, f'UPDATE load_balancer SET {sets} WHERE id = :id',
                id=single[index], **values)

    def amp(index, **values):
        sets = ', '.join(f'{k} = :{k}' for k in values)
        execute(sandbox, f'UPDATE amphora SET {sets} WHERE '
                f'load_balancer_id = :id', id=single[index], **values)

    hours = datetime.timedelta(hours=1)
    days = datetime.timedelta(days=1)
    lb(0, provisioning_status='PENDING_UPDATE', updated_at=now - 2 * hours)
    lb(1, provisioning_status='PENDING_UPDATE',
       updated_at=now - datetime.timedelta(minutes=1))
    amp(2, status='ERROR')
    # The agent stand-in heartbeats FAILOVER_STOPPED amphorae too, and a
    # heartbeat makes Octavia's health manager set them ALLOCATED again:
    # silence this one, and forget its health so it is not failed over.
    stopped = rows(sandbox, 'SELECT id FROM amphora WHERE load_balancer_id '
                   '= :id', id=single[3])[0][0]
    silent = heartbeats.read_knobs(sandbox.knobs_path)['silent_amphorae']
    sandbox.heartbeat_knobs(silent_amphorae=sorted(silent | {stopped}))
    time.sleep(2 * heartbeats_interval(sandbox) + 1)
    execute(sandbox, 'DELETE FROM amphora_health WHERE amphora_id = :a',
            a=stopped)
    amp(3, status='FAILOVER_STOPPED')
    amp(4, cert_expiration=now - days)
    amp(5, cert_expiration=now + 3 * days)
    amp(6, cert_expiration=now + 20 * days)
    amp(7, image_id=new)
    amp(8, created_at=now - 100 * days)
    yield {'single': single, 'pairs': pairs, 'old': old, 'new': new,
           'project': project}
    silent = heartbeats.read_knobs(sandbox.knobs_path)['silent_amphorae']
    sandbox.heartbeat_knobs(silent_amphorae=sorted(silent - {stopped}))
    execute(sandbox, "UPDATE amphora SET status = 'DELETED' WHERE "
            "load_balancer_id IN (SELECT id FROM load_balancer WHERE "
            "project_id = :p)", p=project)
    execute(sandbox, "UPDATE load_balancer SET provisioning_status = "
            "'DELETED' WHERE project_id = :p", p=project)


@pytest.fixture(scope='module')
def cli(tmp_path_factory, sandbox):
    return RunbookCli(tmp_path_factory.mktemp('audit'))


def database_figures(sandbox, newest, at, minutes=60):
    """The census's figures, counted with SQL in Octavia's database as
    of ``at`` (the moment the census was taken)."""
    lbs = "FROM load_balancer l WHERE l.provisioning_status != 'DELETED'"
    amps = "FROM amphora a WHERE a.status != 'DELETED'"
    live = f'FROM amphora a WHERE {LIVE}'
    figures = {
        'provisioning': dict(rows(sandbox, 'SELECT provisioning_status, '
                                  f'COUNT(*) {lbs} GROUP BY 1')),
        'operating': dict(rows(sandbox, 'SELECT operating_status, '
                               f'COUNT(*) {lbs} GROUP BY 1')),
        'topology': dict(rows(sandbox, f"""
            SELECT CASE
              WHEN EXISTS (SELECT 1 FROM amphora a WHERE {LIVE} AND
                  a.load_balancer_id = l.id AND a.role IN
                  ('MASTER', 'BACKUP')) THEN 'ACTIVE_STANDBY'
              WHEN EXISTS (SELECT 1 FROM amphora a WHERE {LIVE} AND
                  a.load_balancer_id = l.id) THEN 'SINGLE'
              ELSE 'NONE' END AS t, COUNT(*) {lbs} GROUP BY t""")),
        'amphora_status': dict(rows(sandbox, f'SELECT status, COUNT(*) '
                                    f'{amps} GROUP BY 1')),
        'by_image': dict(rows(sandbox, f'SELECT image_id, COUNT(*) {live} '
                              f'GROUP BY 1')),
        'not_newest': rows(sandbox, f'SELECT COUNT(*), COUNT(DISTINCT '
                           f'a.load_balancer_id) {live} AND (a.image_id IS '
                           f'NULL OR a.image_id != :new)', new=newest)[0],
        'stuck': sorted(r[0] for r in rows(
            sandbox, f"SELECT l.id {lbs} AND l.provisioning_status LIKE "
            f"'PENDING\\_%' AND COALESCE(l.updated_at, l.created_at) <= "
            f":cut", cut=at - datetime.timedelta(minutes=minutes))),
        'error': sorted(r[0] for r in rows(
            sandbox, "SELECT id FROM amphora WHERE status = 'ERROR'")),
        'stopped': sorted(r[0] for r in rows(
            sandbox, "SELECT id FROM amphora WHERE status = "
            "'FAILOVER_STOPPED'")),
    }
    day = datetime.timedelta(days=1)
    (expired, week, month, later, unknown), = rows(sandbox, f"""
        SELECT SUM(a.cert_expiration < :t0),
               SUM(a.cert_expiration >= :t0 AND a.cert_expiration < :t7),
               SUM(a.cert_expiration >= :t7 AND a.cert_expiration < :t30),
               SUM(a.cert_expiration >= :t30),
               SUM(a.cert_expiration IS NULL) {live}""",
        t0=at, t7=at + 7 * day, t30=at + 30 * day)
    figures['certificates'] = [int(v or 0) for v in
                               (expired, week, month, later, unknown)]
    (a1, a7, a30, a90, a365, older, none), = rows(sandbox, f"""
        SELECT SUM(a.created_at > :d1), SUM(a.created_at <= :d1 AND
               a.created_at > :d7), SUM(a.created_at <= :d7 AND
               a.created_at > :d30), SUM(a.created_at <= :d30 AND
               a.created_at > :d90), SUM(a.created_at <= :d90 AND
               a.created_at > :d365), SUM(a.created_at <= :d365),
               SUM(a.created_at IS NULL) {live}""",
        d1=at - day, d7=at - 7 * day, d30=at - 30 * day, d90=at - 90 * day,
        d365=at - 365 * day)
    figures['ages'] = [int(v or 0) for v in
                       (a1, a7, a30, a90, a365, older, none)]
    return figures


def census_figures(doc):
    lbs, amps, images = (doc['load_balancers'], doc['amphorae'],
                         doc['images'])
    return {
        'provisioning': lbs['by_provisioning_status'],
        'operating': lbs['by_operating_status'],
        'topology': lbs['by_topology'],
        'amphora_status': amps['by_status'],
        'by_image': {r['id']: r['amphorae'] for r in images['by_image']},
        'not_newest': (images['amphorae_not_newest'],
                       images['load_balancers_not_newest']),
        'stuck': sorted(s['id'] for s in doc['stuck']['load_balancers']),
        'error': doc['error_amphorae'],
        'stopped': doc['failover_stopped_amphorae'],
        'certificates': [r['count'] for r in
                         doc['certificates']['by_expiry']],
        'ages': [r['count'] for r in doc['amphorae']['by_age']],
    }


def fingerprint(sandbox):
    """Every row of Octavia's load balancer and amphora tables, hashed."""
    digest = hashlib.sha256()
    for table in ('load_balancer', 'amphora', 'vip'):
        for row in rows(sandbox, f'SELECT * FROM {table} ORDER BY 1'):
            digest.update(repr(row).encode())
    return digest.hexdigest()


def api_requests(sandbox, since):
    """Request lines the sandbox API logged after byte offset ``since``."""
    with open(sandbox.log_dir / 'api.out', 'rb') as handle:
        handle.seek(since)
        text = handle.read().decode(errors='replace')
    return [line.split('"')[1].split()[0] for line in text.splitlines()
            if line.count('"') >= 2 and ' HTTP/' in line]


def audit_json(cli, *args):
    return json.loads(cli.cli('audit', '-f', 'json', *args, check=0).stdout)


def test_audit_figures_equal_octavia_database_and_change_nothing(
        sandbox, fleet, cli):
    # A census and the database are compared when nothing moved while
    # the census was taken (the sandbox's own health manager may write).
    for _ in range(5):
        before, offset = fingerprint(sandbox), os.path.getsize(
            sandbox.log_dir / 'api.out')
        images_before = _images(sandbox)
        doc = audit_json(cli, '--image-tag', TAG)
        methods = api_requests(sandbox, offset)
        at = datetime.datetime.fromisoformat(doc['taken_at'].rstrip('Z'))
        counted = database_figures(sandbox, fleet['new'], at)
        if fingerprint(sandbox) == before:
            break
    else:
        pytest.fail('Octavia\'s database kept changing during the audit')
    # read-only: only GETs reached the API; the image service unchanged
    assert methods and set(methods) == {'GET'}, methods
    assert _images(sandbox) == images_before
    assert doc['images']['newest']['id'] == fleet['new']
    assert census_figures(doc) == counted
    # and the seeded cases are where they belong
    single = fleet['single']
    stuck = {s['id']: s for s in doc['stuck']['load_balancers']}
    assert single[0] in stuck and single[1] not in stuck
    assert stuck[single[0]]['provisioning_status'] == 'PENDING_UPDATE'
    commands = {f['command']: f for f in doc['findings']}
    prefix = 'octavia-workflow submit '
    assert prefix + 'rotate-images --param image_tag=amphora' in commands
    assert prefix + ('repair-stuck --param older_than_minutes=60 --param '
                     'apply=true') in commands
    assert prefix + 'failover-amphorae --param status=ERROR' in commands
    assert prefix + ('failover-amphorae --param status=FAILOVER_STOPPED'
                     ) in commands
    assert prefix + 'rotate-certificates --param within_days=30' in commands
    # a shorter limit counts the fresh PENDING one too
    short = audit_json(cli, '--older-than-minutes', '0.5')
    assert {single[0], single[1]} <= {
        s['id'] for s in short['stuck']['load_balancers']}
    # yaml and csv carry the same census
    text = cli.cli('audit', '-f', 'csv', check=0).stdout.splitlines()
    assert text[0] == '"section","item","count","detail"'
    assert any(line.startswith('"finding","octavia-workflow submit '
                               'repair-stuck') for line in text)


def _images(sandbox):
    from owtools.standin import StandinState

    state = StandinState(str(sandbox.dir / 'standin.db'))
    return [(i['id'], i['status'], tuple(i['tags']), i['updated_at'])
            for i in state.images()]


def _on_a_terminal(cli, *args, columns=220):
    """Run the CLI with stdout on a pseudo-terminal; returns (rc, text)."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ,
                struct.pack('HHHH', 60, columns, 0, 0))
    proc = subprocess.Popen([BIN, '--config-file', cli.conf, *args],
                            stdin=slave, stdout=slave,
                            stderr=subprocess.PIPE)
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:             # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    proc.wait(timeout=120)
    return proc.returncode, b''.join(chunks).decode()


def test_distributions_are_charts_on_a_terminal_and_plain_elsewhere(
        sandbox, fleet, cli):
    rc, text = _on_a_terminal(cli, 'audit')
    assert rc == 0, text
    lines = text.splitlines()
    assert '| chart ' in lines[1]
    cert = [line for line in lines if '| certificate_expiry' in line]
    later = next(line for line in cert if '| later ' in line)
    assert '█' in later
    ages = [line for line in lines if '| amphora_age' in line]
    assert any('█' in line for line in ages)
    assert not any(c in line for line in lines if '| load_balancers' in line
                   for c in '█▏▎▍▌▋▊▉')
    plain = cli.cli('audit', check=0).stdout
    assert 'certificate_expiry' in plain and '| chart' not in plain
    assert not any(c in plain for c in '█▏▎▍▌▋▊▉')


def test_bad_input_is_one_line_and_exit_2(sandbox, cli):
    for args, says in (
            (('--older-than-minutes', '-5'), 'must be >= 0'),
            (('--older-than-minutes', 'soon'), 'not a number'),
            (('--image-tag', f'no-such-{uuid.uuid4().hex[:6]}'),
             'no active image is tagged')):
        proc = cli.cli('audit', *args)
        assert proc.returncode == 2, (args, proc.stderr)
        assert proc.stdout == ''
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and says in lines[0], proc.stderr


def _scrape(port):
    try:
        with urllib.request.urlopen(f'http://127.0.0.1:{port}/metrics',
                                    timeout=5) as answer:
            text = answer.read().decode()
    except OSError:
        return None
    samples = {}
    for line in text.splitlines():
        if line.startswith('octavia_workflows_fleet_'):
            name, value = line.rsplit(' ', 1)
            samples[name] = float(value)
    return samples


def _leader(samples):
    return (samples or {}).get('octavia_workflows_fleet_audit_leader') == 1


@pytest.mark.parametrize('board', ['redis', 'zookeeper'])
def test_one_conductor_exports_the_fleet_gauges(sandbox, fleet, tmp_path,
                                                request, board):
    ports = [services.free_port(), services.free_port()]
    server = request.getfixturevalue(f'{board}_server')
    shared = RunbookCli(tmp_path, board, server,
                        groups={'fleet': {'audit_interval': 1}})
    procs = []
    try:
        for i, port in enumerate(ports):
            extra = tmp_path / f'metrics{i}.conf'
            extra.write_text(f'[conductor]\nmetrics_port = {port}\n')
            procs.append(shared.background(
                f'conductor-{i}', '--config-file', str(extra), 'conductor',
                '--name', f'fleet{i}'))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            scraped = [_scrape(p) for p in ports]
            leaders = [i for i, s in enumerate(scraped) if _leader(s)]
            if leaders and any(
                    k.startswith('octavia_workflows_fleet_loadbalancers{')
                    for k in scraped[leaders[0]]):
                break
            time.sleep(0.5)
        else:
            pytest.fail(f'no conductor exported the fleet gauges: {scraped}')
        assert len(leaders) == 1
        lead, other = scraped[leaders[0]], scraped[1 - leaders[0]]
        assert not any(k.startswith('octavia_workflows_fleet_loadbalancers{')
                       for k in other)
        doc = audit_json(shared, '--image-tag', TAG)
        total = sum(v for k, v in lead.items() if k.startswith(
            'octavia_workflows_fleet_loadbalancers{'))
        assert total == doc['load_balancers']['total']
        assert lead['octavia_workflows_fleet_stuck_loadbalancers'] == \
            doc['stuck']['count']
        on_new = 'octavia_workflows_fleet_amphorae{image="' + fleet['new']
        assert lead[on_new + '"}'] == next(
            r['amphorae'] for r in doc['images']['by_image']
            if r['id'] == fleet['new'])
        assert lead['octavia_workflows_fleet_certificate_expiry_soonest_'
                    'seconds'] < 0          # one certificate has expired
        # the leader stops: the other takes the census over
        procs[leaders[0]].send_signal(signal.SIGTERM)
        procs[leaders[0]].wait(timeout=60)
        follower = ports[1 - leaders[0]]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if _leader(_scrape(follower)):
                break
            time.sleep(0.5)
        else:
            pytest.fail('the other conductor did not take the census over')
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
            proc.wait()
