"""Machinery shared by the failover runbooks.

Every target (a load balancer or an amphora) gets the same three steps,
each a small task whose atom name is ``<workflow>:<target>:<step>``:

``start`` (inside retry ``start-retry``)
    Waits for a pacing slot in short checks (:mod:`.pacing`), re-checks
    the target against the cloud (a target that is no longer eligible,
    e.g. not ACTIVE, is SKIPPED with the reason), records the "before"
    amphora and image ids and marks the target RUNNING.  With the
    one-atom graph below, the re-check may use reads made ahead while
    earlier targets were in flight (:mod:`.readahead`).
``act`` and ``wait`` (inside retry ``run-retry``)
    ``act`` records its intent, confirms the claim (fencing) and makes
    the one cloud-changing call; re-executed after a crash, it first
    looks whether its own earlier call already happened and then only
    waits.  ``wait`` is a short check: it raises :class:`NotYet` while
    Octavia is still working, and the retry controller runs both again
    (``act`` is then a no-op that reads one record).

The current factories of the failover runbooks build each target as
one atom (:func:`.shape.compact_target_flow`):
``<workflow>:<target>:steps`` runs start, act and wait in turn inside
retry ``<...>:retry``.  Each step already decides from the target's
record what is left to do, so saving every step in TaskFlow as well only
cost six more database writes per target.  The five-atom graph
(:func:`.shape.target_flow`) stays for the jobs earlier releases built
with it, and for the host runbooks.

A failure of one target is recorded on that target (FAILED with the
error) and never fails the job; the circuit breaker pauses the job after
``max_failures`` of them.  Targets are spread over lanes
(targets sharing a load balancer stay in one lane, in plan order), at
most ``concurrency`` lanes, so that a job starts its targets in plan
order at concurrency 1 (also after a resume).  The pacer keeps no more
than ``concurrency`` targets in flight: from the start until the
failover was seen done and verified (a failed target holds its slot
until the circuit breaker was consulted).
"""

import logging
import time

from taskflow import retry, task

from octavia_workflows import exceptions, states
from octavia_workflows.flows import base, pacing

LOG = logging.getLogger(__name__)

#: First length (seconds) of one check of a pacing gate or of a wait;
#: the retry controller runs it again as long as needed.  Later checks
#: get longer (up to MAX_WINDOW), so that a long wait leaves a short
#: retry history (each retry is saved in the atom's record).
CHECK_WINDOW = 15.0
MAX_WINDOW = 120.0
#: Longest single wait for an interval the operator asked for.
MAX_INTERVAL_WINDOW = 600.0
#: Seconds to hold a NotYet raised because the job stops or the cloud
#: failed, so the engine suspends (or the cloud recovers) before the
#: retry controller runs the check again.
BACKOFF = 1.0
#: Seconds between looks at the pacer or the stop flag inside a check.
TICK = 0.2
#: Target details key: epoch time the target's failover was seen done
#: and verified, when its pacing slot was freed (it is recorded with
#: the target's end, a moment later).
VERIFIED = 'verified'
#: Target details key: epoch time the reads its re-check used were
#: asked for (up to :data:`.readahead.MAX_AGE` before its start when
#: they were made ahead).
RECHECKED = 'rechecked'

COMMON_PARAMS = (
    base.Param('concurrency', 'int', 'targets in flight at once',
               default=1, min=1, max=64),
    base.Param('interval', 'float',
               'minimum seconds between two target starts', default=0.0,
               min=0, max=86400),
    base.Param('max_per_az', 'int',
               'at most this many targets in flight per availability zone',
               min=1, max=1000),
    base.Param('max_failures', 'int',
               'circuit breaker: pause the job after this many failed '
               'targets (0: never pause)', default=1, min=0, max=100000),
    base.Param('target_timeout', 'float',
               'seconds one target may take from its start until its '
               'failover is verified', default=900.0, min=1, max=86400),
)

FILTER_PARAMS = (
    base.Param('loadbalancers', 'list',
               'only these load balancer ids (comma-separated)'),
    base.Param('project', 'str', 'only load balancers of this project id'),
    base.Param('availability_zone', 'str',
               'only load balancers in this availability zone (Octavia '
               'zone, or the compute zone of their amphorae)'),
)


def backoff(context, seconds=BACKOFF):
    """Sleep briefly before raising NotYet (returns early on a lost
    claim), so that no check is repeated in a hot loop."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not context.claim.lost:
        time.sleep(min(TICK, max(0.0, deadline - time.monotonic())))


class NotYet(Exception):
    """A short check found its target not ready; check again later.

    Raised inside a retry-controlled subflow; the :class:`Again` retry
    controller answers RETRY, so it never fails the job.
    """


class Again(retry.Retry):
    """Run the subflow again while its failure is :class:`NotYet`.

    Any other failure (a bug, a lost claim) is not retried: REVERT.
    """

    def __init__(self, name):
        super().__init__(name=name)

    def on_failure(self, history, *args, **kwargs):
        if history.caused_by(NotYet, index=-1):
            return retry.RETRY
        return retry.REVERT

    def execute(self, history, *args, **kwargs):
        return len(history) + 1

    def revert(self, history, *args, **kwargs):
        return None


def _given(value):
    # 0 and 0.0 are real values (e.g. older_than_days=0), unlike False.
    return value is not None and value is not False and value not in (
        [], '')


def exactly_one(params, names, what):
    """InvalidParameter unless exactly one of ``names`` is set."""
    given = [n for n in names if _given(params.get(n))]
    if len(given) != 1:
        choices = ', '.join(names)
        if given:
            raise exceptions.InvalidParameter(
                f'{what}: give only one of {choices} (got '
                f'{", ".join(given)})')
        raise exceptions.InvalidParameter(
            f'{what}: give one of {choices}')
    return given[0]


# -- per-target bookkeeping ----------------------------------------------


def finish(context, target, state, error=None, **details):
    """End a target (DONE, SKIPPED or FAILED) and free its pacing slot;
    a failure first consults the circuit breaker, so that no target
    waiting for the slot starts once the breaker trips."""
    run = pacing.run_state(context)
    try:
        context.target_finished(target, state, error=error, **details)
        if state == states.FAILED:
            _breaker(context, run, target)
    finally:
        run.pacer.release(target)


def _breaker(context, run, target):
    limit = context.params.get('max_failures')
    if not limit:
        return
    with run.breaker_lock:
        failed = context.records.get_targets(context.job_id,
                                             states=[states.FAILED])
        trips = sum(1 for r in failed if r['details'].get(pacing.TRIPPED))
        if not pacing.breaker_should_trip(len(failed), trips, limit):
            return
        context.target_details(target, **{pacing.TRIPPED: True})
    context.request_pause(
        f'circuit breaker: {len(failed)} target(s) failed '
        f'(max_failures={limit}); see "octavia-workflow report '
        f'{context.job_id}", then resume or cancel', kind='breaker')


class TargetTask(task.Task):
    """A step of one target; ``details`` are the target's plan details."""

    step = None

    def __init__(self, workflow, target, details):
        super().__init__(name=f'{workflow}:{target}:{self.step}',
                         requires=['context'])
        self.target = target
        self.details = details

    def revert(self, *args, **kwargs):
        # Nothing to undo: a failover cannot be taken back, and each
        # step re-checks the cloud when it runs again.
        return None

    def row(self, context):
        """The target's record, or None if it is not RUNNING."""
        row = context.target(self.target)
        if row is None or row['state'] != states.RUNNING:
            return None
        return row

    def elapsed(self, row):
        started = row['details'].get(pacing.STARTED)
        return time.time() - float(started) if started else 0.0


class StartTarget(TargetTask):
    """Gate: pacing slot, re-check, "before" snapshot, RUNNING.

    Subclasses either implement :attr:`read` (a static method making
    the cloud reads) and :meth:`judge` (deciding from them), and then
    get read-ahead (:mod:`.readahead`), or override :meth:`recheck`
    with :attr:`read` left None (no read-ahead).  A subclass of a
    read/judge class extends both, never ``recheck`` alone, or a read
    made ahead would bypass its extra checks.
    """

    step = 'start'

    #: ``read(cloud, details)``: the reads :meth:`judge` needs, for the
    #: target with plan ``details`` (plain data; raises CloudError).
    read = None

    def judge(self, context, data):
        """``(skip_reason, before)`` from what :attr:`read` returned."""
        raise NotImplementedError

    def recheck(self, context, cloud):
        """``(skip_reason, before)`` for the target as it is now."""
        return self.judge(context, self.read(cloud, self.details))

    def execute(self, context):
        row = context.target(self.target)
        if row is None or row['state'] in states.TARGET_FINISHED:
            return row['state'] if row else None
        run = pacing.run_state(context)
        az = self.details.get('az')
        if row['state'] == states.RUNNING and \
                row['details'].get(pacing.STARTED):
            run.pacer.adopt(self.target, az)
            return states.RUNNING
        self._wait_for_slot(context, run.pacer, az)
        try:
            rechecked, reason, before = self._recheck(context, run)
        except exceptions.CloudError as exc:
            run.pacer.cancel(self.target)
            if exc.transient:
                backoff(context)
                raise NotYet(str(exc)) from exc
            finish(context, self.target, states.FAILED, error=str(exc))
            return states.FAILED
        except BaseException:
            run.pacer.cancel(self.target)
            raise
        if reason:
            run.pacer.cancel(self.target)
            context.target_finished(self.target, states.SKIPPED,
                                    error=reason)
            return states.SKIPPED
        started = run.pacer.started_at(self.target) or time.time()
        try:
            context.target_started(self.target, before=before,
                                   **{pacing.STARTED: started,
                                      RECHECKED: rechecked})
        except BaseException:
            run.pacer.cancel(self.target)
            raise
        run.pacer.confirm(self.target)
        return states.RUNNING

    def read_ahead(self, context):
        """Read ahead for the next pending targets (:mod:`.readahead`);
        called once this target's call is made, while Octavia works on
        it.  Nothing happens without :attr:`read` or while the job
        stops (no target will start)."""
        if self.read is None or context.stopping:
            return
        run = pacing.run_state(context)
        cloud = context.cloud()
        run.ahead.schedule(lambda details: self.read(cloud, details),
                           busy=run.pacer.in_flight)

    def _recheck(self, context, run):
        """``(read_at, skip_reason, before)``: from a read made ahead if
        it lets the target go, else from fresh reads."""
        ahead = run.ahead.take(self.target) if self.read else None
        if ahead is not None:
            read_at, data = ahead
            reason, before = self.judge(context, data)
            if not reason:
                return read_at, None, before
        read_at = time.time()
        return (read_at,) + tuple(self.recheck(context, context.cloud()))

    def _wait_for_slot(self, context, pacer, az):
        checks = getattr(self, '_checks', 0)
        self._checks = checks + 1
        window = min(MAX_WINDOW, CHECK_WINDOW * 1.25 ** checks)
        began = time.monotonic()
        while True:
            if context.stopping:
                backoff(context)
                raise NotYet('the job is stopping: no new target starts')
            seen = pacer.frees
            admitted, wait = pacer.try_start(self.target, az)
            if admitted and context.stopping:
                # the breaker (or the operator) stopped the job while
                # this target waited: it does not start
                pacer.cancel(self.target)
                continue
            if admitted:
                return
            if wait > window:
                window = min(MAX_INTERVAL_WINDOW, wait + TICK)
            left = began + window - time.monotonic()
            if left <= 0:
                raise NotYet('waiting for a pacing slot')
            if wait:
                time.sleep(max(0.01, min(TICK, wait, left)))
            else:
                # a slot: woken as soon as one is freed
                pacer.wait(min(TICK, left), seen)


class ActOnTarget(TargetTask):
    """The one cloud-changing call of a target, idempotent.

    Subclasses implement :meth:`already_done` and :meth:`call`.
    """

    step = 'act'

    def already_done(self, context, cloud, row):
        """After a possible earlier call: True if it happened (or is
        under way), False if it did not."""
        raise NotImplementedError

    def call(self, cloud, row):
        """Make the cloud-changing call (``row``: the target's record)."""
        raise NotImplementedError

    def execute(self, context):
        row = self.row(context)
        if row is None or row['details'].get('requested_at'):
            return None
        cloud = context.cloud()
        earlier = bool(row['details'].get('intent'))
        try:
            if earlier and self.already_done(context, cloud, row):
                LOG.info('job %s target %s: our earlier call happened; '
                         'waiting for it', context.job_id, self.target)
                context.target_details(self.target, requested_at=time.time(),
                                       recovered=True)
                return None
            if not earlier:
                context.target_details(self.target, intent=time.time())
            context.fence()
            self.call(cloud, row)
        except exceptions.CloudNotFound as exc:
            context.target_finished(self.target, states.SKIPPED,
                                    error=f'gone before the failover: {exc}')
            pacing.run_state(context).pacer.release(self.target)
            return None
        except exceptions.CloudConflict as exc:
            if earlier:
                context.target_details(self.target, requested_at=time.time(),
                                       recovered=True)
                return None
            context.target_finished(
                self.target, states.SKIPPED,
                error=f'became busy before the failover: {exc}')
            pacing.run_state(context).pacer.release(self.target)
            return None
        except exceptions.CloudError as exc:
            if exc.transient:
                backoff(context)
                raise NotYet(str(exc)) from exc
            finish(context, self.target, states.FAILED, error=str(exc))
            return None
        context.target_details(self.target, requested_at=time.time())
        return None


class WaitForTarget(TargetTask):
    """Short check that the target's failover finished and verify it.

    Subclasses implement :meth:`lb_id` and :meth:`verify`.  While the
    job pauses or is cancelled, an in-flight target is still followed to
    its end (up to ``target_timeout``) so nothing is left half-done; a
    lost claim stops it at once.
    """

    step = 'wait'

    def lb_id(self, row):
        return self.details['lb']

    def verify(self, context, cloud, row, lb):
        """``(state, error, after)`` once the load balancer settled."""
        raise NotImplementedError

    def execute(self, context):
        from octavia_workflows.cloud import wait

        row = self.row(context)
        if row is None:
            return None
        if not row['details'].get('requested_at'):
            raise NotYet('the failover was not requested yet')
        timeout = float(context.params.get('target_timeout') or 900.0)
        elapsed = self.elapsed(row)
        left = timeout - elapsed
        cloud = context.cloud()
        window = min(max(CHECK_WINDOW, min(MAX_WINDOW, elapsed / 4)),
                     max(0.0, left))
        if context.stopping:
            window = max(0.0, left)
        since = float(row['details']['requested_at'])
        run = pacing.run_state(context)
        try:
            lb = wait.check_settled(
                cloud, self.lb_id(row), window,
                stop=lambda: context.claim.lost, since=since,
                expected=run.settling.seconds)
            if lb is None:
                context.fence()
                if self.elapsed(row) < timeout:
                    raise NotYet('the load balancer is still pending')
                finish(context, self.target, states.FAILED,
                       error=f'timed out after {timeout:g} s waiting for '
                       f'the load balancer to leave PENDING_UPDATE')
                return states.FAILED
            if since >= run.began:
                run.settling.observe(time.time() - since)
            state, error, after = self.verify(context, cloud, row, lb)
        except exceptions.CloudError as exc:
            if exc.transient:
                backoff(context)
                raise NotYet(str(exc)) from exc
            finish(context, self.target, states.FAILED, error=str(exc))
            return states.FAILED
        extra = {}
        if state == states.DONE:
            # Octavia is done with it: the next target may start while
            # this one is recorded (a failed one first consults the
            # circuit breaker, in finish()).
            extra[VERIFIED] = time.time()
            run.pacer.release(self.target)
        finish(context, self.target, state, error=error, after=after,
               **extra)
        return state
