"""Running one job: plan, build the flow, run the engine, settle the state.

Both the conductor (jobboard mode) and ``submit``/``resume`` (embedded
mode) call :func:`run_job` with a claim they already hold.  It:

1. freezes the plan on first start (the workflow's read-only ``plan``),
   or reuses the frozen one on every later start;
2. loads or creates the job's TaskFlow logbook (uuid = job id) and builds
   the flow from the workflow's factory with the frozen targets;
3. runs the engine against a fenced persistence backend, with the run
   context injected transiently; a watcher suspends the engine as soon
   as the job is paused or cancelled, the conductor stops, or the claim
   is lost;
4. settles the job's record and returns an :class:`Outcome` saying what
   the caller must do with the board job (complete it or release it).

A lost claim settles nothing: the new owner owns the records.
"""

import concurrent.futures
import dataclasses
import datetime
import logging
import threading

from sqlalchemy import exc as sa_exc
from taskflow import exceptions as tf_exc
from taskflow import flow as tf_flow
from taskflow import states as tf_states
from taskflow.patterns import linear_flow
from taskflow.persistence import models

from octavia_workflows import exceptions, states, workflow
from octavia_workflows.engine import context as ctx_mod
from octavia_workflows.engine import fencing
from octavia_workflows.engine import records as rec

LOG = logging.getLogger(__name__)

#: Seconds between looks at the job's record for pause/cancel requests.
CONTROL_POLL = 0.5


@dataclasses.dataclass
class Outcome:
    """What happened, and what to do with the board job.

    ``release`` True: give the claim back so the job runs again
    (conductor stopping, transient failure).  False: the job left the
    board's hands (finished, paused, cancelled) and must be completed.
    ``lost``: the claim was lost; touch nothing.
    """

    state: str
    reason: str | None = None
    release: bool = False
    lost: bool = False


def _logbook(conn, job_id, workflow):
    """The job's logbook and flow detail, created on its first run with
    the workflow's current factory recorded in the flow detail."""
    try:
        book = conn.get_logbook(job_id)
    except tf_exc.NotFound:
        book = models.LogBook(f'job-{job_id}', uuid=job_id)
        flow_detail = models.FlowDetail(workflow.name, uuid=job_id)
        flow_detail.meta['workflow'] = workflow.name
        flow_detail.meta['factory'] = workflow.factory
        book.add(flow_detail)
        conn.save_logbook(book)
        return book, flow_detail
    return book, book.find(job_id)


def factory_of(workflow, flow_detail):
    """The factory that built the job of ``flow_detail``: the recorded
    one, or for a job started before factories were recorded, the
    workflow's oldest."""
    return flow_detail.meta.get('factory') or workflow.factories[0]


def _unknown_here(exc):
    """The outcome for a job this conductor cannot build (a workflow or
    flow factory of a newer release, during a rolling upgrade): give it
    back, with the usual backoff, for an upgraded conductor; the attempt
    limit ends it FAILED if none ever knows it."""
    return Outcome(states.PENDING,
                   f'transient failure: {exc} on this conductor',
                   release=True)


def freeze_plan(workflow, job, context):
    """Compute and store the plan unless it is already frozen.

    :returns: True when this call froze it.
    """
    if job['planned']:
        return False
    plan = workflow.plan(context, job['parameters'])
    context.fence()
    context.records.save_plan(
        job['id'], [t.as_dict() for t in plan.targets],
        [t.as_dict() for t in plan.skipped])
    LOG.info('job %s: plan frozen: %d targets, %d skipped', job['id'],
             len(plan.targets), len(plan.skipped))
    return True


def _watch(engine, context, records, job_id, done):
    """Suspend the engine when the job must stop starting new atoms."""
    while not done.wait(CONTROL_POLL):
        reason = None
        if context.stopping:
            reason = 'stop'
        else:
            try:
                job = records.get_job(job_id)
            except Exception:
                LOG.warning('job %s: cannot read control state', job_id)
                continue
            if job is None or job['control'] in (states.PAUSE, states.CANCEL):
                reason = 'control'
                context.stop_event.set()
        if reason:
            LOG.info('job %s: suspending engine (%s)', job_id, reason)
            try:
                engine.suspend()
            except exceptions.ClaimLost:
                # Suspending saves the flow state, which the fence now
                # refuses; the engine stops at its next save instead.
                LOG.info('job %s: claim lost; the engine stops at its '
                         'next save', job_id)
            return


def _progress_listener(records, job_id, state):
    """Reset the no-progress attempt counter after the first step.

    A step is an atom that succeeded, or a retry controller that ran its
    short check again (a long wait is progress too, one window at a
    time; its own deadline bounds it), or a target that finished inside
    a lane (``context.progressed()``).  Returns ``(on_atom, on_step)``.
    """

    def on_step():
        if not state['progressed']:
            state['progressed'] = True
            try:
                records.update_job(job_id, attempts=0)
            except Exception:
                LOG.warning('job %s: cannot reset attempts', job_id)

    def on_atom(atom_state, details):
        if atom_state in (tf_states.SUCCESS, tf_states.RETRYING):
            on_step()

    return on_atom, on_step


def run_job(persistence, job_id, claim, stop_event=None, save_logbook=False,
            cloud_factory=None, listener=None, conf=None):
    """Run (or continue) a job whose claim the caller holds.

    ``conf`` (the process's configuration) is handed to the tasks as
    ``context.conf``; runbooks that need settings (e.g. cold-upgrade's
    command templates) read them there.

    :returns: :class:`Outcome`.
    :raises nothing: every failure is turned into an Outcome; unexpected
        errors are logged with their traceback and end the job FAILED
        (or released for another attempt if they look transient).
    """
    if persistence.records.get_job(job_id) is None:
        return Outcome(states.FAILED, 'job record vanished')
    # Every write of this run checks the job's fencing token in its own
    # transaction: one in flight when another conductor took over is
    # refused (see engine.fencing).
    fenced = fencing.open_run(persistence, job_id, claim)
    try:
        return _run(fenced, persistence, job_id, claim, stop_event,
                    save_logbook, cloud_factory, listener, conf)
    finally:
        fenced.close()


def _run(persistence, origin, job_id, claim, stop_event, save_logbook,
         cloud_factory, listener, conf):
    import taskflow.engines

    records = persistence.records
    job = records.get_job(job_id)
    try:
        flow_decl = workflow.get(job['workflow'])
    except exceptions.UnknownWorkflow as exc:
        return _settle(records, job_id, claim, _unknown_here(exc))
    context = ctx_mod.RunContext(
        job_id, job['workflow'], job['parameters'], claim.owner, records,
        claim, cloud_name=job['cloud'], cloud_factory=cloud_factory,
        listener=listener, conf=conf, persistence=origin)
    if stop_event is not None and stop_event.is_set():
        return Outcome(states.PENDING, 'conductor stopping', release=True)
    if job['control'] == states.CANCEL:
        return _settle(records, job_id, claim, Outcome(
            states.CANCELLED, 'cancelled before it started'))
    if job['control'] == states.PAUSE:
        return _settle(records, job_id, claim,
                       Outcome(states.PAUSED, states.OPERATOR_PAUSE))
    executor = None
    done = threading.Event()
    try:
        if freeze_plan(flow_decl, job, context):
            # A frozen plan is progress: the attempt limit counts only
            # attempts in a row that got nowhere (a large plan can take
            # longer to compute than conductors live in a bad hour).
            context.records.update_job(job_id, expect_owner=claim.owner,
                                       attempts=0)
        targets = records.get_targets(job_id)
        planned = [t for t in targets if t['action'] != rec.SKIP_ACTION]
        backend = persistence.taskflow_backend(fence=context.fence)
        book, flow_detail = _logbook(backend.get_connection(), job_id,
                                     flow_decl)
        factory = flow_decl.load_factory(factory_of(flow_decl, flow_detail))
        flow = factory(job['parameters'], [
            {'target': t['target'], 'action': t['action'],
             'details': t['details']} for t in planned])
        if flow_decl.run_state is not None:
            context.run = flow_decl.run_state(context)
        options = {}
        if flow_decl.engine == 'parallel':
            workers = _width(flow, flow_decl.lanes(job['parameters']))
            executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=workers,
                thread_name_prefix=f'job-{job_id[:8]}')
            options['executor'] = executor
        engine = taskflow.engines.load(
            flow, flow_detail=flow_detail, book=book, backend=backend,
            engine=flow_decl.engine, **options)
        engine.compile()
        engine.prepare()
        engine.storage.inject({'context': context}, transient=True)
        on_atom, context.on_progress = _progress_listener(
            records, job_id, {'progressed': False})
        engine.atom_notifier.register('*', on_atom)
        if stop_event is not None:
            _link(stop_event, context.stop_event, done)
        watcher = threading.Thread(
            target=_watch, args=(engine, context, records, job_id, done),
            daemon=True, name=f'watch-{job_id[:8]}')
        watcher.start()
        LOG.info('job %s: running %s as %s', job_id, job['workflow'],
                 claim.owner)
        try:
            engine.run()
        finally:
            done.set()
        outcome = _outcome(engine, context, records, job_id, stop_event)
    except exceptions.ClaimLost:
        return Outcome(states.RUNNING, 'claim lost', lost=True)
    except exceptions.UnknownWorkflow as exc:
        outcome = _unknown_here(exc)
    except Exception as exc:
        if claim.lost:
            return Outcome(states.RUNNING, 'claim lost', lost=True)
        outcome = _failure_outcome(exc, job_id)
    finally:
        done.set()
        if executor is not None:
            executor.shutdown(wait=False)
    if claim.lost:
        return Outcome(states.RUNNING, 'claim lost', lost=True)
    outcome = _settle(records, job_id, claim, outcome)
    if (outcome.state in states.FINISHED and not outcome.lost
            and not save_logbook):
        persistence.forget_logbook(job_id)
    return outcome


def _link(source, target, done):
    def relay():
        while not done.is_set():
            if source.wait(CONTROL_POLL):
                target.set()
                return

    threading.Thread(target=relay, daemon=True).start()


def _failure_outcome(exc, job_id):
    # A database or backend outage is worth another attempt later: the
    # step that was running is idempotent and runs again on resume.
    transient = (tf_exc.StorageFailure, exceptions.BackendUnavailable,
                 sa_exc.OperationalError, sa_exc.InterfaceError,
                 sa_exc.DisconnectionError)
    cause = exc
    while cause is not None and not isinstance(cause, transient):
        cause = cause.__cause__
    if cause is not None:
        LOG.warning('job %s: transient failure, will retry: %s', job_id,
                    exc)
        return Outcome(states.PENDING, f'transient failure: {_line(exc)}',
                       release=True)
    if isinstance(exc, exceptions.OctaviaWorkflowsError):
        LOG.error('job %s failed: %s', job_id, exc)
    else:
        LOG.exception('job %s failed', job_id)
    return Outcome(states.FAILED, _line(exc))


def _width(flow, lanes):
    """Threads a parallel engine needs: as many atoms as can run at once
    (every lane of every unordered flow, nested ones included), at least
    the ``lanes`` the workflow declares.  Fewer would leave a lane's atom
    queued while others wait for a pacing slot it holds."""
    return max(1, int(lanes or 1), _parallel(flow))


def _parallel(item):
    if not isinstance(item, tf_flow.Flow):
        return 1
    widths = [_parallel(child) for child in item] or [1]
    if isinstance(item, linear_flow.Flow):
        return max(widths)
    return sum(widths)


def _outcome(engine, context, records, job_id, stop_event):
    state = engine.storage.get_flow_state()
    if state == tf_states.SUCCESS:
        failed = records.get_targets(job_id, states=[states.FAILED])
        if failed:
            return Outcome(states.FAILED, f'{len(failed)} target(s) failed')
        return Outcome(states.SUCCESS)
    if state in (tf_states.REVERTED, tf_states.FAILURE):
        failure = next(iter(engine.storage.get_failures().values()), None)
        return Outcome(states.FAILED, _line(failure.exception_str)
                       if failure else 'the flow failed')
    # Suspended: find out why.
    if context.pause_reason:
        return Outcome(states.PAUSED, context.pause_reason)
    job = records.get_job(job_id)
    if job is not None and job['control'] == states.CANCEL:
        return Outcome(states.CANCELLED, 'cancelled by the operator')
    if job is not None and job['control'] == states.PAUSE:
        return Outcome(states.PAUSED, states.OPERATOR_PAUSE)
    return Outcome(states.PENDING, 'conductor stopping', release=True)


def _settle(records, job_id, claim, outcome):
    """Write the outcome into the job's record (owner-checked)."""
    now = rec.utcnow()
    values = dict(reason=outcome.reason)
    if outcome.state in states.FINISHED:
        values['finished_at'] = now
        values['control'] = states.NO_CONTROL
    if outcome.state == states.CANCELLED:
        records.skip_pending(job_id, 'job cancelled')
    if outcome.state == states.PAUSED:
        values['control'] = states.NO_CONTROL
    if outcome.release:
        values['owner'] = None
        values['not_before'] = None
    if outcome.reason and outcome.reason.startswith('transient'):
        delay = min(60, 2 ** max(0, (records.get_job(job_id) or {}).get(
            'attempts', 1)))
        values['not_before'] = now + datetime.timedelta(seconds=delay)
    ok = records.transition(job_id, outcome.state, expect_owner=claim.owner,
                            **values)
    if not ok:
        LOG.warning('job %s: record changed owner; not settling', job_id)
        return Outcome(outcome.state, outcome.reason, lost=True)
    LOG.info('job %s: %s%s', job_id, outcome.state,
             f' ({outcome.reason})' if outcome.reason else '')
    return outcome


def _line(text):
    text = str(text).strip()
    return text.splitlines()[0] if text else 'unknown error'
