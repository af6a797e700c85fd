"""The run context handed to every task of a job.

It is injected into the engine's storage as the transient argument
``context`` (never persisted), so tasks declare ``context`` in their
``execute`` signature and get:

- ``job_id``, ``params``, ``owner``, ``conf`` (the running process's
  configuration, None in library use without one);
- ``fence()``: the fencing check to call right before any change to the
  cloud (raises :class:`~octavia_workflows.exceptions.ClaimLost`);
- ``cloud()``: the openstacksdk-backed :mod:`octavia_workflows.cloud`
  client for the job's cloud (created lazily, once per run);
- ``target_*`` helpers that update the per-target report rows, fenced
  so a stale conductor cannot overwrite the new owner's records;
- ``stopping``: True once the job should start nothing new (pause,
  cancel, conductor shutdown, lost claim) — long waits poll it;
- ``records``: the job records, through :class:`PatientRecords`: a
  database outage makes a task wait for the database (while it still
  holds the claim) instead of failing, because a failing task would make
  TaskFlow revert the whole flow and lose its saved progress.
"""

import functools
import logging
import threading
import time

from sqlalchemy import exc as sa_exc

from octavia_workflows import exceptions
from octavia_workflows.engine import records as rec

LOG = logging.getLogger(__name__)


class RunContext:
    """Per-run services for tasks (see the module docstring)."""

    def __init__(self, job_id, workflow, params, owner, records, claim,
                 cloud_name=None, cloud_factory=None, listener=None,
                 conf=None, persistence=None):
        self.job_id = job_id
        self.conf = conf
        #: The persistence store (for runbooks that post follow-up jobs).
        self.persistence = persistence
        self.workflow = workflow
        self.params = params
        self.owner = owner
        self.records = PatientRecords(records, claim)
        self.claim = claim
        self.cloud_name = cloud_name
        self._cloud_factory = cloud_factory
        self._cloud = None
        self._listener = listener or (lambda event, **fields: None)
        self._lock = threading.Lock()
        self.stop_event = threading.Event()
        #: Set by a task to ask the runner to pause the job (breaker,
        #: approval gate) with ``pause_reason``.
        self.pause_reason = None

    # -- fencing ----------------------------------------------------------
    def fence(self):
        """Raise ClaimLost unless this conductor still owns the job."""
        self.claim.check()

    @property
    def stopping(self):
        return self.stop_event.is_set() or self.claim.lost

    def request_pause(self, reason, kind='runbook'):
        """Stop starting new targets and leave the job PAUSED.

        ``kind`` (``breaker``, ``gate``, ``runbook``) labels the pause in
        the conductor's metrics.
        """
        with self._lock:
            first = self.pause_reason is None
            if first:
                self.pause_reason = reason
                LOG.warning('job %s: pausing: %s', self.job_id, reason)
        if first:
            self._listener('paused', kind=kind)
        self.stop_event.set()

    # -- cloud ------------------------------------------------------------
    def cloud(self):
        """The job's cloud client (see :mod:`octavia_workflows.cloud`)."""
        with self._lock:
            if self._cloud is None:
                self._cloud = _connect(self.cloud_name, self._cloud_factory)
            return self._cloud

    # -- the report -------------------------------------------------------
    def target(self, target):
        """The target's current row (state, attempts, details)."""
        return self.records.get_target(self.job_id, target)

    def target_started(self, target, **details):
        self.fence()
        self.records.update_target(self.job_id, target, state='RUNNING',
                                   add_attempt=True, error=None, start=True,
                                   merge_details=details or None)
        LOG.info('job %s target %s: started', self.job_id, target)

    def target_finished(self, target, state, error=None, **details):
        """Record ``DONE``, ``SKIPPED`` or ``FAILED`` for a target."""
        self.fence()
        now = rec.utcnow()
        row = self.records.update_target(
            self.job_id, target, state=state, error=error,
            finished_at=now, merge_details=details or None)
        started = row and row['started_at']
        self._listener('target', target=target, state=state,
                       seconds=(now - started).total_seconds()
                       if started else None)
        if error:
            LOG.warning('job %s target %s: %s: %s', self.job_id, target,
                        state, error)
        else:
            LOG.info('job %s target %s: %s', self.job_id, target, state)

    def target_details(self, target, **details):
        self.fence()
        self.records.update_target(self.job_id, target,
                                   merge_details=details)

    def target_attempt(self, target, **details):
        """Count one more attempt at a RUNNING target (e.g. a request
        sent again after an interruption), merging ``details``."""
        self.fence()
        self.records.update_target(self.job_id, target, add_attempt=True,
                                   merge_details=details or None)


class PlanContext:
    """What a workflow's ``plan`` gets during ``submit --dry-run``.

    Read-only: ``cloud()`` and ``params``; there is no job yet.
    """

    def __init__(self, params, cloud_name=None, cloud_factory=None,
                 conf=None):
        self.job_id = None
        self.conf = conf
        self.params = params
        self.cloud_name = cloud_name
        self._cloud_factory = cloud_factory
        self._cloud = None

    def cloud(self):
        if self._cloud is None:
            self._cloud = _connect(self.cloud_name, self._cloud_factory)
        return self._cloud

    def fence(self):
        """Nothing to fence: a dry run changes nothing."""


def _connect(cloud_name, factory):
    if factory is not None:
        return factory(cloud_name)
    from octavia_workflows import cloud

    return cloud.connect(cloud_name)


#: Database errors that mean "not reachable right now".
OUTAGE = (sa_exc.OperationalError, sa_exc.InterfaceError,
          sa_exc.DisconnectionError)


class PatientRecords:
    """The job records, waiting out a database outage.

    Every call is retried (0.5 s, doubling to 5 s) while the database is
    unreachable, as long as the claim is still held and for at most
    ``grace`` seconds; then the last error is raised (the runner treats
    it as transient: the job is released and tried again later).  A lost
    claim raises :class:`~octavia_workflows.exceptions.ClaimLost`.
    """

    def __init__(self, records, claim, grace=600.0):
        self._records = records
        self._claim = claim
        self._grace = grace

    def __getattr__(self, name):
        method = getattr(self._records, name)
        if not callable(method):
            return method

        @functools.wraps(method)
        def patient(*args, **kwargs):
            deadline = time.monotonic() + self._grace
            delay = 0.5
            while True:
                try:
                    return method(*args, **kwargs)
                except OUTAGE as exc:
                    if self._claim.lost or time.monotonic() > deadline:
                        raise
                    LOG.warning('database unreachable (%s); retrying in '
                                '%.1f s', _first_line(exc), delay)
                time.sleep(delay)
                delay = min(5.0, delay * 2)
                if self._claim.lost:
                    raise exceptions.ClaimLost(
                        'claim lost while the database was unreachable')

        return patient


def _first_line(exc):
    text = str(getattr(exc, 'orig', None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
