"""The conductor's Prometheus endpoint and health check, on a real run.

The conductor gets a private Redis that the test kills and restarts:
``/healthz`` turns 503 while the jobboard is gone and 200 again once it
is back, and the conductor keeps working afterwards.
"""

import time
import urllib.error
import urllib.request

from prometheus_client.parser import text_string_to_metric_families
import pytest

from functional.conftest import Deployment, board_options
from owtools import services

pytestmark = pytest.mark.functional


def _get(port, path):
    try:
        with urllib.request.urlopen(f'http://127.0.0.1:{port}{path}',
                                    timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:
        return None, ''


def _until(check, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.2)
    raise AssertionError(f'not reached in {timeout} s')


def _value(text, name, **labels):
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    return None


@pytest.fixture
def private_redis(tmp_path):
    server = services.RedisServer(tmp_path / 'redis', appendonly=True)
    server.start()
    yield server
    server.stop()


def test_metrics_and_health_follow_a_real_run(tmp_path, namespace,
                                              private_redis):
    port = services.free_port()
    task_flow = board_options('redis', private_redis, namespace)
    task_flow['persistence_connection'] = f'sqlite:///{tmp_path}/p.sqlite'
    dep = Deployment(tmp_path, 'redis', 'sqlite', {
        'task_flow': task_flow,
        'conductor': {'poll_interval': 0.2, 'metrics_port': port}})
    dep.cli('db', 'upgrade', check=0)
    try:
        dep.conductor('ctl-metrics')
        _until(lambda: _get(port, '/healthz')[0] == 200)
        job_id = dep.submit('selftest', steps=3, step_seconds=0.2)
        assert dep.cli('wait', job_id, '--timeout', '60').returncode == 0

        wf = {'workflow': 'selftest'}
        finished = 'octavia_workflows_jobs_finished_total'
        # the record settles just before the conductor counts the job
        status, text = _until(lambda: (lambda r: r if _value(
            r[1], finished, state='SUCCESS', **wf) else None)(
                _get(port, '/metrics')))
        assert status == 200
        assert _value(text, 'octavia_workflows_jobs_claimed_total',
                      **wf) == 1
        assert _value(text, finished, state='SUCCESS', **wf) == 1
        assert _value(text, 'octavia_workflows_targets_total',
                      state='DONE', **wf) == 3
        assert _value(text, 'octavia_workflows_target_duration_seconds_count',
                      **wf) == 3
        assert _value(text, 'octavia_workflows_jobs_running') == 0
        assert _get(port, '/nope')[0] == 404

        private_redis.kill()
        status, reason = _until(
            lambda: (lambda r: r if r[0] == 503 else None)(
                _get(port, '/healthz')))
        assert 'jobboard' in reason
        private_redis.start()
        _until(lambda: _get(port, '/healthz')[0] == 200)
        # and it still claims work after the outage
        again = dep.submit('selftest', steps=1, step_seconds=0)
        assert dep.cli('wait', again, '--timeout', '60').returncode == 0
    finally:
        dep.stop_all()


def test_metrics_port_in_use_is_a_one_line_error(tmp_path, namespace,
                                                 redis_server):
    import socket
    with socket.socket() as busy:
        busy.bind(('127.0.0.1', 0))
        busy.listen()
        task_flow = board_options('redis', redis_server, namespace)
        task_flow['persistence_connection'] = (
            f'sqlite:///{tmp_path}/p.sqlite')
        dep = Deployment(tmp_path, 'redis', 'sqlite', {
            'task_flow': task_flow,
            'conductor': {'metrics_port': busy.getsockname()[1]}})
        dep.cli('db', 'upgrade', check=0)
        proc = dep.cli('conductor', timeout=30)
    assert proc.returncode == 2
    assert 'metrics_port' in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
