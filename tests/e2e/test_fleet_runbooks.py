"""Fleet coordination seen from the cloud: the failover budget and the
load-balancer and host locks across jobs and conductors, counted in
Octavia's own database and the Nova stand-in's journal while the jobs
run."""

import concurrent.futures
import threading
import time
import uuid

import pytest

from e2e.runbookhelp import (
    RunbookCli,
    failovers,
    lb_status,
    live_amphorae,
    until,
)
from e2e.test_host_runbooks import new_host, seed_on
from e2e.test_runbooks import IMAGE_TAG, new_image
from owtools.sandbox import seed
from owtools.standin import StandinState

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


def test_evacuate_and_cleanup_of_one_host_never_act_on_it_together(
        sandbox, fleet_cli):
    """evacuate-host and cleanup-node (apply=true) of the same host,
    submitted together to two conductors on one board: the host lock
    keeps them apart for their whole runs, as the cloud saw it (the
    stand-in's journal of service updates and server deletions): the
    cleanup's deletions all came before the evacuation's first change of
    the host or all after its last; each amphora failed over once, each
    unused VM was deleted once, nothing else."""
    standin = StandinState(str(sandbox.dir / 'standin.db'))
    host = new_host(standin, 'both')
    lbs = seed_on(sandbox, standin, host, singles=3)
    old_vms = {a['compute_id'] for lb in lbs
               for a in live_amphorae(sandbox, lb)}
    unused = [str(uuid.uuid4()) for _ in range(3)]
    for server_id in unused:
        standin.add_server(server_id, host, name=f'amphora-{uuid.uuid4()}')
    tenant = str(uuid.uuid4())
    standin.add_server(tenant, host, name='web-1')
    rb = fleet_cli()
    began = time.time()
    # both posted before any conductor runs, so that their runs start
    # together; seconds between two targets' starts leave room for the
    # other job to step in, were the host given back between them
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        evac, clean = pool.map(lambda args: rb.submit(
            args[0], check=0, host=host, interval=args[1], **args[2]), [
                ('evacuate-host', 2, {}),
                ('cleanup-node', 1, {'apply': 'true'})])
    for name in ('one', 'two'):
        rb.background(f'conductor-{name}', 'conductor', '--name', name,
                      '--workers', '1')
    jobs = {evac['id']: clean['id'], clean['id']: evac['id']}
    waits = set()

    def ended():
        # what `show` prints beside a waiting target, read as it happens
        rows = {job: rb.targets(job) for job in jobs}
        waits.update((job, t['details']['waiting']) for job in rows
                     for t in rows[job] if t['details'].get('waiting'))
        return all(t['state'] in ('DONE', 'FAILED', 'SKIPPED')
                   for job in rows for t in rows[job])

    until('both jobs ended', ended, timeout=180, every=0.1)
    final = _finish(rb, list(jobs))
    assert [f['state'] for f in final] == ['SUCCESS', 'SUCCESS'], final
    journal = [e for e in standin.events(host=host) if e['at'] >= began]
    # the evacuation's changes of the host: disabling its service, and
    # Octavia deleting the amphora VMs it failed over (each once)
    evacuation = [e for e in journal if e['kind'] == 'service-update' or (
        e['kind'] == 'server-delete' and e['via'] == 'direct')]
    assert evacuation[0]['kind'] == 'service-update', journal
    assert sorted(e['subject'] for e in evacuation[1:]) == sorted(old_vms)
    # the cleanup's deletions: each unused VM once, nothing else
    deleted = [e for e in journal if e['kind'] == 'server-delete'
               and e['via'] == 'compute-api']
    assert sorted(e['subject'] for e in deleted) == sorted(unused)
    # one job after the other: the cleanup's deletions all came before
    # the evacuation's first change, or all after its last
    first, last = evacuation[0]['at'], evacuation[-1]['at']
    assert deleted[-1]['at'] < first or deleted[0]['at'] > last, journal
    # ... and while the later one waited, it said for what (how long it
    # waited, if at all, depends on when its run started)
    later = evac['id'] if deleted[-1]['at'] < first else clean['id']
    assert waits <= {(later, f'waiting for host:{host}: in use by job '
                             f'{jobs[later]}')}, waits
    assert failovers(sandbox, lbs) == {lb: (1, 1) for lb in lbs}
    assert standin.servers_on(host) == [tenant]
    assert not standin.service_enabled(host)
