"""Chaos: a conductor partitioned from the jobboard and the database.

One conductor runs inside its own network namespace (made by the test:
``ip netns`` + veth + forwarders, see :mod:`chaos.netpart`), reaching the
jobboard, the persistence database (MariaDB) and the sandbox cloud
through the veth.  Mid-rotation, while a failover is in flight, an
nftables rule inside the namespace drops its packets to the jobboard and
the database -- the cloud stays reachable, the worst case -- for three
claim expiries.  A conductor on the host must take the job over; when
the link comes back, the partitioned conductor must not act on the cloud
again for that job (fencing).  Counted in Octavia's database: no load
balancer failed over twice, none skipped.  With ZooKeeper the partition
also expires the conductor's session.  A write the partitioned conductor
had in flight is refused by the job's fencing token when the link comes
back (no target end is recorded by it after the heal).
"""

import datetime
import json
import os
import signal
import subprocess
import time

from clihelp import BIN, poll_job, run, start, write_conf
from e2e.runbookhelp import failovers, lb_status
from e2e.test_runbooks import IMAGE_TAG, new_image, wait_pending
from functional.conftest import board_options
import pytest
import sqlalchemy as sa

from chaos import netpart
from owtools.sandbox import seed

pytestmark = [pytest.mark.e2e, pytest.mark.chaos]

EXPIRY = 4
PARTITION = 3 * EXPIRY
LBS = 5


def _conf(path, board, server, namespace, db_url, host):
    task_flow = board_options(board, server, namespace, EXPIRY)
    task_flow['jobboard_backend_hosts'] = host
    task_flow['persistence_connection'] = db_url.replace('127.0.0.1', host)
    return write_conf(path, task_flow=task_flow,
                      conductor={'poll_interval': 0.2},
                      cloud={'name': 'sandbox'})


def _island_clouds(sandbox, tmp_path, host_ip):
    text = (sandbox.dir / 'clouds.yaml').read_text()
    path = tmp_path / 'island-clouds.yaml'
    path.write_text(text.replace('127.0.0.1', host_ip))
    return path


def _log_times(path, needle):
    """Wall-clock times of the log lines that contain ``needle``."""
    times = []
    for line in path.read_text(errors='replace').splitlines():
        if needle in line:
            try:
                times.append(datetime.datetime.strptime(
                    line[:23], '%Y-%m-%d %H:%M:%S,%f').timestamp())
            except ValueError:
                continue
    return times


@pytest.mark.parametrize('board', ['redis', 'zookeeper'])
def test_partitioned_conductor_never_acts_again(sandbox, request, board,
                                                mariadb_server, namespace,
                                                tmp_path):
    server = request.getfixturevalue(f'{board}_server')
    db_url = mariadb_server.create_database(namespace)
    db_port = sa.engine.make_url(db_url).port
    api_port = int(sandbox.api_url.rsplit(':', 1)[1].split('/')[0])
    cloud_ports = [api_port, api_port + 1]           # Octavia, stand-in
    lbs = seed.seed_api(sandbox.api, LBS, topology='SINGLE')
    new_image(sandbox)
    island = netpart.Island([server.port, db_port] + cloud_ports)
    host_conf = _conf(tmp_path / 'host.conf', board, server, namespace,
                      db_url, '127.0.0.1')
    island_conf = _conf(tmp_path / 'island.conf', board, server, namespace,
                        db_url, island.host_ip)
    island_log = tmp_path / 'conductor-island.log'
    procs = []
    sandbox.inject(delays={'compute.build': 2.0})
    try:
        run(host_conf, 'db', 'upgrade', check=0)
        env = dict(os.environ, OS_CLIENT_CONFIG_FILE=str(
            _island_clouds(sandbox, tmp_path, island.host_ip)))
        with open(island_log, 'ab') as out:
            procs.append(island.popen(
                [BIN, '--config-file', island_conf, '--debug', 'conductor',
                 '--name', 'island'], stdout=out, stderr=subprocess.STDOUT,
                env=env))
        job_id = json.loads(run(
            host_conf, 'submit', 'rotate-images', '-f', 'json',
            f'--param=image_tag={IMAGE_TAG}',
            f'--param=loadbalancers={",".join(lbs)}', '--param=concurrency=1',
            check=0).stdout)['id']

        def show(job):
            return json.loads(run(host_conf, 'show', job, '-f', 'json',
                                  check=0).stdout)

        poll_job(show, job_id, lambda j: (j['owner'] or '').startswith(
            'island') and j['progress']['done'] >= 1, timeout=90,
            what='the island conductor progressing')
        wait_pending(sandbox, lbs)
        island.cut([server.port, db_port])
        cut_at = time.time()
        procs.append(start(host_conf, '--debug', 'conductor', '--name',
                           'host', log=tmp_path / 'conductor-host.log'))
        poll_job(show, job_id, lambda j: (j['owner'] or '').startswith(
            'host'), timeout=PARTITION + 30, what='the takeover')
        time.sleep(max(0.0, cut_at + PARTITION - time.time()))
        island.heal()
        healed_at = time.time()
        final = poll_job(show, job_id, lambda j: j['state'] in (
            'SUCCESS', 'FAILED', 'CANCELLED', 'PAUSED'), timeout=180,
            what='the end of the job', interval=0.5)
        time.sleep(EXPIRY)          # room for a stale conductor to misbehave
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
            proc.wait()
        island.close()
        sandbox.clear_injection()
    assert final['state'] == 'SUCCESS', final
    assert final['owner'].startswith('host'), final
    # Exactly once, counted in Octavia's database.
    assert failovers(sandbox, lbs) == {lb: (1, 1) for lb in lbs}
    assert set(lb_status(sandbox, lbs).values()) == {'ACTIVE'}
    # The island conductor knew it lost the job while still cut off (a
    # board client that keeps retrying a dead link hides it until the
    # heal), and started no target after the link came back.
    lost = _log_times(island_log, 'claim of island-')
    assert lost and min(lost) < healed_at, island_log.read_text()[-3000:]
    started = _log_times(island_log, ': started')
    assert started and not [t for t in started if t > healed_at], \
        island_log.read_text()[-3000:]
    # Nor did a write of its own land after the link came back: one it
    # had in flight when it was cut off is refused by the job's fencing
    # token (the host's takeover advanced it), so it records no target's
    # end (it logs that only once the write committed).
    ended = [t for state in ('DONE', 'FAILED', 'SKIPPED')
             for t in _log_times(island_log, f': {state}')
             if t > healed_at]
    assert not ended, island_log.read_text()[-3000:]
