"""Read-ahead: the next targets' re-check reads, made ahead of their start.

Every target is re-checked against the cloud right before its failover
call (criterion: a target that changed since the plan is not blindly
acted on).  Made after the pacing slot frees, those reads sit between
one target's end and the next one's call.  :class:`ReadAhead` makes them
earlier, in the background, while the targets before them are in
flight: once a target's call is made, the next pending targets of the
plan are read (again, if their read got too old): as many as are
expected to start within half of ``max_age`` at the pace targets have
been starting, at least one and at most ``width``.
When one of them is admitted, its read is used if it is at most
``max_age`` seconds old.

Safety rules (what a read made ahead may and may not do):

- it can only let a target go: if the re-check on it finds a reason to
  skip, the target is re-checked again with fresh reads;
- it is never made for a target whose load balancer has another target
  in flight or earlier in the plan (the first one changes the load
  balancer the next one would be read from);
- it is older than ``max_age`` -> not used (fresh reads instead), and
  read-ahead is off when the pacing interval is that long anyway;
- a read that failed is simply not used.

A load balancer changed by someone else between a read made ahead and
the call is still caught by Octavia itself: a busy one answers 409 and
the target is SKIPPED ("became busy before the failover"), a deleted one
404 ("gone before the failover").
"""

import collections
import concurrent.futures
import logging
import threading
import time

from octavia_workflows import states

LOG = logging.getLogger(__name__)

#: Oldest read (seconds, from when it was asked for) a re-check may use.
MAX_AGE = 5.0
#: Background threads making reads ahead, per run (they end with the
#: run: the pool goes when the run's state is collected).
READERS = 2


def group_of(details, target):
    """Targets of one load balancer share a group."""
    return (details or {}).get('lb') or target


class ReadAhead:
    """Reads made ahead for the pending targets of one run.

    ``rows``: the job's target records in plan order (dicts with
    ``target``, ``state`` and ``details``); PENDING ones may be read
    ahead.  ``width``: at most how many of the next pending targets are
    read (the run's concurrency).  ``interval``: the pacing interval; at
    ``max_age`` or more, nothing is read ahead.  Thread-safe.
    """

    def __init__(self, rows, width=1, interval=0.0, max_age=MAX_AGE,
                 clock=time.time):
        self.width = max(1, int(width or 1))
        self.max_age = float(max_age)
        self.enabled = float(interval or 0.0) < self.max_age
        self.clock = clock
        self._lock = threading.Lock()
        self._groups = {}
        self._pending = collections.OrderedDict()
        for row in rows:
            details = row.get('details') or {}
            self._groups[row['target']] = group_of(details, row['target'])
            if row.get('state') == states.PENDING:
                self._pending[row['target']] = details
        self._reads = {}
        self._pool = None
        self._last_take = None
        self._gap = None

    @property
    def window(self):
        """How many pending targets to read ahead: those expected to
        start within ``max_age / 2`` (from the mean time between recent
        starts), at least 1, at most ``width``; ``width`` until two
        targets started."""
        if not self._gap:
            return self.width
        return max(1, min(self.width, int(self.max_age / 2 / self._gap)))

    def schedule(self, read, busy=()):
        """Read ahead for the next :attr:`window` pending targets that
        have no read yet (or one older than ``max_age``): ``read(details)``
        runs in the background.

        ``busy``: targets in flight; the pending targets of their load
        balancers are not read.  Returns the targets being read.
        """
        if not self.enabled:
            return []
        with self._lock:
            taken = {self._groups.get(t, t) for t in busy}
            width = self.window
            window = []
            for target, details in self._pending.items():
                if len(window) >= width:
                    break
                group = self._groups[target]
                if group in taken:
                    continue        # read it once the earlier one is done
                taken.add(group)
                window.append((target, details))
            now = self.clock()
            todo = [(t, d) for t, d in window if t not in self._reads
                    or now - self._reads[t][0] > self.max_age]
            if todo and self._pool is None:
                self._pool = concurrent.futures.ThreadPoolExecutor(
                    READERS, thread_name_prefix='read-ahead')
            for target, details in todo:
                self._reads[target] = (now, self._pool.submit(read, details))
        return [t for t, _ in todo]

    def take(self, target):
        """The read made ahead for ``target`` as ``(read_at, data)``, or
        None (none made, failed, or older than ``max_age``).  Waits for
        a read still under way: it began before a new one would.  The
        target is no longer pending afterwards."""
        with self._lock:
            if self._pending.pop(target, None) is not None:
                self._paced(self.clock())
            entry = self._reads.pop(target, None)
            group = self._groups.get(target, target)
            # nothing read ahead for its load balancer stays valid
            for other in [t for t in self._reads
                          if self._groups.get(t, t) == group]:
                del self._reads[other]
        if entry is None:
            return None
        read_at, future = entry
        try:
            data = future.result()
        except Exception as exc:
            LOG.debug('read ahead for %s failed (%s); reading again',
                      target, exc)
            return None
        if self.clock() - read_at > self.max_age:
            return None
        return read_at, data

    def _paced(self, now):
        # mean time between starts, weighted to the recent ones
        if self._last_take is not None:
            gap = max(0.0, now - self._last_take)
            self._gap = gap if self._gap is None else (
                0.75 * self._gap + 0.25 * gap)
        self._last_take = now
