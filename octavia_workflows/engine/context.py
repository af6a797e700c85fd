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
- ``run``: the per-run state the workflow declares (pacer, read-ahead,
  breaker), built once per run by the runner;
- ``require_approval()`` and ``post_job()``: approval gates and
  follow-up jobs, the services a runbook may ask of the engine;
- ``target()`` and ``write_target()``: the per-target report rows,
  fenced so a stale conductor cannot overwrite the new owner's records
  (steps change them through :class:`octavia_workflows.machinery.target.
  TargetRun`);
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
from octavia_workflows.engine import followup, gates
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
        #: The run's fleet budget slots and locks (engine.coordination),
        #: renewed with the claim.
        self.fleet = getattr(claim, 'fleet', None)
        self.cloud_name = cloud_name
        self._cloud_factory = cloud_factory
        self._cloud = None
        self._listener = listener or (lambda event, **fields: None)
        self._lock = threading.Lock()
        self.stop_event = threading.Event()
        #: Set by a task to ask the runner to pause the job (breaker,
        #: approval gate) with ``pause_reason``.
        self.pause_reason = None
        #: The per-run state the workflow declares (``run_state``),
        #: set by the runner before the flow runs; None if it has none.
        self.run = None
        #: Called by :meth:`progressed` (the runner resets the job's
        #: no-progress attempt counter there).
        self.on_progress = lambda: None

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

    def progressed(self):
        """A step got somewhere (a target finished): the runner's
        no-progress attempt counter starts again."""
        self.on_progress()

    # -- services for tasks ------------------------------------------------
    def require_approval(self, key, message, if_rejected=None):
        """Return if approval gate ``key`` of this job was approved; else
        record the question, pause the job and raise
        :class:`~octavia_workflows.exceptions.GateWaiting` (the step runs
        again once the gate is answered; see :mod:`.gates`).

        :param message: what the operator must do or decide (shown by
            ``show`` and ``wait``).
        :param if_rejected: what is left to do by hand if the operator
            rejects (added to the job's reason).
        """
        job = self.records.get_job(self.job_id)
        state = gates.parse(job['gate'] if job else None)
        if gates.approved(state, key):
            return
        self.fence()
        new = gates.ask(state, key, message, rec.isoformat(rec.utcnow()),
                        owner=self.owner, if_rejected=if_rejected)
        self.records.update_job(self.job_id, expect_owner=self.owner,
                                gate=gates.dump(new))
        LOG.warning('job %s: waiting for approval at gate %s: %s',
                    self.job_id, key, message)
        self.request_pause(f'waiting for approval at gate {key}',
                           kind='gate')
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline and not self.claim.lost:
            time.sleep(0.2)
        raise exceptions.GateWaiting(f'gate {key} is not approved')

    def post_job(self, workflow_name, params, job_id):
        """Post (once) a follow-up job of ``workflow_name`` with the
        validated ``params`` under the chosen ``job_id``, for the same
        cloud; a repeated call finds the job it posted, and a record left
        without its board posting (a crash between the two) is posted
        then.  Returns a note for the report.

        :raises OctaviaWorkflowsError: unknown workflow, bad parameters
            or an unreachable jobboard.
        """
        return followup.post(self, workflow_name, params, job_id)

    # -- the report -------------------------------------------------------
    def target(self, target):
        """The target's current row (state, attempts, details)."""
        return self.records.get_target(self.job_id, target)

    def write_target(self, target, state=None, error=None, details=None,
                     add_attempt=False, start=False, finished=False):
        """Fenced write of a target's row: the primitive under
        :class:`octavia_workflows.machinery.target.TargetRun` (which is
        what steps use).  ``details`` are merged; ``state`` None leaves
        the state (and ``error``) as they are; ``finished`` stamps the
        end and tells the listener."""
        self.fence()
        values = {}
        if state is not None:
            values.update(state=state, error=error)
        if finished:
            values['finished_at'] = rec.utcnow()
        row = self.records.update_target(
            self.job_id, target, add_attempt=add_attempt, start=start,
            merge_details=details or None, **values)
        if finished:
            started = row and row['started_at']
            self._listener('target', target=target, state=state, seconds=(
                values['finished_at'] - started).total_seconds()
                if started else None)
            if error:
                LOG.warning('job %s target %s: %s: %s', self.job_id, target,
                            state, error)
            else:
                LOG.info('job %s target %s: %s', self.job_id, target,
                         state)
        return row


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
