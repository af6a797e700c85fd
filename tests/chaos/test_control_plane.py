"""Chaos: Octavia's API or its RabbitMQ restarts in the middle of a rotation.

While a failover is in flight, the sandbox's ``octavia-api`` process (or
its RabbitMQ broker) is stopped for a few seconds and started again.
The conductor must treat the refused connections and errors as
transient, wait, and finish: every load balancer ACTIVE and failed over
exactly once, counted in Octavia's database.
"""

import time

from e2e.runbookhelp import RunbookCli, failovers, lb_status
from e2e.test_runbooks import IMAGE_TAG, new_image, wait_pending
import pytest

from owtools.sandbox import seed, servicectl

pytestmark = [pytest.mark.e2e, pytest.mark.chaos]

LBS = 6
OUTAGE = 5.0
FINISHED = ('SUCCESS', 'FAILED', 'CANCELLED', 'PAUSED')


def _wait(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f'{what} not back in {timeout} s')


def _restart_api(sandbox):
    servicectl.stop(sandbox, 'api')
    assert not sandbox.api.answering()
    time.sleep(OUTAGE)
    servicectl.start(sandbox, 'api')
    _wait(sandbox.api.answering, 60, 'the Octavia API')


def _restart_rabbitmq(sandbox):
    broker = sandbox.backing_service('rabbitmq')
    broker.kill()
    time.sleep(OUTAGE)
    broker.start()
    _wait(sandbox.worker_consuming, 120, 'the worker on RabbitMQ')


@pytest.mark.parametrize('victim', ['api', 'rabbitmq'])
def test_rotation_rides_out_a_control_plane_restart(sandbox, redis_server,
                                                    tmp_path, victim):
    rb = RunbookCli(tmp_path, 'redis', redis_server, expiry=4)
    lbs = seed.seed_api(sandbox.api, LBS, topology='SINGLE')
    new_image(sandbox)
    sandbox.inject(delays={'compute.build': 1.5})
    try:
        rb.conductor('cp')
        job_id = rb.submit('rotate-images', check=0, image_tag=IMAGE_TAG,
                           loadbalancers=','.join(lbs),
                           concurrency=2)['id']
        rb.wait_for(job_id, lambda j: j['progress']['done'] >= 1,
                    what='a first target done')
        wait_pending(sandbox, lbs)
        if victim == 'api':
            _restart_api(sandbox)
        else:
            _restart_rabbitmq(sandbox)
        final = rb.wait_for(job_id, lambda j: j['state'] in FINISHED,
                            timeout=240, what='the end of the job')
    finally:
        sandbox.clear_injection()
        rb.stop()
    assert final['state'] == 'SUCCESS', final
    assert final['progress']['done'] == LBS, final
    assert set(lb_status(sandbox, lbs).values()) == {'ACTIVE'}
    assert failovers(sandbox, lbs) == {lb: (1, 1) for lb in lbs}
