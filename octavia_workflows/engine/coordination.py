"""One job run's share of the fleet: budget slots and resource locks.

Every job and conductor that shares a jobboard shares two things held on
the board's backend (:data:`~.jobboard.base.FLEET`):

- the failover budget, ``[fleet] max_concurrent_failovers``: at most that
  many cloud-changing actions in flight at once, fleet-wide (0: no
  budget);
- locks on what a target acts on (``lb:<id>``, ``host:<name>``): one job
  at a time; another job that reaches a locked load balancer waits for
  it up to ``[fleet] lock_timeout`` seconds, then skips it with ``in use
  by job <id>``.

A target takes both right before its cloud-changing call and gives them
back when it ends (:class:`~octavia_workflows.machinery.target.TargetRun`
asks for them through ``context.fleet``).  They are renewed with the
job's claim (:meth:`Fleet.keep`, called by the claim's keep-alive) and
expire with it, so a conductor that dies -- SIGKILL included -- gives
them back within the claim expiry; a takeover re-takes the slots of the
targets in flight at once (``force``: they are in flight whatever the
budget says).

:class:`Uncoordinated` is the same interface for runs without a jobboard
(the embedded, single-host mode): every request is granted.

Failures: a backend error (BackendUnavailable) propagates to the step,
which retries it later like a transient cloud error; nothing is
half-taken.
"""

import logging
import threading
import time

from octavia_workflows.engine.jobboard import base

LOG = logging.getLogger(__name__)

class Uncoordinated:
    """No fleet: everything is granted, nothing is held."""

    lock_timeout = 0.0
    budget = 0

    def take(self, target, keys, force=False):
        return base.Grant(True)

    def waited(self, target):
        return 0.0

    def give(self, target):
        return None

    def keep(self):
        return None

    def give_all(self):
        return None


class Fleet:
    """The fleet entries one job run holds (see the module docstring).

    :param driver: a connected jobboard driver with the FLEET capability.
    :param job_id: the job.
    :param budget: ``[fleet] max_concurrent_failovers`` (0: none).
    :param lock_timeout: ``[fleet] lock_timeout`` seconds.
    """

    def __init__(self, driver, job_id, budget=0, lock_timeout=600.0):
        self.driver = driver
        self.job_id = job_id
        self.budget = int(budget or 0)
        self.lock_timeout = float(lock_timeout)
        self._held = {}
        self._lock = threading.Lock()
        self._waits = {}
        #: True once the run's claim is lost: what it held may be the new
        #: owner's now (same job), so nothing is given back any more.
        self.is_lost = lambda: False

    def _member(self, target):
        return f'{self.job_id}/{target}'

    def take(self, target, keys, force=False):
        """Take ``keys`` and (with a budget) a slot for ``target``.

        :returns: the :class:`~.jobboard.base.Grant`; refused, the
            reason is remembered for :meth:`waiting`.
        """
        keys = tuple(keys)
        if not keys and not self.budget:
            return base.Grant(True)
        grant = self.driver.fleet_take(self._member(target), self.job_id,
                                       keys, self.budget, force=force)
        with self._lock:
            if grant.granted:
                self._held[self._member(target)] = (
                    self.job_id, keys, bool(self.budget))
                self._waits.pop(target, None)
            else:
                self._waits.setdefault(target, time.monotonic())
        return grant

    def waited(self, target):
        """Seconds ``target`` has been refused so far (0: not refused)."""
        with self._lock:
            since = self._waits.get(target)
        return time.monotonic() - since if since is not None else 0.0

    def give(self, target):
        """Give back what ``target`` holds (nothing held: no round trip);
        a key another target of this run still holds stays locked."""
        member = self._member(target)
        with self._lock:
            held = self._held.pop(member, None)
            self._waits.pop(target, None)
            still = {key for _, keys, _ in self._held.values()
                     for key in keys}
        if held is None or self.is_lost():
            return
        self.driver.fleet_give(member, self.job_id,
                               [k for k in held[1] if k not in still])

    def keep(self):
        """Renew everything held (the claim keep-alive calls this)."""
        with self._lock:
            held = dict(self._held)
        if held and not self.is_lost():
            self.driver.fleet_keep(held)

    def give_all(self):
        """The run ends: give everything back, best effort (what is not
        given back expires with the claim)."""
        with self._lock:
            members = list(self._held)
        for member in members:
            try:
                self.give(member.split('/', 1)[1])
            except Exception as exc:  # expires with the claim anyway
                LOG.warning('job %s: cannot give back %s: %s', self.job_id,
                            member, exc)
