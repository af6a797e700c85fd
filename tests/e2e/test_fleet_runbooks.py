"""Fleet coordination seen from the cloud: the failover budget and the
load-balancer locks across jobs and conductors, counted in Octavia's own
database while the jobs run."""

import threading
import time

import pytest

from e2e.runbookhelp import RunbookCli, failovers, lb_status
from e2e.test_runbooks import IMAGE_TAG, new_image
from owtools.sandbox import seed

pytestmark = pytest.mark.e2e

FINISHED = ('SUCCESS', 'FAILED', 'CANCELLED')


class PendingSampler:
    """Counts the load balancers PENDING_UPDATE at once, from Octavia's
    database, every 20 ms while it runs."""

    def __init__(self, sandbox, lb_ids):
        self.sandbox, self.lb_ids = sandbox, list(lb_ids)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            pending = sum(1 for s in lb_status(
                self.sandbox, self.lb_ids).values() if s == 'PENDING_UPDATE')
            self.peak = max(self.peak, pending)
            time.sleep(0.02)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(5)


@pytest.fixture
def fleet_cli(tmp_path, redis_server):
    made = []

    def make(**fleet):
        made.append(RunbookCli(tmp_path, 'redis', redis_server,
                               groups={'fleet': fleet}))
        return made[-1]

    yield make
    for item in made:
        item.stop()


def _finish(rb, job_ids, timeout=180):
    return [rb.wait_for(j, lambda s: s['state'] in FINISHED,
                        timeout=timeout, what='the end') for j in job_ids]


def test_the_budget_holds_across_two_jobs(sandbox, fleet_cli):
    """Budget 2, two jobs of concurrency 3 on two conductors: never more
    than two load balancers PENDING at once, together."""
    rb = fleet_cli(max_concurrent_failovers=2)
    lbs = seed.seed_api(sandbox.api, 6, topology='SINGLE')
    new_image(sandbox)
    sandbox.inject(delays={'compute.build': 1.0})
    try:
        rb.conductor('one')
        rb.conductor('two')
        with PendingSampler(sandbox, lbs) as sampler:
            jobs = [rb.submit('rotate-images', check=0, image_tag=IMAGE_TAG,
                              loadbalancers=','.join(part), concurrency=3)
                    for part in (lbs[:3], lbs[3:])]
            final = _finish(rb, [j['id'] for j in jobs])
    finally:
        sandbox.clear_injection()
    assert [f['state'] for f in final] == ['SUCCESS', 'SUCCESS'], final
    assert {f['owner'].split('-')[0] for f in final} <= {'one', 'two'}
    assert sampler.peak == 2, sampler.peak
    assert failovers(sandbox, lbs) == {lb: (1, 1) for lb in lbs}


def test_two_jobs_over_the_same_load_balancers_fail_each_over_once(
        sandbox, fleet_cli):
    """Two rotations of the same load balancers submitted together on two
    conductors: the lock makes the second job wait for each load balancer
    and then re-check it (now on the new image: skipped)."""
    rb = fleet_cli()
    lbs = seed.seed_api(sandbox.api, 4, topology='SINGLE')
    new_image(sandbox)
    sandbox.inject(delays={'compute.build': 0.5})
    try:
        rb.conductor('one')
        rb.conductor('two')
        jobs = [rb.submit('rotate-images', check=0, image_tag=IMAGE_TAG,
                          loadbalancers=','.join(lbs), concurrency=2)
                for _ in range(2)]
        final = _finish(rb, [j['id'] for j in jobs])
    finally:
        sandbox.clear_injection()
    assert [f['state'] for f in final] == ['SUCCESS', 'SUCCESS'], final
    assert failovers(sandbox, lbs) == {lb: (1, 1) for lb in lbs}
    done = sum(f['progress']['done'] for f in final)
    assert done == len(lbs), final
