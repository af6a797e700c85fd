"""The jobboard driver interface.

A driver wraps one of TaskFlow's jobboards and adds what TaskFlow leaves
out (see the design's durability rules):

- every claim has an expiry and is renewed by its owner only
  (:meth:`JobBoardDriver.renew` checks ownership; TaskFlow's
  ``extend_expiry`` does not);
- :meth:`JobBoardDriver.owns` is the fencing check a task runs before it
  changes the cloud;
- errors from redis-py/kazoo/TaskFlow are translated once, here, into
  :class:`~octavia_workflows.exceptions.BackendUnavailable`.

Drivers declare capabilities so callers can reason about them:

``CLAIM_EXPIRY``
    Claims carry a TTL that the owner must renew (Redis).
``POSTING_WAKEUP``
    :meth:`JobBoardDriver.idle` returns as soon as a job is posted
    (Redis: a publish on ``<namespace>.posted``; ZooKeeper: a watch on
    the board's children), so a new job is claimed at once, not at the
    conductor's next poll.
``SESSION_CLAIMS``
    Claims vanish with the owner's session (ZooKeeper ephemeral nodes);
    renewing is the client's heartbeat, ownership also requires a live
    session.
``FLEET``
    Fleet coordination on the backend itself, shared by every job and
    conductor on the board: the failover budget (at most N holders at
    once), locks on resources (a load balancer, a host) held by one job
    at a time, and named leases.  Entries expire with the holder's
    claim: :meth:`JobBoardDriver.fleet_keep` renews them together with
    the claim (Redis), or they are ephemeral nodes of the session
    (ZooKeeper).  See :mod:`octavia_workflows.engine.coordination`.
"""

import abc
import contextlib
import dataclasses
import logging

from taskflow import exceptions as tf_exc

from octavia_workflows import exceptions, states

LOG = logging.getLogger(__name__)

CLAIM_EXPIRY = 'claim-expiry'
SESSION_CLAIMS = 'session-claims'
POSTING_WAKEUP = 'posting-wakeup'
FLEET = 'fleet'

#: Why a fleet request was refused.
BUDGET = states.FLEET_BUDGET
LOCKED = states.FLEET_LOCKED


@dataclasses.dataclass(frozen=True)
class Grant:
    """The answer to :meth:`JobBoardDriver.fleet_take`.

    ``granted``: everything asked for is now held.  Refused: ``refused``
    is :data:`BUDGET` (``holder`` is how many slots are in use) or
    :data:`LOCKED` (``holder`` is the job id holding ``key``).
    ``released_at``: the latest time (epoch seconds) one of the keys was
    released by anyone, or None -- a read made before it is stale.
    """

    granted: bool
    refused: str | None = None
    holder: str | None = None
    key: str | None = None
    released_at: float | None = None


class JobBoardDriver(abc.ABC):
    """A jobboard: post, claim, renew, release jobs.

    :param conf: the parsed configuration (``[task_flow]`` is read).
    :param name: the board's name (appears in logs only).

    Methods raise :class:`~octavia_workflows.exceptions.BackendUnavailable`
    when the backend cannot be reached; a lost race (someone else claimed
    first, the job is gone) is a ``False`` return, not an exception.
    """

    #: Capabilities of this driver (see the module docstring).
    capabilities = frozenset()

    #: The client library's own exception classes, translated at the
    #: boundary like TaskFlow's.
    backend_errors = ()

    def __init__(self, conf, name='octavia-workflows'):
        self.conf = conf
        self.name = name
        self.expiry = conf.task_flow.jobboard_expiration_time
        self.board = None

    # -- lifecycle (subclasses build ``self.board``) ----------------------
    @abc.abstractmethod
    def connect(self):
        """Connect; raises BackendUnavailable with a one-line reason."""

    def close(self):
        """Disconnect.  Safe to call twice; never raises."""
        if self.board is not None:
            with contextlib.suppress(Exception):
                self.board.close()

    def __enter__(self):
        self.connect()
        return self

    def __exit__(self, *exc):
        self.close()

    @abc.abstractmethod
    def describe(self):
        """A one-line description without secrets, for messages."""

    @contextlib.contextmanager
    def translate(self, what):
        """Translate backend failures into BackendUnavailable."""
        try:
            yield
        except (tf_exc.JobFailure, tf_exc.StorageFailure, OSError,
                TimeoutError) + self.backend_errors as exc:
            cause = exc.__cause__ or exc
            raise exceptions.BackendUnavailable(
                f'jobboard {self.describe()}: {what} failed: '
                f'{_first_line(cause)}') from exc

    # -- jobs -------------------------------------------------------------
    def post(self, job_id, workflow):
        """Post a job; returns the board's job uuid.

        Only the job id and workflow name travel on the board; the
        parameters live in the persistence database.
        """
        with self.translate('posting a job'):
            job = self.board.post(
                f'{workflow}:{job_id}',
                details={'job_id': job_id, 'workflow': workflow})
        return job.uuid

    def unclaimed(self):
        """The unclaimed jobs currently on the board."""
        with self.translate('listing jobs'):
            return list(self.board.iterjobs(only_unclaimed=True,
                                            ensure_fresh=True))

    def find(self, board_uuid):
        """The board job with that uuid, or None."""
        with self.translate('listing jobs'):
            for job in self.board.iterjobs(ensure_fresh=True):
                if job.uuid == board_uuid:
                    return job
        return None

    def idle(self, timeout, stop):
        """Wait up to ``timeout`` seconds, or until ``stop`` is set, for a
        job to be posted.  This base waits the whole time; a driver that
        can be told of postings returns as soon as one arrives, so a
        conductor claims a new job at once instead of at its next poll.
        Never raises: a backend error just ends the wait (the next look
        at the board reports it)."""
        stop.wait(timeout)

    def wait(self, timeout):
        """Block up to ``timeout`` seconds for jobs to appear."""
        with contextlib.suppress(tf_exc.NotFound):
            with self.translate('waiting for jobs'):
                self.board.wait(timeout=timeout)

    @abc.abstractmethod
    def claim(self, job, owner):
        """Claim ``job`` for ``owner`` with an expiry; False if lost."""

    @abc.abstractmethod
    def renew(self, job, owner):
        """Keep ``owner``'s claim alive; False if ``owner`` lost it."""

    def owner(self, job):
        """The claiming owner's name, or None."""
        with self.translate('reading a claim'):
            try:
                return self.board.find_owner(job)
            except tf_exc.NotFound:
                return None

    def owns(self, job, owner):
        """The fencing check: does ``owner`` hold the claim right now?

        :raises BackendUnavailable: when the board cannot tell (the caller
            waits and asks again, never assumes yes).
        """
        return self.owner(job) == owner

    def release(self, job, owner):
        """Give the claim up so another conductor can take the job."""
        with self.translate('releasing a claim'):
            with contextlib.suppress(tf_exc.NotFound, tf_exc.JobFailure):
                self.board.abandon(job, owner)

    def complete(self, job, owner):
        """Remove a claimed job from the board (it is finished)."""
        with self.translate('completing a job'):
            with contextlib.suppress(tf_exc.NotFound):
                self.board.consume(job, owner)

    # -- fleet coordination (capability FLEET) ----------------------------
    def fleet_take(self, member, job_id, keys, budget, force=False):
        """All or nothing: lock ``keys`` for ``job_id`` and, when
        ``budget`` > 0, take one of the ``budget`` slots for ``member``.

        Re-entrant: keys already locked by ``job_id`` and a slot already
        held by ``member`` count as granted.  ``force`` takes the slot
        even when the budget is spent (a target already in flight,
        adopted after a takeover, is counted at once).  One round trip
        on Redis.

        :returns: a :class:`Grant`.
        """
        raise NotImplementedError(f'{self.describe()}: no fleet support')

    def fleet_give(self, member, job_id, keys):
        """Release what :meth:`fleet_take` took (keys only where
        ``job_id`` holds them); records the release time of each key.
        Safe to call twice."""
        raise NotImplementedError(f'{self.describe()}: no fleet support')

    def fleet_keep(self, held):
        """Renew the entries in ``held`` (``{member: (job_id, keys,
        budgeted)}``) for another claim expiry; re-adds any the backend
        lost (a restart without its data)."""
        raise NotImplementedError(f'{self.describe()}: no fleet support')

    def fleet_in_use(self):
        """How many budget slots are held right now (on ZooKeeper this
        includes takers about to back off)."""
        raise NotImplementedError(f'{self.describe()}: no fleet support')

    def try_lease(self, name, holder, ttl):
        """Take (or renew) the exclusive lease ``name`` for ``holder``
        for ``ttl`` seconds; False while another holder has it."""
        raise NotImplementedError(f'{self.describe()}: no fleet support')

    def release_lease(self, name, holder):
        """Give up ``name`` if ``holder`` has it."""
        raise NotImplementedError(f'{self.describe()}: no fleet support')

    def remove(self, board_uuid, owner):
        """Remove an unclaimed job (cancel or pause before any conductor).

        Returns False when the job is claimed by someone (then the owner
        sees the request in the job's record) or is already gone.
        """
        job = self.find(board_uuid)
        if job is None:
            return False
        if not self.claim(job, owner):
            return False
        self.complete(job, owner)
        return True


def _first_line(exc):
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
