"""No configured password or cloud credential ever lands anywhere.

A job runs with every secret configured (jobboard password, database
password in the persistence URL, a clouds.yaml entry with a password);
then every byte the project wrote is searched for them: every key on the
Redis board, every node under the ZooKeeper namespace, every row of every
persistence table, the conductor's debug log and the CLI's output.
"""

import json
import os

import kazoo.client
import kazoo.exceptions
import pytest
import redis
import sqlalchemy as sa

pytestmark = pytest.mark.functional

CLOUD_PASSWORD = 'cloud-secret-5e0b6c1a'


def _clouds_yaml(tmp_path):
    path = tmp_path / 'clouds.yaml'
    path.write_text(
        'clouds:\n  prod:\n    auth:\n'
        '      auth_url: http://127.0.0.1:9/identity\n'
        '      username: admin\n'
        f'      password: {CLOUD_PASSWORD}\n'
        '      project_name: admin\n'
        '    region_name: RegionOne\n')
    return path


def _board_bytes(dep, server):
    opts = dep.options['task_flow']
    if dep.board == 'redis':
        client = redis.Redis(host='127.0.0.1', port=server.port,
                             password=server.password)
        chunks = []
        for key in client.scan_iter(count=1000):
            chunks += [key, client.dump(key) or b'']
        client.close()
        return b'\n'.join(chunks)
    client = kazoo.client.KazooClient(
        hosts=f'127.0.0.1:{server.port}',
        auth_data=[('digest', 'ow:' + opts['jobboard_backend_password'])])
    client.start(timeout=10)
    chunks = []
    ours = '/' + opts['jobboard_backend_namespace'].strip('/')
    try:
        stack = ['/']
        while stack:
            path = stack.pop()
            try:
                data, _ = client.get(path)
                children = client.get_children(path)
            except kazoo.exceptions.NoAuthError:
                # another test's board: readable by its identity alone
                assert not path.startswith(ours), path
                continue
            chunks += [path.encode(), data or b'']
            stack += [os.path.join(path, c) for c in children]
    finally:
        client.stop()
        client.close()
    assert ours.encode() in chunks, 'the board itself was not read'
    return b'\n'.join(chunks)


def _store_text(url):
    engine = sa.create_engine(url)
    chunks = []
    try:
        meta = sa.MetaData()
        meta.reflect(engine)
        with engine.connect() as conn:
            for table in meta.sorted_tables:
                for row in conn.execute(table.select()):
                    chunks.append(repr(tuple(row)))
    finally:
        engine.dispose()
    assert chunks, 'the store is empty: nothing was checked'
    return '\n'.join(chunks)


def test_no_secret_in_board_store_logs_or_output(make_deployment, board,
                                                 request, tmp_path,
                                                 monkeypatch):
    clouds = _clouds_yaml(tmp_path)
    monkeypatch.setenv('OS_CLIENT_CONFIG_FILE', str(clouds))
    dep = make_deployment(board, 'mariadb', cloud={'name': 'prod'})
    server = request.getfixturevalue(f'{board}_server')
    opts = dep.options['task_flow']
    secrets = {'jobboard': opts['jobboard_backend_password'],
               'database': request.getfixturevalue('mariadb_server').password,
               'cloud': CLOUD_PASSWORD}
    assert secrets['database'] in opts['persistence_connection']

    conductor = dep.conductor('ctl-secret')
    outputs = []
    submit = dep.cli('--os-cloud', 'prod', 'submit', 'selftest',
                     '--param', 'steps=2', '--param', 'step_seconds=0',
                     '-f', 'json', check=0)
    job_id = json.loads(submit.stdout)['id']
    outputs.append(submit.stdout + submit.stderr)
    waited = dep.cli('--debug', 'wait', job_id, '--timeout', '60')
    assert waited.returncode == 0, waited.stderr
    outputs.append(waited.stdout + waited.stderr)
    for args in (['show', job_id, '-f', 'json'], ['report', job_id],
                 ['list', '--all'], ['--debug', 'list']):
        proc = dep.cli(*args, check=0)
        outputs.append(proc.stdout + proc.stderr)
    assert dep.show(job_id)['state'] == 'SUCCESS'

    places = {
        'board': _board_bytes(dep, server).decode('utf-8', 'replace'),
        'store': _store_text(opts['persistence_connection']),
        'conductor log': conductor.log.read_text(errors='replace'),
        'cli output': '\n'.join(outputs),
    }
    assert job_id in places['store']
    assert job_id in places['conductor log']
    for place, text in places.items():
        for what, secret in secrets.items():
            assert secret not in text, f'{what} password found in {place}'


@pytest.mark.parametrize('wrong', ['board', 'database'])
def test_errors_about_backends_do_not_echo_passwords(make_deployment,
                                                     mariadb_server, wrong):
    bad_board, bad_db = 'wrong-board-pw-71c2', 'wrong-db-pw-9a41'
    task_flow = {}
    if wrong == 'board':
        task_flow['jobboard_backend_password'] = bad_board
    else:
        task_flow['persistence_connection'] = mariadb_server.url.replace(
            mariadb_server.password, bad_db) + 'octavia_persistence'
    dep = make_deployment('redis', 'sqlite', upgrade=wrong == 'board',
                          task_flow=task_flow)
    for args in (['submit', 'selftest'], ['list'], ['db', 'upgrade']):
        proc = dep.cli(*args)
        if wrong == 'board' and args[0] != 'submit':
            continue        # only submit needs the board
        assert proc.returncode == 2, (args, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert bad_db not in proc.stderr and bad_board not in proc.stderr
