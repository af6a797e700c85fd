"""Pacing and the circuit breaker's rule, shared by the paced runbooks.

Both are decided from the job's target records, so they hold across a
resume on another conductor:

- :class:`Pacer` admits a target only when fewer than ``concurrency``
  targets are in flight, at least ``interval`` seconds passed since the
  last start, and its availability zone has fewer than ``max_per_az``
  targets in flight.  It is loaded once per run from the targets'
  records (RUNNING ones are in flight; the latest recorded start time
  counts for the interval) and then kept in memory, because every
  target of a job runs inside one conductor process.
- :func:`breaker_should_trip` says when the failed targets reach the next
  multiple of ``max_failures``: the job pauses itself, and after the
  operator resumes it, it pauses again after ``max_failures`` more.

One run's pacer, read-ahead and breaker live in its
:class:`~.runstate.RunState` (``context.run``).
"""

import threading
import time

from octavia_workflows import states
from octavia_workflows.machinery import target as target_mod

#: Target details key holding the epoch time a target started.
STARTED = target_mod.PROGRESS['started']


class Pacer:
    """Admission control for target starts (see the module docstring).

    Thread-safe.  ``clock`` returns epoch seconds (``time.time``).
    """

    def __init__(self, concurrency=1, interval=0.0, max_per_az=None,
                 clock=time.time):
        self.concurrency = max(1, int(concurrency or 1))
        self.interval = float(interval or 0.0)
        self.max_per_az = int(max_per_az) if max_per_az else None
        self.clock = clock
        self._lock = threading.Lock()
        self._freed = threading.Condition(self._lock)
        self._frees = 0
        self._in_flight = {}
        self._last_start = None
        self._undo = {}

    def load(self, rows):
        """Initialise from target records (dicts with ``target``,
        ``state`` and ``details``)."""
        with self._lock:
            for row in rows:
                details = row.get('details') or {}
                started = details.get(STARTED)
                if started is not None and (self._last_start is None
                                            or started > self._last_start):
                    self._last_start = float(started)
                if row.get('state') == states.RUNNING:
                    self._in_flight[row['target']] = details.get('az')

    @property
    def in_flight(self):
        with self._lock:
            return dict(self._in_flight)

    @property
    def last_start(self):
        return self._last_start

    def try_start(self, target, az=None):
        """Admit ``target`` now, or say why not.

        :returns: ``(True, 0.0)`` when admitted (the target counts as in
            flight and its start time is taken), else ``(False, seconds)``
            with the time left until the interval allows a start (0.0
            when waiting for a concurrency or zone slot).
        """
        with self._lock:
            if target in self._in_flight:
                return True, 0.0
            now = self.clock()
            if self.interval and self._last_start is not None:
                left = self._last_start + self.interval - now
                if left > 0:
                    return False, left
            if len(self._in_flight) >= self.concurrency:
                return False, 0.0
            if self.max_per_az is not None:
                same = sum(1 for z in self._in_flight.values() if z == az)
                if same >= self.max_per_az:
                    return False, 0.0
            self._undo[target] = (self._last_start, now)
            self._in_flight[target] = az
            self._last_start = now
            return True, 0.0

    def started_at(self, target):
        """The start time :meth:`try_start` took for ``target`` (None
        once confirmed or for a target it did not admit)."""
        with self._lock:
            taken = self._undo.get(target)
            return taken[1] if taken else None

    def confirm(self, target):
        """The start of an admitted target is recorded: keep it."""
        with self._lock:
            self._undo.pop(target, None)

    def cancel(self, target):
        """An admitted target did not start (skipped on re-check): free
        its slot and, unless another target started since, give the
        interval back."""
        with self._lock:
            taken = self._undo.pop(target, None)
            if taken is None:
                return
            self._in_flight.pop(target, None)
            previous, now = taken
            if self._last_start == now:
                self._last_start = previous
            self._frees += 1
            self._freed.notify_all()

    def adopt(self, target, az=None):
        """A target already started by an earlier run is in flight."""
        with self._lock:
            self._in_flight[target] = az

    def release(self, target):
        """The target finished (or its failover was seen done and
        verified): free its slot (its start time stays) and wake the
        targets waiting in :meth:`wait`.  Releasing twice is harmless."""
        with self._lock:
            self._in_flight.pop(target, None)
            self._undo.pop(target, None)
            self._frees += 1
            self._freed.notify_all()

    @property
    def frees(self):
        """How many times a slot was freed so far (for :meth:`wait`)."""
        with self._lock:
            return self._frees

    def wait(self, timeout, seen):
        """Sleep until a slot is freed (:meth:`release` or
        :meth:`cancel`) after :attr:`frees` was ``seen``, at most
        ``timeout`` seconds; at once if that already happened.

        :returns: True if a slot was freed, False on timeout.
        """
        with self._lock:
            return self._freed.wait_for(lambda: self._frees != seen,
                                        max(0.0, timeout))


class Expected:
    """How long recent operations of one kind took until seen settled:
    an exponentially weighted mean of :meth:`observe` d durations (the
    latest weighs ``weight``).  Thread-safe; ``None`` until the first."""

    def __init__(self, weight=0.3):
        self.weight = float(weight)
        self._lock = threading.Lock()
        self._mean = None

    def observe(self, seconds):
        with self._lock:
            if self._mean is None:
                self._mean = float(seconds)
            else:
                self._mean += self.weight * (float(seconds) - self._mean)

    @property
    def seconds(self):
        with self._lock:
            return self._mean


def ratio_should_trip(outcomes, max_ratio, window):
    """True when the last ``window`` of ``outcomes`` (True: failed, in
    the order the targets finished, since the breaker last tripped) hold
    at least ``max_ratio`` failures.  Fewer than ``window`` outcomes
    never trip it; ``max_ratio`` None disables it."""
    if max_ratio is None or not window:
        return False
    recent = list(outcomes)[-int(window):]
    if len(recent) < window:
        return False
    return sum(1 for failed in recent if failed) >= max_ratio * window


def breaker_should_trip(failed, trips, max_failures):
    """True when ``failed`` targets reach the next breaker threshold.

    ``trips``: how many times the breaker already tripped in this job.
    ``max_failures`` 0 or None disables the breaker.
    """
    if not max_failures:
        return False
    return failed >= max_failures * (trips + 1)
