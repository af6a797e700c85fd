"""A target's record, and the one object that moves a target along.

:class:`TargetRecord` is the per-target durable state, typed, defined
here and only here.  It is stored as earlier releases stored it: the
target's row in ``ow_targets`` with one JSON ``details`` object holding
the frozen plan's details and, at its top level, the progress fields
below (so a job started by an earlier release is read the same way).

:class:`TargetRun` is the only way a step changes a target: begin,
record intent, record the request, then exactly one of done, fail or
skip.  It owns the target's pacing slot and the circuit breaker, so a
caller cannot end a target the wrong way: ``done`` frees the slot as
soon as the outcome is known, ``fail`` consults the breaker before it
frees the slot (no waiting target starts once the breaker trips),
``skip`` gives an unused admission back.  It also holds the target's
share of the fleet (``context.fleet``: a slot of the cloud-wide failover
budget and the locks on what it acts on, see :meth:`TargetRun.hold`),
given back once the target's end is recorded -- except a ``host:`` lock,
which the job run keeps until it ends (:mod:`~octavia_workflows.engine.
coordination`).  A target of a step that is not paced (``paced=False``:
host steps, cold-upgrade, selftest) has no pacing slot, takes no budget
slot and does not count for the breaker; it may still take locks.

Failures: every write is fenced (a conductor that lost the job raises
:class:`~octavia_workflows.exceptions.ClaimLost` and writes nothing); a
database outage is waited out by the context's records; an exception
while beginning gives the admission back.
"""

import dataclasses
import logging
import time

from octavia_workflows import states

LOG = logging.getLogger(__name__)

#: Progress fields and the ``details`` keys they are stored under (the
#: names earlier releases wrote).
PROGRESS = {
    'started': 'started',              # epoch: the target started
    'rechecked': 'rechecked',          # epoch: its re-check reads were asked
    'before': 'before',                # snapshot before acting
    'after': 'after',                  # what was seen afterwards
    'intent': 'intent',                # epoch: about to make the call
    'requested_at': 'requested_at',    # epoch: the call was made (or seen)
    'recovered': 'recovered',          # an earlier call was found, not re-made
    'verified': 'verified',            # epoch: seen done and verified
    'breaker_tripped': 'breaker_tripped',  # this failure tripped the breaker
}


@dataclasses.dataclass
class TargetRecord:
    """One target's row (see the module docstring)."""

    target: str
    state: str
    attempts: int = 0
    error: str | None = None
    started_at: object = None
    finished_at: object = None
    #: The plan's details and any step-specific data (everything in the
    #: stored ``details`` that is not a progress field).
    details: dict = dataclasses.field(default_factory=dict)
    started: float | None = None
    rechecked: float | None = None
    before: dict | None = None
    after: dict | None = None
    intent: float | None = None
    requested_at: float | None = None
    recovered: bool = False
    verified: float | None = None
    breaker_tripped: bool = False

    @classmethod
    def from_row(cls, row):
        """The record of a row as :class:`~octavia_workflows.engine.
        records.Records` returns it (None stays None)."""
        if row is None:
            return None
        stored = dict(row.get('details') or {})
        progress = {field: stored.pop(key) for field, key in PROGRESS.items()
                    if key in stored}
        return cls(target=row['target'], state=row['state'],
                   attempts=row.get('attempts') or 0, error=row.get('error'),
                   started_at=row.get('started_at'),
                   finished_at=row.get('finished_at'), details=stored,
                   **progress)

    @property
    def running(self):
        return self.state == states.RUNNING

    @property
    def finished(self):
        return self.state in states.TARGET_FINISHED

    def elapsed(self):
        """Seconds since the target started (0 before)."""
        return time.time() - float(self.started) if self.started else 0.0


def progress(**fields):
    """``details`` keys for progress ``fields`` (unknown names are a
    bug: TypeError)."""
    unknown = set(fields) - set(PROGRESS)
    if unknown:
        raise TypeError(f'not a progress field: {", ".join(sorted(unknown))}')
    return {PROGRESS[k]: v for k, v in fields.items()}


class TargetRun:
    """One target's run within one job run (see the module docstring).

    ``az``: the target's availability zone (per-zone pacing).
    """

    def __init__(self, context, target, az=None, paced=True):
        self.context = context
        self.target = target
        self.az = az
        self.paced = paced and context.run is not None
        self._pacer = context.run.pacer if self.paced else None
        self._fleet = (getattr(context, 'fleet', None)
                       if getattr(context, 'run', None) is not None
                       else None)

    # -- reading ----------------------------------------------------------
    def record(self):
        """The target's :class:`TargetRecord` (None: no such target)."""
        return TargetRecord.from_row(self.context.target(self.target))

    def running(self):
        """The record if the target is RUNNING, else None."""
        record = self.record()
        return record if record is not None and record.running else None

    # -- the pacing slot ----------------------------------------------------
    def try_admit(self):
        """``(admitted, seconds)`` from the pacer (see :meth:`~.pacing.
        Pacer.try_start`); always admitted when not paced."""
        if self._pacer is None:
            return True, 0.0
        return self._pacer.try_start(self.target, self.az)

    def withdraw(self):
        """An admitted target does not start: give its admission (and
        any fleet slot and locks it took) back."""
        if self._pacer is not None:
            self._pacer.cancel(self.target)
        self._give()

    def adopt(self):
        """A target an earlier run started is in flight again."""
        if self._pacer is not None:
            self._pacer.adopt(self.target, self.az)

    def _release(self):
        if self._pacer is not None:
            self._pacer.release(self.target)

    # -- the fleet's budget and locks ----------------------------------------
    def hold(self, keys, force=False):
        """Take a fleet budget slot (paced targets only) and the locks on
        ``keys`` (all or nothing).  ``force``: the target is in flight
        already (adopted after a takeover), take its slot whatever the
        budget says.

        :returns: the grant (``granted``, else ``refused``/``holder``),
            or None when the run has no fleet.
        """
        if self._fleet is None:
            return None
        return self._fleet.take(self.target, keys, force=force,
                                budgeted=self.paced)

    def waited_for_fleet(self):
        """Seconds this target has been refused by the fleet so far."""
        return self._fleet.waited(self.target) if self._fleet else 0.0

    def _give(self):
        if self._fleet is not None:
            self._fleet.give(self.target)

    # -- moving along -------------------------------------------------------
    def begin(self, before=None, rechecked=None, **extra):
        """Record the target RUNNING (one more attempt) with its
        "before" snapshot; keep its admission."""
        started = None
        if self._pacer is not None:
            started = self._pacer.started_at(self.target)
        fields = {}
        if before is not None:
            fields['before'] = before
        if self.paced:
            fields['started'] = started or time.time()
        if rechecked is not None:
            fields['rechecked'] = rechecked
        try:
            self.context.write_target(
                self.target, state=states.RUNNING, add_attempt=True,
                error=None, start=True,
                details=dict(extra, **progress(**fields)))
        except BaseException:
            self.withdraw()
            raise
        if self._pacer is not None:
            self._pacer.confirm(self.target)
        LOG.info('job %s target %s: started', self.context.job_id,
                 self.target)

    def note(self, add_attempt=False, **extra):
        """Merge step-specific data into the record (``add_attempt``:
        count one more attempt, e.g. a request sent again)."""
        self.context.write_target(self.target, add_attempt=add_attempt,
                                  details=extra)

    def intend(self):
        """About to make the cloud-changing call."""
        self.context.write_target(self.target,
                                  details=progress(intent=time.time()))

    def requested(self, recovered=False):
        """The call was made (or an earlier one was found under way)."""
        fields = {'requested_at': time.time()}
        if recovered:
            fields['recovered'] = True
        self.context.write_target(self.target, details=progress(**fields))

    def done(self, after=None, verified=False, **extra):
        """DONE: the slot frees first (the next target may start while
        this one is recorded).  ``verified``: record when the outcome
        was seen done and verified (a failover's wait)."""
        fields = {}
        if after is not None:
            fields['after'] = after
        if verified:
            fields['verified'] = time.time()
        self._release()
        self._end(states.DONE, None, dict(extra, **progress(**fields)))
        self._give()
        return states.DONE

    def fail(self, error, after=None, **extra):
        """FAILED with ``error``: the breaker is consulted, then the slot
        frees.  Returns FAILED (so a step can ``return run.fail(...)``)."""
        error = str(error)
        try:
            details = dict(extra)
            if after is not None:
                details.update(progress(after=after))
            self._end(states.FAILED, error, details)
            self._give()
            if self.paced:
                self.context.run.breaker(self.context, self.target)
        finally:
            self._release()
        return states.FAILED

    def skip(self, reason, **extra):
        """SKIPPED with ``reason``; an admission not yet started is given
        back, a started target's slot frees."""
        self.withdraw()
        self._release()
        self._end(states.SKIPPED, reason, extra)
        self._give()
        return states.SKIPPED

    def _end(self, state, error, details):
        self.context.write_target(self.target, state=state, error=error,
                                  finished=True, details=details or None)
