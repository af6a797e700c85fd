"""The steps of a paced target, shared by the runbooks that change the cloud.

Every target (a load balancer, an amphora, a server) gets the same three
steps, each a small task whose atom name is ``<workflow>:<target>:<step>``:

``start`` (:class:`StartTarget`)
    Waits for a pacing slot in short checks, re-checks the target
    against the cloud (a target that is no longer eligible, e.g. not
    ACTIVE, is SKIPPED with the reason), records the "before" snapshot
    and marks the target RUNNING.  With the one-atom graph
    (:func:`.shape.compact_target_flow`) the re-check may use reads made
    ahead while earlier targets were in flight (:mod:`.readahead`).
``act`` (:class:`ActOnTarget`)
    Records its intent, confirms the claim (fencing) and makes the one
    cloud-changing call; re-executed after a crash, it first looks
    whether its own earlier call already happened and then only waits.
``wait`` (:class:`WaitForTarget`)
    A short check: it raises :class:`~.retry.NotYet` while Octavia is
    still working, and the retry controller runs the steps again
    (``act`` is then a no-op that reads one record).

Each step decides from the target's record what is left to do, and
changes the target only through its :class:`~.target.TargetRun`.  A
failure of one target is recorded on that target (FAILED with the
error) and never fails the job; the circuit breaker pauses the job after
``max_failures`` of them.  A transient cloud error is retried later
(:func:`~.retry.retry_later_or`).
"""

import logging
import time

from taskflow import task

from octavia_workflows import exceptions, states, windows
from octavia_workflows.cloud import wait
from octavia_workflows.machinery import health, retry
from octavia_workflows.machinery.retry import NotYet
from octavia_workflows.machinery.target import TargetRun

LOG = logging.getLogger(__name__)

#: Seconds between looks at a maintenance window that is shut.
WINDOW_POLL = 5.0


class TargetTask(task.Task):
    """A step of one target; ``details`` are the target's plan details."""

    step = None
    #: Whether the target holds a pacing slot and counts for the breaker.
    paced = True

    def __init__(self, workflow, target, details):
        super().__init__(name=f'{workflow}:{target}:{self.step}',
                         requires=['context'])
        self.target = target
        self.details = details

    def revert(self, *args, **kwargs):
        # Nothing to undo: a failover cannot be taken back, and each
        # step re-checks the cloud when it runs again.
        return None

    def lifecycle(self, context):
        """This target's :class:`~.target.TargetRun` in this run."""
        return TargetRun(context, self.target, az=self.details.get('az'),
                         paced=self.paced)

    def fleet_keys(self, context):
        """What the target acts on, locked for one job at a time across
        the fleet: its load balancer (``lb:<id>``, given back when the
        target ends) and, for the host runbooks, its compute host
        (``host:<name>``, held by the job from its first target that
        takes it to the end of its run, see :mod:`~octavia_workflows.
        engine.coordination`)."""
        keys = []
        if self.details.get('lb'):
            keys.append(f'lb:{self.details["lb"]}')
        host = self.details.get('host') or context.params.get('host')
        if host:
            keys.append(f'host:{host}')
        return keys


def hold_or_wait(context, run, record, keys):
    """The fleet's grant for ``keys`` (None: no fleet); a skip reason
    once a lock stayed taken past ``[fleet] lock_timeout``; else NotYet
    (the admission is given back and the target waits, saying why in
    its record for ``show``)."""
    try:
        grant = run.hold(keys)
    except exceptions.BackendUnavailable as exc:
        run.withdraw()
        retry.backoff(context)
        raise NotYet(f'cannot reach the fleet budget: {exc}') from exc
    except BaseException:
        run.withdraw()
        raise
    if grant is None or grant.granted:
        return grant
    run.withdraw()
    if grant.refused == states.FLEET_LOCKED:
        if run.waited_for_fleet() >= context.fleet.lock_timeout:
            return f'in use by job {grant.holder}'
        why = f'waiting for {grant.key}: in use by job {grant.holder}'
    else:
        why = (f'waiting for the fleet budget ({grant.holder} of '
               f'{context.fleet.budget} in flight)')
    if record.details.get('waiting') != why:
        run.note(waiting=why)
        record.details['waiting'] = why
    retry.backoff(context)
    raise NotYet(why)


def hold_in_flight(context, run, keys):
    """Re-take what a target in flight already (a takeover) holds: its
    slot at once, whatever the budget says; a lock someone took
    meanwhile is reported only."""
    try:
        grant = run.hold(keys, force=True)
    except exceptions.BackendUnavailable as exc:
        LOG.warning('job %s target %s: cannot re-take its fleet slot: %s',
                    context.job_id, run.target, exc)
        return
    if grant is not None and not grant.granted:
        LOG.warning('job %s target %s: in flight, but %s is locked by job '
                    '%s', context.job_id, run.target, grant.key,
                    grant.holder)


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
        run = self.lifecycle(context)
        record = run.record()
        if record is None or record.finished:
            return record.state if record else None
        if record.running and record.started:
            run.adopt()
            self._hold_adopted(context, run)
            return record.state
        self._wait_for_window(context, run, record)
        self._wait_for_slot(context, run)
        grant = self._hold(context, run, record)
        if isinstance(grant, str):
            return run.skip(grant)
        try:
            rechecked, reason, before = self._recheck(
                context, None if grant is None else grant.released_at)
        except exceptions.CloudError as exc:
            run.withdraw()
            return retry.retry_later_or(context, exc, run.fail)
        except BaseException:
            run.withdraw()
            raise
        if reason:
            return run.skip(reason)
        extra = {'waiting': None} if record.details.get('waiting') else {}
        run.begin(before=before, rechecked=rechecked, **extra)
        return states.RUNNING

    def _wait_for_window(self, context, run, record):
        """Return inside the job's maintenance window (``window``);
        outside it, say when it opens in the record and raise NotYet
        (checked again every few seconds, so the job goes on by itself).
        """
        text = context.params.get('window')
        if not text:
            return
        window = windows.parse(text)
        now = getattr(context, 'clock', windows.now)()
        if window.is_open(now):
            return
        opens = window.next_open(now)
        why = (f'waiting for maintenance window {window.text} (opens at '
               f'{window.describe(opens)})')
        if record.details.get('waiting') != why:
            run.note(waiting=why)
            record.details['waiting'] = why
        retry.backoff(context, min(WINDOW_POLL, max(
            0.05, (opens - now).total_seconds())))
        raise NotYet(why)

    def _hold(self, context, run, record):
        return hold_or_wait(context, run, record, self.fleet_keys(context))

    def _hold_adopted(self, context, run):
        hold_in_flight(context, run, self.fleet_keys(context))

    def read_ahead(self, context):
        """Read ahead for the next pending targets (:mod:`.readahead`);
        called once this target's call is made, while Octavia works on
        it.  Nothing happens without :attr:`read` or while the job
        stops (no target will start)."""
        if self.read is None or context.stopping or context.run is None:
            return
        cloud = context.cloud()
        context.run.ahead.schedule(
            lambda details: self.read(cloud, details),
            busy=context.run.pacer.in_flight)

    def _recheck(self, context, stale_before=None):
        """``(read_at, skip_reason, before)``: from a read made ahead if
        it lets the target go and is newer than ``stale_before`` (when
        another job last let go of the target's lock), else from fresh
        reads."""
        ahead = None
        if self.read is not None and context.run is not None:
            ahead = context.run.ahead.take(self.target)
        if ahead is not None and stale_before is not None and (
                ahead[0] <= stale_before + 1.0):
            ahead = None
        if ahead is not None:
            read_at, data = ahead
            reason, before = self.judge(context, data)
            if not reason:
                return read_at, None, before
        read_at = time.time()
        return (read_at,) + tuple(self.recheck(context, context.cloud()))

    def _wait_for_slot(self, context, run):
        pacer = context.run.pacer if context.run is not None else None
        checks = getattr(self, '_checks', 0)
        self._checks = checks + 1
        window = min(retry.MAX_WINDOW, retry.CHECK_WINDOW * 1.25 ** checks)
        began = time.monotonic()
        while True:
            if context.stopping:
                retry.backoff(context)
                raise NotYet('the job is stopping: no new target starts')
            seen = pacer.frees if pacer is not None else 0
            admitted, wait = run.try_admit()
            if admitted and context.stopping:
                # the breaker (or the operator) stopped the job while
                # this target waited: it does not start
                run.withdraw()
                continue
            if admitted:
                return
            if wait > window:
                window = min(retry.MAX_INTERVAL_WINDOW, wait + retry.TICK)
            left = began + window - time.monotonic()
            if left <= 0:
                raise NotYet('waiting for a pacing slot')
            if wait:
                time.sleep(max(0.01, min(retry.TICK, wait, left)))
            else:
                # a slot: woken as soon as one is freed
                pacer.wait(min(retry.TICK, left), seen)


class ActOnTarget(TargetTask):
    """The one cloud-changing call of a target, idempotent.

    Subclasses implement :meth:`already_done` and :meth:`call`.
    """

    step = 'act'

    def already_done(self, context, cloud, record):
        """After a possible earlier call: True if it happened (or is
        under way), False if it did not."""
        raise NotImplementedError

    def call(self, cloud, record):
        """Make the cloud-changing call (``record``: the target's
        :class:`~.target.TargetRecord`)."""
        raise NotImplementedError

    def execute(self, context):
        run = self.lifecycle(context)
        record = run.running()
        if record is None or record.requested_at:
            return None
        cloud = context.cloud()
        earlier = bool(record.intent)
        try:
            if earlier and self.already_done(context, cloud, record):
                LOG.info('job %s target %s: our earlier call happened; '
                         'waiting for it', context.job_id, self.target)
                run.requested(recovered=True)
                return None
            if not earlier:
                run.intend()
            context.fence()
            self.call(cloud, record)
        except exceptions.CloudNotFound as exc:
            run.skip(f'gone before the failover: {exc}')
            return None
        except exceptions.CloudConflict as exc:
            if earlier:
                run.requested(recovered=True)
                return None
            run.skip(f'became busy before the failover: {exc}')
            return None
        except exceptions.CloudError as exc:
            retry.retry_later_or(context, exc, run.fail)
            return None
        run.requested()
        return None


class WaitForTarget(TargetTask):
    """Short check that the target's failover finished and verify it.

    Subclasses implement :meth:`verify` (and :meth:`lb_id` when the
    load balancer is not the plan's ``lb``).  While the job pauses or is
    cancelled, an in-flight target is still followed to its end (up to
    ``target_timeout``) so nothing is left half-done; a lost claim stops
    it at once.
    """

    step = 'wait'

    def lb_id(self, record):
        return self.details['lb']

    def verify(self, context, cloud, record, lb):
        """``(state, error, after)`` once the load balancer settled."""
        raise NotImplementedError

    def execute(self, context):
        run = self.lifecycle(context)
        record = run.running()
        if record is None:
            return None
        if not record.requested_at:
            raise NotYet('the failover was not requested yet')
        timeout = float(context.params.get('target_timeout') or 900.0)
        elapsed = record.elapsed()
        left = timeout - elapsed
        cloud = context.cloud()
        window = min(max(retry.CHECK_WINDOW,
                         min(retry.MAX_WINDOW, elapsed / 4)),
                     max(0.0, left))
        if context.stopping:
            window = max(0.0, left)
        since = float(record.requested_at)
        state = context.run
        try:
            lb = wait.check_settled(
                cloud, self.lb_id(record), window,
                stop=lambda: context.claim.lost, since=since,
                expected=state.settling.seconds)
            if lb is None:
                context.fence()
                if record.elapsed() < timeout:
                    raise NotYet('the load balancer is still pending')
                return run.fail(
                    f'timed out after {timeout:g} s waiting for the load '
                    f'balancer to leave PENDING_UPDATE')
            if since >= state.began:
                state.settling.observe(time.time() - since)
            outcome, error, after = self.verify(context, cloud, record, lb)
        except exceptions.CloudError as exc:
            return retry.retry_later_or(context, exc, run.fail)
        if outcome == states.DONE:
            failed = self._health(context, run, record, lb, after)
            if failed is not None:
                return failed
            # Octavia is done with it: the slot frees at once, so the
            # next target may start while this one is recorded.
            return run.done(after=after, verified=True)
        return run.fail(error, after=after)

    @staticmethod
    def _health(context, run, record, lb, after):
        """None when the load balancer serves at least as well as before
        its failover (:mod:`.health`); FAILED once ``health_timeout``
        passed without that; NotYet while it may still come back."""
        timeout = context.params.get('health_timeout')
        was = (record.before or {}).get('operating_status')
        now = lb.get('operating_status')
        if after is not None:
            after['operating_status'] = now
        if not timeout:
            return None
        settle = float(context.params.get('health_settle') or 0)
        # Octavia shows the old status until the health manager has heard
        # from the new amphorae: a bad image only shows then (with
        # listeners: members, pools), so a status that could still drop is
        # watched for ``health_settle`` seconds before it counts.
        settling = bool(settle and lb.get('listeners')
                        and health.regressed(was, 'ERROR'))
        if not settling and not health.regressed(was, now):
            return None
        since = record.details.get('health_since')
        if since is None:
            since = time.time()
            run.note(health_since=since)
        if not health.regressed(was, now):
            left = settle - (time.time() - float(since))
            if left <= 0:
                return None
            retry.backoff(context, min(health.POLL, left))
            raise NotYet(f'letting the health manager report on the new '
                         f'amphorae ({left:.0f} s left)')
        if time.time() - float(since) < float(timeout):
            retry.backoff(context, health.POLL)
            raise NotYet(f'waiting for the health to be back: {was} -> '
                         f'{now}')
        return run.fail(f'health regression: {was} -> {now} after failover '
                        f'(waited {float(timeout):g} s)', after=after)
