"""The state one run of a paced job shares between its tasks.

Built once per run by the engine from the workflow's ``run_state``
declaration (:func:`for_job`) and handed to every task as
``context.run``: the :class:`~.pacing.Pacer`, the
:class:`~.readahead.ReadAhead`, the circuit breaker and how long this
run's failovers took to settle.  Loaded from the job's target records,
so it holds across a resume on another conductor; kept in memory for
the run, because every target of a job runs inside one process.

The breaker (:meth:`RunState.breaker`) pauses the job when the failed
targets reach the next multiple of ``max_failures``
(:func:`~.pacing.breaker_should_trip`), or when at least
``max_failure_ratio`` of the last ``breaker_window`` targets that
finished since it last tripped failed (:func:`~.pacing.
ratio_should_trip`); the failed target that tripped it is marked in its
record, so after a resume it trips again only after ``max_failures``
more, or a window's worth of new outcomes.
"""

import threading
import time

from octavia_workflows import states
from octavia_workflows.machinery import pacing, readahead, target


class RunState:
    """Per-run state of a paced job (see the module docstring)."""

    def __init__(self, pacer, ahead, began=None):
        self.pacer = pacer
        self.ahead = ahead
        self.breaker_lock = threading.Lock()
        # How long this run's failovers took until seen settled (the
        # wait polls most often around then); only failovers requested
        # by this run count (one requested before a conductor died
        # "took" the time until the resume).
        self.settling = pacing.Expected()
        self.began = time.time() if began is None else began

    def breaker(self, context, failed_target):
        """Consult the breaker after ``failed_target`` failed; pause the
        job if it trips (on the count or on the ratio)."""
        params = context.params
        limit = params.get('max_failures')
        ratio = params.get('max_failure_ratio')
        window = params.get('breaker_window') or 10
        if not limit and ratio is None:
            return
        # the DONE rows matter only to the ratio (a job of thousands of
        # targets need not load them to count its failures)
        wanted = [states.FAILED] if ratio is None else [states.FAILED,
                                                        states.DONE]
        with self.breaker_lock:
            ended = [target.TargetRecord.from_row(r) for r in
                     context.records.get_targets(context.job_id,
                                                 states=wanted)]
            failed = [r for r in ended if r.state == states.FAILED]
            trips = sum(1 for r in failed if r.breaker_tripped)
            why = None
            if pacing.breaker_should_trip(len(failed), trips, limit):
                why = (f'{len(failed)} target(s) failed '
                       f'(max_failures={limit})')
            elif pacing.ratio_should_trip(
                    _since_last_trip(ended), ratio, window):
                why = (f'{ratio:g} or more of the last {window} finished '
                       f'targets failed (max_failure_ratio={ratio:g}, '
                       f'breaker_window={window})')
            if why is None:
                return
            context.write_target(failed_target, details=target.progress(
                breaker_tripped=True))
        context.request_pause(
            f'circuit breaker: {why}; see "octavia-workflow report '
            f'{context.job_id}", then resume or cancel', kind='breaker')


def _since_last_trip(ended):
    """Failed-or-not of the finished targets in the order they finished,
    after the one that last tripped the breaker."""
    ordered = sorted((r for r in ended if r.finished_at is not None),
                     key=lambda r: (r.finished_at, r.target))
    last = max((i for i, r in enumerate(ordered) if r.breaker_tripped),
               default=-1)
    return [r.state == states.FAILED for r in ordered[last + 1:]]


def for_job(context):
    """The :class:`RunState` of the run ``context`` belongs to, loaded
    from the job's target records (the ``run_state`` of every paced
    runbook)."""
    params = context.params
    pacer = pacing.Pacer(params.get('concurrency') or 1,
                         params.get('interval') or 0.0,
                         params.get('max_per_az'))
    rows = context.records.get_targets(context.job_id)
    pacer.load(rows)
    ahead = readahead.ReadAhead(rows, pacer.concurrency, pacer.interval)
    return RunState(pacer, ahead)
