"""The jobboard driver contract, on real Redis and ZooKeeper.

Every driver must: post JSON-simple details, let exactly one owner claim,
give every claim an expiry (a silent owner loses the job), refuse to renew
someone else's claim, release and complete, and translate an unreachable
backend into ``BackendUnavailable``.
"""

import datetime
import signal
import subprocess
import sys
import time

from oslo_serialization import msgpackutils
import pytest

from functional.conftest import board_options
from octavia_workflows import conf as ow_conf
from octavia_workflows import exceptions
from octavia_workflows.engine import jobboard

pytestmark = pytest.mark.functional

EXPIRY = 2


@pytest.fixture
def driver(request, board, namespace, tmp_path):
    server = request.getfixturevalue(f'{board}_server')
    conf = _conf(tmp_path, board_options(board, server, namespace, EXPIRY))
    drv = jobboard.fetch(conf)
    drv.connect()
    yield drv
    drv.close()


def _conf(tmp_path, task_flow):
    lines = ['[task_flow]'] + [f'{k} = {v}' for k, v in task_flow.items()]
    path = tmp_path / 'board.conf'
    path.write_text('\n'.join(lines) + '\n')
    return ow_conf.load([str(path)])


def _posted(drv, job_id):
    for job in drv.unclaimed():
        if (job.details or {}).get('job_id') == job_id:
            return job
    return None


def test_post_claim_is_exclusive_and_details_are_plain(driver):
    board_uuid = driver.post('job-1', 'selftest')
    job = _posted(driver, 'job-1')
    assert job is not None and job.uuid == board_uuid
    assert job.details == {'job_id': 'job-1', 'workflow': 'selftest'}
    assert driver.claim(job, 'alpha')
    assert not driver.claim(job, 'beta')
    assert driver.owner(job) == 'alpha'
    assert driver.owns(job, 'alpha') and not driver.owns(job, 'beta')
    assert _posted(driver, 'job-1') is None


CLAIMANT = """
import sys, time
from octavia_workflows import conf
from octavia_workflows.engine import jobboard
drv = jobboard.fetch(conf.load([sys.argv[1]]))
drv.connect()
job = next(j for j in drv.unclaimed() if j.details['job_id'] == sys.argv[2])
assert drv.claim(job, 'alpha')
print('claimed', flush=True)
while True:
    assert drv.renew(job, 'alpha')
    time.sleep(%s / 4)
"""


def test_a_dead_owners_claim_expires(driver, tmp_path):
    """The owner keeps its claim alive while it lives; SIGKILL it and the
    claim is gone within the expiry (plus a margin), claimable again."""
    driver.post('job-2', 'selftest')
    proc = subprocess.Popen(
        [sys.executable, '-c', CLAIMANT % EXPIRY,
         str(tmp_path / 'board.conf'), 'job-2'],
        stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == 'claimed'
        job = driver.find(driver_job_uuid(driver, 'job-2'))
        time.sleep(EXPIRY * 2)                 # alive: still owned
        assert driver.owner(job) == 'alpha'
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    killed = time.monotonic()
    while driver.owner(job) is not None and \
            time.monotonic() - killed < EXPIRY + 5:
        time.sleep(0.05)
    assert driver.owner(job) is None
    assert time.monotonic() - killed < EXPIRY + 5
    again = _posted(driver, 'job-2')
    assert again is not None and driver.claim(again, 'beta')


def driver_job_uuid(drv, job_id):
    with drv.translate('listing jobs'):
        for job in drv.board.iterjobs(ensure_fresh=True):
            if job.details.get('job_id') == job_id:
                return job.uuid
    raise AssertionError(f'{job_id} is not on the board')


def test_idle_returns_as_soon_as_a_job_is_posted(driver, board, namespace,
                                                 request, tmp_path):
    import threading

    from octavia_workflows.engine.jobboard import base

    assert base.POSTING_WAKEUP in driver.capabilities
    server = request.getfixturevalue(f'{board}_server')
    poster = jobboard.fetch(_conf(tmp_path, board_options(
        board, server, namespace, EXPIRY)))
    poster.connect()
    stop = threading.Event()
    try:
        driver.idle(0.3, stop)          # subscribes; nothing posted: waits
        timer = threading.Timer(0.5, poster.post, ('job-w', 'selftest'))
        began = time.monotonic()
        timer.start()
        driver.idle(10, stop)
        woke = time.monotonic() - began
        timer.join()
        assert 0.4 < woke < 3.0, woke
        assert _posted(driver, 'job-w') is not None
        # with nothing posted it waits its whole timeout; stop ends it
        began = time.monotonic()
        threading.Timer(0.3, stop.set).start()
        driver.idle(10, stop)
        assert time.monotonic() - began < 2.0
    finally:
        poster.close()


@pytest.fixture
def zk_driver(zookeeper_server, namespace, tmp_path):
    conf = _conf(tmp_path, board_options('zookeeper', zookeeper_server,
                                         namespace, EXPIRY))
    drv = jobboard.fetch(conf)
    drv.connect()
    yield drv
    drv.close()


def test_zookeeper_nodes_are_for_the_digest_identity_alone(
        zk_driver, zookeeper_server):
    from kazoo import client as kazoo_client
    from kazoo import exceptions as kazoo_exc

    driver = zk_driver
    driver.post('job-acl', 'selftest')
    job = _posted(driver, 'job-acl')
    assert driver.claim(job, 'alpha')
    anonymous = kazoo_client.KazooClient(
        hosts=f'127.0.0.1:{zookeeper_server.port}')
    anonymous.start(timeout=10)
    try:
        root = driver.board.path
        nodes = [root] + [f'{root}/{c}' for c in
                          driver.client.get_children(root)]
        assert len(nodes) >= 3                  # the job and its claim
        for node in nodes:
            acls, _ = driver.client.get_acls(node)
            assert [a.id.scheme for a in acls] == ['digest'], node
            with pytest.raises(kazoo_exc.NoAuthError):
                anonymous.get(node)
        for node in nodes[1:]:
            with pytest.raises(kazoo_exc.NoAuthError):
                anonymous.delete(node)
        assert _posted(driver, 'job-acl') is None       # still claimed
        assert driver.owns(job, 'alpha')
    finally:
        anonymous.stop()
        anonymous.close()


def test_renew_never_extends_another_owners_claim(driver):
    driver.post('job-3', 'selftest')
    job = _posted(driver, 'job-3')
    assert driver.claim(job, 'alpha')
    assert not driver.renew(job, 'beta')
    assert driver.owner(job) == 'alpha'


def test_release_complete_and_remove(driver):
    driver.post('job-4', 'selftest')
    job = _posted(driver, 'job-4')
    assert driver.claim(job, 'alpha')
    driver.release(job, 'alpha')
    job = _posted(driver, 'job-4')
    assert job is not None
    assert driver.claim(job, 'beta')
    driver.complete(job, 'beta')
    assert driver.find(job.uuid) is None
    board_uuid = driver.post('job-5', 'selftest')
    assert driver.remove(board_uuid, 'canceller')
    assert driver.find(board_uuid) is None
    assert not driver.remove(board_uuid, 'canceller')


def test_unreachable_backend_is_backend_unavailable(board, tmp_path):
    from owtools.services import free_port
    opts = {'jobboard_enabled': True,
            'jobboard_backend_driver': f'{board}_taskflow_driver',
            'jobboard_backend_hosts': '127.0.0.1',
            'jobboard_backend_port': free_port(),
            'jobboard_expiration_time': 2}
    drv = jobboard.fetch(_conf(tmp_path, opts))
    with pytest.raises(exceptions.BackendUnavailable) as info:
        drv.connect()
    assert '127.0.0.1' in str(info.value)
    drv.close()


def test_unknown_driver_is_a_config_error(tmp_path):
    with pytest.raises(exceptions.ConfigError):
        jobboard.fetch(_conf(tmp_path, {'jobboard_backend_driver': 'nope'}))


def test_redis_postings_are_taskflows_own(redis_server, namespace,
                                          tmp_path):
    """The Redis driver writes postings itself (``submit`` never imports
    TaskFlow's board): field for field what TaskFlow's board writes, in
    one sequence with its postings, listed, ordered and claimed by it."""
    conf = _conf(tmp_path, board_options('redis', redis_server, namespace,
                                         EXPIRY))
    drv = jobboard.fetch(conf)
    drv.connect()
    try:
        before = _utcnow()
        ours = drv.post('job-ours', 'selftest')
        theirs = drv.board.post(
            'selftest:job-theirs',
            details={'job_id': 'job-theirs', 'workflow': 'selftest'}).uuid
        later = drv.post('job-later', 'selftest')
        raw = drv.client.hgetall(f'{namespace}:listings'.encode())
        postings = {k.decode(): msgpackutils.loads(v) for k, v in raw.items()}
        assert set(postings) == {ours, theirs, later}
        mine, taskflows = postings[ours], postings[theirs]
        assert mine.keys() == taskflows.keys()
        assert {k: type(v) for k, v in mine.items()} == {
            k: type(v) for k, v in taskflows.items()}
        assert [postings[u]['sequence'] for u in (ours, theirs, later)] == [
            mine['sequence'], mine['sequence'] + 1, mine['sequence'] + 2]

        jobs = sorted(drv.board.iterjobs(ensure_fresh=True))
        assert [j.uuid for j in jobs] == [ours, theirs, later]
        job = jobs[0]
        assert job.name == 'selftest:job-ours'
        assert job.details == {'job_id': 'job-ours', 'workflow': 'selftest'}
        assert job.priority.value == 'NORMAL'
        assert before <= job.created_on <= _utcnow()
        assert drv.claim(job, 'alpha') and drv.owner(job) == 'alpha'
        drv.complete(job, 'alpha')
        assert ours not in {j.uuid for j in drv.unclaimed()}
    finally:
        drv.close()


def _utcnow():
    """Naive UTC now, as TaskFlow stamps ``created_on``."""
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
