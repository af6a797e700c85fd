"""A persistence URL that lists several MySQL hosts (a Galera cluster
without a virtual IP), on the session's MariaDB: a host that refuses is
passed over, and when none answers the command fails with one line
naming the URL without its password (exit 2).  The failover under a
running job is in ``tests/chaos/test_galera.py``.
"""

from clihelp import run, write_conf
import pytest

from owtools import services

pytestmark = pytest.mark.functional


def _conf(tmp_path, url):
    return write_conf(tmp_path / 'ow.conf', DEFAULT={
        'state_path': str(tmp_path)}, task_flow={
        'persistence_connection': url})


def test_a_refusing_host_is_passed_over(tmp_path, mariadb_server, namespace):
    mariadb_server.create_database(namespace)
    dead = services.free_port()
    url = (f'mysql+pymysql://{mariadb_server.user}:{mariadb_server.password}'
           f'@/{namespace}?host=127.0.0.1:{dead}'
           f'&host=127.0.0.1:{mariadb_server.port}')
    conf = _conf(tmp_path, url)
    run(conf, 'db', 'upgrade', check=0)
    job_id = run(conf, 'submit', 'selftest', '--param', 'steps=2',
                 '--param', 'step_seconds=0', '-f', 'value', '-c', 'id',
                 check=0).stdout.strip()
    assert run(conf, 'show', job_id, '-f', 'value', '-c', 'state',
               check=0).stdout.split() == ['SUCCESS']


def test_no_host_answering_is_a_one_line_error(tmp_path, mariadb_server):
    ports = [services.free_port(), services.free_port()]
    url = (f'mysql+pymysql://ow:{mariadb_server.password}@/x?'
           + '&'.join(f'host=127.0.0.1:{p}' for p in ports))
    proc = run(_conf(tmp_path, url), 'list')
    assert proc.returncode == 2
    [line] = proc.stderr.strip().splitlines()
    assert 'unreachable' in line and 'ow:***@' in line
    assert mariadb_server.password not in proc.stderr
