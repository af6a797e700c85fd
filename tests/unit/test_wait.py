"""The adaptive poll interval of cloud waits."""

import time

from octavia_workflows.cloud import wait


def test_poll_interval_grows_with_the_time_taken_within_bounds():
    now = time.time()
    assert wait.poll_interval(now) == wait.MIN_POLL
    assert abs(wait.poll_interval(now - 10) - 10 / 20) < 0.01
    assert wait.poll_interval(now - 3600) == wait.MAX_POLL
    # a clock step backwards never gives a zero or negative interval
    assert wait.poll_interval(now + 60) == wait.MIN_POLL
