"""The adaptive poll interval of cloud waits.

The waits run on a virtual clock (``clock``): ``sleep`` moves it on at
once, so the tests measure the wait's own timing, exactly, and take no
time.
"""

import itertools

import pytest

from octavia_workflows.cloud import wait


class Clock:
    """``time.time``/``monotonic``/``sleep`` on one virtual clock."""

    def __init__(self):
        self.now = 1_700_000_000.0

    def time(self):
        return self.now

    def monotonic(self):
        return self.now

    def sleep(self, seconds):
        self.now += max(0.0, seconds)


@pytest.fixture
def clock(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(wait, 'time', clock)
    return clock


def test_poll_interval_grows_with_the_time_taken_within_bounds(clock):
    now = clock.time()
    assert wait.poll_interval(now) == wait.MIN_POLL
    assert abs(wait.poll_interval(now - 10) - 10 / 20) < 0.01
    assert wait.poll_interval(now - 3600) == wait.MAX_POLL
    # a clock step backwards never gives a zero or negative interval
    assert wait.poll_interval(now + 60) == wait.MIN_POLL


def test_with_an_expected_duration_polls_gather_near_it(clock):
    now = clock.time()
    # 8-second failovers: a read every 2 s early on (not every 0.25 s),
    # landing on 0.8 * 8 = 6.4 s, then every 0.2 s until 12 s, then as
    # without an expectation
    assert abs(wait.poll_interval(now, 8.0) - 2.0) < 0.01
    assert abs(wait.poll_interval(now - 5.0, 8.0) - 1.4) < 0.01
    assert abs(wait.poll_interval(now - 7.0, 8.0) - 0.2) < 0.01
    assert abs(wait.poll_interval(now - 13.0, 8.0) - 13.0 / 20) < 0.01
    # 1-second failovers: as usual until 0.8 s, then every 0.1 s
    assert wait.poll_interval(now, 1.0) == wait.MIN_POLL
    assert abs(wait.poll_interval(now - 0.7, 1.0) - 0.1) < 0.01
    assert wait.poll_interval(now - 0.9, 1.0) == wait.FAST_POLL
    # minutes: never less often than MAX_POLL, and unchanged near the end
    assert wait.poll_interval(now, 600.0) == wait.MAX_POLL
    assert wait.poll_interval(now - 550, 600.0) == wait.MAX_POLL
    # nothing known: as without
    assert wait.poll_interval(now, None) == wait.MIN_POLL
    assert wait.poll_interval(now, 0.0) == wait.MIN_POLL


class _Cloud:
    """Answers reads of one load balancer from a list of statuses and
    records when each read came."""

    def __init__(self, clock, *statuses):
        self.clock = clock
        self.statuses = list(statuses)
        self.reads = []

    def get_load_balancer(self, lb_id):
        self.reads.append(self.clock.time())
        status = self.statuses.pop(0) if len(self.statuses) > 1 else \
            self.statuses[0]
        return {'id': lb_id, 'provisioning_status': status}


def test_a_fresh_request_is_first_read_one_interval_later(clock):
    cloud = _Cloud(clock, 'PENDING_UPDATE', 'ACTIVE')
    since = clock.time()
    lb = wait.check_settled(cloud, 'lb', 5.0, since=since)
    assert lb['provisioning_status'] == 'ACTIVE'
    assert len(cloud.reads) == 2
    assert cloud.reads[0] - since >= wait.MIN_POLL - 0.01
    assert cloud.reads[1] - cloud.reads[0] >= wait.MIN_POLL - 0.01


def test_an_old_request_is_read_at_once(clock):
    cloud = _Cloud(clock, 'ACTIVE')
    began = clock.time()
    wait.check_settled(cloud, 'lb', 5.0, since=began - 60)
    assert cloud.reads[0] - began < wait.MIN_POLL / 2


def test_a_closed_window_still_reads_once(clock):
    cloud = _Cloud(clock, 'PENDING_UPDATE')
    began = clock.monotonic()
    assert wait.check_settled(cloud, 'lb', 0.0, since=clock.time()) is None
    assert len(cloud.reads) == 1
    assert clock.monotonic() - began < wait.MIN_POLL / 2


def test_stop_cuts_the_first_pause_short(clock):
    cloud = _Cloud(clock, 'PENDING_UPDATE')
    began = clock.monotonic()
    result = wait.check_settled(cloud, 'lb', 30.0, stop=lambda: True,
                                since=clock.time())
    assert result is None
    assert len(cloud.reads) == 1
    assert clock.monotonic() - began < wait.MIN_POLL / 2


def test_an_expected_duration_sees_a_short_operation_end_sooner(clock):
    # settles 1.02 s after the request; recent ones took 1 s: read at
    # 0.25, 0.5, 0.75, then every 0.1 s, so it is seen at ~1.05 s (read
    # every 0.25 s it would be seen at ~1.25 s)
    class Timed(_Cloud):
        def get_load_balancer(self, lb_id):
            self.reads.append(clock.time())
            status = ('ACTIVE' if clock.time() - since >= 1.02
                      else 'PENDING_UPDATE')
            return {'id': lb_id, 'provisioning_status': status}

    cloud = Timed(clock)
    since = clock.time()
    wait.check_settled(cloud, 'lb', 5.0, since=since, expected=1.0)
    gaps = [b - a for a, b in itertools.pairwise(cloud.reads)]
    assert cloud.reads[-1] - since < 1.02 + wait.FAST_POLL + 0.05
    assert min(gaps) >= wait.FAST_POLL - 0.01
    assert len(cloud.reads) == 6
