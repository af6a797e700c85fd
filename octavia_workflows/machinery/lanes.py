"""Lanes: a job's flow whose size does not grow with its targets.

TaskFlow's engine browses every atom of a flow after each completion, so
a flow with one atom per target costs time and memory that grow with
the square of the targets (a bare linear flow of 2,000 trivial tasks
takes 36 s and 721 MB).  The current factories therefore build a fixed
number of lanes instead: one TaskFlow atom per lane
(``<workflow>:lane-<n>:work``, inside retry ``<workflow>:lane-<n>:retry``),
however many targets the job has.  Each lane works through its share of
the frozen plan, in plan order, one target at a time; what is done and
what is left is read from the targets' own records
(:class:`~.target.TargetRecord`), which are the durable per-target
state.  Targets of one load balancer share a lane (:func:`.shape.lanes`).

A lane drives one target with the target's usual steps
(:class:`.shape.RunTarget`: start, act, wait), re-running them while they
answer :class:`~.retry.NotYet` -- the short checks the retry controller
used to repeat, now repeated inside the lane so that the retry history
does not grow with the targets.

What happens on a crash, a pause and a takeover: a lane atom found
RUNNING is run again (TaskFlow is at-least-once); it skips the finished
targets of its share, continues its RUNNING target (whose steps know from
its record what already happened: the call is never made twice) and then
the rest.  When the job stops (pause, cancel, breaker, gate, conductor
shutdown) a lane finishes the target it has in flight and then raises
NotYet: the engine suspends with the lane's atom not completed, and the
next run continues it.  A lost claim raises
:class:`~octavia_workflows.exceptions.ClaimLost` from the fence and
stops the lane at once.
"""

import time

from taskflow import task
from taskflow.patterns import linear_flow, unordered_flow

from octavia_workflows import exceptions, states
from octavia_workflows.machinery import retry, shape

#: Seconds to wait before running a target's steps again when a pass
#: left it neither finished nor waiting (it should not happen; it keeps
#: a surprise from becoming a hot loop).
IDLE = 0.2


class LaneWorker(task.Task):
    """Work through one lane's targets (see the module docstring).

    ``items``: this lane's planned targets (dicts with ``target``,
    ``action`` and ``details``) in plan order; ``make_steps(item)``
    returns an object whose ``execute(context)`` runs one pass of the
    target's steps (a :class:`.shape.RunTarget`).
    """

    def __init__(self, workflow, number, items, make_steps):
        super().__init__(name=f'{workflow}:lane-{number}:work',
                         requires=['context'])
        self.items = items
        self.make_steps = make_steps

    def execute(self, context):
        unfinished = context.records.target_states(
            context.job_id, (states.PENDING, states.RUNNING))
        # a target in flight first: it was started before a crash
        order = sorted(self.items, key=lambda item: unfinished.get(
            item['target']) != states.RUNNING)
        for item in order:
            if item['target'] in unfinished:
                self._drive(context, item)
        return len(self.items)

    def revert(self, *args, **kwargs):
        # Nothing to undo: each target's steps re-check when run again.
        return None

    def _drive(self, context, item):
        target = item['target']
        steps = self.make_steps(item)
        while True:
            try:
                steps.execute(context)
            except exceptions.GateWaiting:
                raise
            except retry.NotYet:
                if context.claim.lost:
                    raise
                if context.stopping and not self._in_flight(context,
                                                            target):
                    raise
                continue
            row = context.target(target)
            if row is None or row['state'] in states.TARGET_FINISHED:
                context.progressed()
                return
            time.sleep(IDLE)

    @staticmethod
    def _in_flight(context, target):
        row = context.target(target)
        return row is not None and row['state'] == states.RUNNING


def build(workflow, params, targets, make_steps, key=None):
    """The job's flow: at most ``concurrency`` lanes, one atom each.

    ``make_steps(item)`` returns the steps of one planned target (see
    :class:`LaneWorker`); ``key(item)`` groups targets that must share a
    lane (default: their load balancer).
    """
    key = key or (lambda item: item['details'].get('lb') or item['target'])
    split = shape.lanes(targets, params.get('concurrency'), key)
    if not split:
        return linear_flow.Flow(workflow).add(shape.NothingToDo(workflow))
    flow = unordered_flow.Flow(workflow)
    for number, lane in enumerate(split):
        sub = linear_flow.Flow(f'{workflow}:lane-{number}',
                               retry=retry.Again(
                                   f'{workflow}:lane-{number}:retry'))
        sub.add(LaneWorker(workflow, number, lane, make_steps))
        flow.add(sub)
    return flow


def steps_of(workflow, start_cls, act_cls, wait_cls):
    """``make_steps`` for targets whose steps are these three classes."""

    def make(item):
        target, details = item['target'], item['details']
        return shape.RunTarget(workflow, target, (
            start_cls(workflow, target, details),
            act_cls(workflow, target, details),
            wait_cls(workflow, target, details)))

    return make
