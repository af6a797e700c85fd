"""The shared wait helper: a *short* check, never a long wait.

Runbooks wait for Octavia by running :func:`check_settled` inside a
TaskFlow retry controller: each execution polls for at most ``window``
seconds and reports whether the object settled.  The retry controller
runs it again until it settles or the target's deadline passes, so a
conductor can suspend, hand over or stop between two checks and the
saved state says exactly where the wait stands.
"""

import logging
import time

from octavia_workflows import exceptions

#: Seconds between two polls inside one check, when the caller gives no
#: ``since``.
POLL = 0.2
#: With ``since``: polls come every 1/20 of the time the operation has
#: taken so far, within these bounds, so that a quick failover is seen
#: within ~0.25 s and a 10-minute amphora build costs one GET every 2 s
#: (detection adds at most ~5% to a long wait, and many targets in
#: flight never poll the API harder than 4 requests a second each).
MIN_POLL = 0.25
MAX_POLL = 2.0
#: With ``expected`` too (how long recent operations of the same kind
#: took): before ``NEAR[0] * expected`` polls come at most every quarter
#: of ``expected`` (never less often than every ``MAX_POLL``); between
#: ``NEAR[0]`` and ``NEAR[1]`` times ``expected``, when the operation is
#: most likely to end, every 1/40 of ``expected`` but not more often
#: than ``FAST_POLL``; after that as without ``expected``.  A run of
#: 1-second no-op failovers is then seen within 0.1 s of its end (0.25 s
#: without) with about as many reads; one of 8-second failovers with a
#: third of them.  For operations of minutes nothing changes (the
#: bounds above already apply).
NEAR = (0.8, 1.5)
FAST_POLL = 0.1

PENDING_PREFIX = 'PENDING_'

LOG = logging.getLogger(__name__)


def is_pending(status):
    return bool(status) and status.startswith(PENDING_PREFIX)


def poll_interval(since, expected=None):
    """Seconds to the next poll of an operation started at ``since``
    (``time.time()``) that usually takes about ``expected`` seconds
    (None: not known; see :data:`NEAR`)."""
    taken = max(0.0, time.time() - since)
    step = min(MAX_POLL, max(MIN_POLL, taken / 20.0))
    if not expected or expected <= 0:
        return step
    near, far = NEAR[0] * expected, NEAR[1] * expected
    if taken < near:
        step = max(step, min(MAX_POLL, expected / 4.0))
        return max(FAST_POLL, min(step, near - taken))
    if taken < far:
        return max(FAST_POLL, min(step, expected / 40.0))
    return step


def check_settled(cloud, lb_id, window, stop=None, poll=POLL, since=None,
                  expected=None):
    """Poll a load balancer for up to ``window`` seconds.

    ``since``: when the operation being waited for was requested
    (``time.time()``); the poll interval then adapts (see
    :func:`poll_interval`) instead of being ``poll``, and the first read
    waits until one interval after ``since`` (a load balancer read right
    after its request is always still pending).

    :returns: the load balancer (dict) once it is not PENDING_*, or
        ``None`` if it is still pending when the window closes, or when
        ``stop()`` turns true.  A transient cloud error counts as "not
        settled yet".  A deleted load balancer is returned as a dict with
        ``provisioning_status`` ``DELETED``.  The load balancer is read at
        least once, however short the window.
    :raises CloudError: a permanent error (other than 404).
    """
    deadline = time.monotonic() + max(0.0, window)
    if since is not None:
        first = min(since + poll_interval(since, expected) - time.time(),
                    window)
        _pause(first, stop)
    warned = False
    while True:
        try:
            lb = cloud.get_load_balancer(lb_id)
        except exceptions.CloudNotFound:
            return {'id': lb_id, 'provisioning_status': 'DELETED'}
        except exceptions.CloudTransient as exc:
            if not warned:      # once per window: an outage is not spam
                LOG.warning('load balancer %s: cannot read it (%s); '
                            'checking again', lb_id, exc)
                warned = True
            lb = None
        if lb is not None and not is_pending(lb.get('provisioning_status')):
            return lb
        remaining = deadline - time.monotonic()
        if remaining <= 0 or (stop is not None and stop()):
            return None
        step = (poll_interval(since, expected) if since is not None
                else poll)
        time.sleep(min(step, remaining))


def _pause(seconds, stop=None):
    """Sleep ``seconds`` (nothing if <= 0), in steps of at most
    :data:`MAX_POLL`, ending early once ``stop()`` turns true."""
    deadline = time.monotonic() + seconds
    while (stop is None or not stop()):
        left = deadline - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(left, MAX_POLL))
