"""Chaos: Octavia's API or its RabbitMQ restarts in the middle of a rotation.

While a failover is in flight, the sandbox's ``octavia-api`` process (or
its RabbitMQ broker, once the worker has consumed the cast) is stopped
for a few seconds and started again; the failovers requested meanwhile
wait for the broker in the API and in the worker's durable queue.
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


def _worker_took_it(sandbox, lbs):
    """Wait until the worker consumed the failover cast in flight: its
    flow has created the replacement amphora.  (Octavia sets
    PENDING_UPDATE before it casts; a cast killed with the broker is
    lost, and the load balancer stays PENDING_UPDATE for good -- an
    Octavia hazard, not the one tested here.)"""
    def consumed():
        pending = [lb for lb, status in lb_status(sandbox, lbs).items()
                   if status == 'PENDING_UPDATE']
        return bool(pending) and all(
            len(sandbox.accounting().amphorae(lb)) > 1 for lb in pending)
    _wait(consumed, 30, 'the worker consuming the failover')


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
        # One failover at a time: no second cast can be on its way to the
        # broker at the moment it is killed.
        job_id = rb.submit('rotate-images', check=0, image_tag=IMAGE_TAG,
                           loadbalancers=','.join(lbs),
                           concurrency=1 if victim == 'rabbitmq' else 2)['id']
        rb.wait_for(job_id, lambda j: j['progress']['done'] >= 1,
                    what='a first target done')
        wait_pending(sandbox, lbs)
        if victim == 'api':
            _restart_api(sandbox)
        else:
            _worker_took_it(sandbox, lbs)
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
