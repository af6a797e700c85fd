"""One job run's share of the fleet: budget slots and resource locks.

Every job and conductor that shares a jobboard shares two things held on
the board's backend (:data:`~.jobboard.base.FLEET`):

- the failover budget, ``[fleet] max_concurrent_failovers``: at most that
  many cloud-changing actions in flight at once, fleet-wide (0: no
  budget);
- locks on what a target acts on (``lb:<id>``, ``host:<name>``): one job
  at a time; another job that reaches a locked key waits for it up to
  ``[fleet] lock_timeout`` seconds, then skips that target with ``in use
  by job <id>``.

A target takes both right before its cloud-changing call
(:class:`~octavia_workflows.machinery.target.TargetRun` asks for them
through ``context.fleet``).  Its slot and its ``lb:`` locks are given
back when it ends.  A key of a kind in :data:`RUN_KINDS` (``host:``)
stays held by the run once one of its targets took it, until the run
ends, pauses or is cancelled (:meth:`Fleet.give_all`): a job that acts
on a compute host (evacuate-host, cleanup-node) has the host to itself
from its first change of it to its end, so another job cannot act on the
host between two of its targets.

Everything is renewed with the job's claim (:meth:`Fleet.keep`, called by
the claim's keep-alive) and expires with it, so a conductor that dies --
SIGKILL included -- gives it back within the claim expiry.  Locks belong
to the job, not to the conductor: after a takeover a target of the job
is granted a lock the dead conductor still held for it (re-entrant), and
the slots of the targets in flight are re-taken at once (``force``: they
are in flight whatever the budget says).

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

#: Kinds of key held by the whole run once one of its targets took one
#: (see the module docstring).
RUN_KINDS = ('host:',)


def held_by_run(key):
    """True if ``key`` stays held by the run after its target ends."""
    return key.startswith(RUN_KINDS)


class Uncoordinated:
    """No fleet: everything is granted, nothing is held."""

    lock_timeout = 0.0
    budget = 0

    def take(self, target, keys, force=False, budgeted=True):
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
        #: Keys of :data:`RUN_KINDS` the run holds until it ends.
        self._run_keys = set()
        self._lock = threading.Lock()
        self._waits = {}
        #: True once the run's claim is lost: what it held may be the new
        #: owner's now (same job), so nothing is given back any more.
        self.is_lost = lambda: False

    def _member(self, target):
        return f'{self.job_id}/{target}'

    def _hands_off(self):
        """True once nothing may be given back: the claim is lost and
        what the run held may be the new owner's now (it expires with
        the claim instead).  A backend that gives back only what this
        client's session holds (``fleet_session_fenced``: ZooKeeper,
        whose session may outlive a claim declared lost) is still asked:
        its entries never expire while the session lives, and a new
        owner's never share it."""
        return self.is_lost() and not getattr(
            self.driver, 'fleet_session_fenced', False)

    def take(self, target, keys, force=False, budgeted=True):
        """Take ``keys`` and, with a budget and ``budgeted``, a slot for
        ``target`` (all or nothing).  Keys the run holds already
        (:data:`RUN_KINDS`) are not asked for again.

        :returns: the :class:`~.jobboard.base.Grant`; refused, the
            reason is remembered for :meth:`waited`.
        """
        keys = tuple(keys)
        budget = self.budget if budgeted else 0
        with self._lock:
            ask = [k for k in keys if k not in self._run_keys]
        if not ask and not budget:
            return base.Grant(True)
        grant = self.driver.fleet_take(self._member(target), self.job_id,
                                       ask, budget, force=force)
        with self._lock:
            if grant.granted:
                self._held[self._member(target)] = (
                    self.job_id, keys, bool(budget))
                self._run_keys.update(k for k in keys if held_by_run(k))
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
        """Give back what ``target`` holds (nothing to give: no round
        trip); a key another target of this run still holds, or that the
        run holds (:data:`RUN_KINDS`), stays locked."""
        member = self._member(target)
        with self._lock:
            held = self._held.pop(member, None)
            self._waits.pop(target, None)
            still = {key for _, keys, _ in self._held.values()
                     for key in keys} | self._run_keys
        if held is None or self._hands_off():
            return
        keys = [k for k in held[1] if k not in still]
        if keys or held[2]:
            self.driver.fleet_give(member, self.job_id, keys)

    def keep(self):
        """Renew everything held (the claim keep-alive calls this)."""
        with self._lock:
            held = dict(self._held)
            if self._run_keys:
                held[self._member('')] = (
                    self.job_id, tuple(sorted(self._run_keys)), False)
        if held and not self.is_lost():
            self.driver.fleet_keep(held)

    def give_all(self):
        """The run ends, pauses or is cancelled: give everything back,
        the run's own keys last, best effort (what is not given back
        expires with the claim)."""
        with self._lock:
            members = list(self._held)
        for member in members:
            try:
                self.give(member.split('/', 1)[1])
            except Exception as exc:  # expires with the claim anyway
                LOG.warning('job %s: cannot give back %s: %s', self.job_id,
                            member, exc)
        with self._lock:
            keys = sorted(self._run_keys)
            self._run_keys.clear()
        if not keys or self._hands_off():
            return
        try:
            self.driver.fleet_give(self._member(''), self.job_id, keys)
        except Exception as exc:  # expires with the claim anyway
            LOG.warning('job %s: cannot give back %s: %s', self.job_id,
                        ', '.join(keys), exc)
