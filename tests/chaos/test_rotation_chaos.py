"""Chaos: many rotations while conductors are SIGKILLed at random times.

``OW_CHAOS_JOBS`` rotate-images jobs of ``OW_CHAOS_LBS`` load balancers
each (half SINGLE, half ACTIVE_STANDBY) run on three conductors sharing
a Redis jobboard; a seeded random schedule SIGKILLs a conductor every
few seconds and starts a replacement.  CI runs a reduced size (4 x 5);
the full size of the design's chaos suite is::

    OW_CHAOS_JOBS=20 OW_CHAOS_LBS=20 tools/run-tests tests/chaos

``OW_CHAOS_SEED`` replays a schedule (the seed is printed on failure).

At the end, counted in Octavia's own database: every job SUCCESS, none
lost, every load balancer ACTIVE and failed over exactly once.
"""

import os
import random
import signal
import time

from e2e.runbookhelp import RunbookCli, failovers, lb_status
from e2e.test_runbooks import IMAGE_TAG, new_image
import pytest

from owtools.sandbox import seed

pytestmark = [pytest.mark.e2e, pytest.mark.chaos]

JOBS = int(os.environ.get('OW_CHAOS_JOBS', '4'))
LBS = int(os.environ.get('OW_CHAOS_LBS', '5'))
CONDUCTORS = 3
EXPIRY = 4
FINISHED = ('SUCCESS', 'FAILED', 'CANCELLED')


def _seed():
    value = os.environ.get('OW_CHAOS_SEED')
    return int(value) if value else random.SystemRandom().randrange(10**6)


def test_rotations_survive_random_sigkills(sandbox, redis_server, tmp_path):
    chaos_seed = _seed()
    rng = random.Random(chaos_seed)
    rb = RunbookCli(tmp_path, 'redis', redis_server, expiry=EXPIRY)
    singles = seed.seed_api(sandbox.api, (JOBS * LBS) // 2,
                            topology='SINGLE')
    pairs = seed.seed_api(sandbox.api, JOBS * LBS - len(singles),
                          topology='ACTIVE_STANDBY')
    lbs = singles + pairs
    rng.shuffle(lbs)
    new_image(sandbox)
    sandbox.inject(delays={'compute.build': 0.3})
    kills = []
    try:
        alive = [rb.conductor(f'chaos{n}') for n in range(CONDUCTORS)]
        started = len(alive)
        job_ids = []
        for n in range(JOBS):
            chunk = lbs[n * LBS:(n + 1) * LBS]
            job_ids.append(rb.submit(
                'rotate-images', check=0, image_tag=IMAGE_TAG,
                loadbalancers=','.join(chunk),
                concurrency=rng.choice((1, 2, 3)))['id'])
        deadline = time.monotonic() + 60 + JOBS * LBS * 6
        states = {}
        while time.monotonic() < deadline:
            time.sleep(rng.uniform(3.0, 10.0))
            states = {j['id']: j['state'] for j in rb.jobs()
                      if j['id'] in job_ids}
            if all(states.get(j) in FINISHED for j in job_ids):
                break
            victim = alive.pop(rng.randrange(len(alive)))
            victim.send_signal(signal.SIGKILL)
            victim.wait()
            kills.append(round(time.monotonic(), 1))
            alive.append(rb.conductor(f'chaos{started}'))
            started += 1
        where = (f'seed {chaos_seed}, {len(kills)} SIGKILLs, logs in '
                 f'{tmp_path}')
        assert states and all(states.get(j) == 'SUCCESS'
                              for j in job_ids), (states, where)
    finally:
        sandbox.clear_injection()
        rb.stop()
    # No job lost: every posting is accounted for and the board is empty.
    listed = {j['id']: j for j in rb.jobs()}
    assert set(job_ids) <= set(listed), where
    assert rb.cli('list', '-f', 'value', '-c', 'id',
                  check=0).stdout.strip() == '', where
    assert kills, where
    for job_id in job_ids:
        progress = rb.show(job_id)['progress']
        assert progress['done'] == progress['total'] == LBS, (progress,
                                                              where)
    # Exactly once, counted in Octavia's database.
    assert set(lb_status(sandbox, lbs).values()) == {'ACTIVE'}, where
    counts = failovers(sandbox, lbs)
    expected = {**{lb: (1, 1) for lb in singles},
                **{lb: (2, 2) for lb in pairs}}
    wrong = {lb: counts.get(lb) for lb in lbs if counts.get(lb) !=
             expected[lb]}
    assert not wrong, (wrong, where)
