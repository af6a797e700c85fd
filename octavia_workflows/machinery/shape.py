"""The shape of a failover job's flow.

Each target is one subflow inside a retry controller (:class:`~.retry.
Again`); the subflows are spread over lanes, at most ``concurrency`` of
them, run side by side (targets of one load balancer share a lane, in
plan order).  Two shapes of a target exist: :func:`compact_target_flow`
(one atom, :class:`RunTarget`; the failover runbooks' current
factories) and :func:`target_flow` (five atoms; earlier releases' jobs
and the host runbooks).  See :mod:`.steps` for the steps themselves.
"""

from taskflow import task
from taskflow.patterns import linear_flow, unordered_flow

from octavia_workflows.machinery.retry import Again


class NothingToDo(task.Task):
    """The only step of a job whose plan has no target."""

    def __init__(self, workflow):
        super().__init__(name=f'{workflow}:nothing-to-do')

    def execute(self):
        return None


def target_flow(workflow, target, start, act, wait):
    """The flow of one target: start (retried), then act + wait (retried).

    The graph of earlier releases (see the module docstring).
    """
    gate = linear_flow.Flow(f'{workflow}:{target}:gate',
                            retry=Again(f'{workflow}:{target}:start-retry'))
    gate.add(start)
    run = linear_flow.Flow(f'{workflow}:{target}:run',
                           retry=Again(f'{workflow}:{target}:run-retry'))
    run.add(act, wait)
    return linear_flow.Flow(f'{workflow}:{target}').add(gate, run)


class RunTarget(task.Task):
    """Every step of one target in one atom: start, act, wait.

    Run again (by retry ``retry``) after a crash or a :class:`NotYet`,
    each step picks up from the target's record: a started target is
    not re-checked, a requested failover is not requested again.  Once
    the call is made it has the next targets read ahead.
    """

    def __init__(self, workflow, target, steps):
        super().__init__(name=f'{workflow}:{target}:steps',
                         requires=['context'])
        self.start, self.act, self.wait = steps

    def execute(self, context):
        self.start.execute(context)
        self.act.execute(context)
        # the call is made: read ahead for the next targets while
        # Octavia works (the first look at this one is a moment away)
        self.start.read_ahead(context)
        return self.wait.execute(context)

    def revert(self, *args, **kwargs):
        # As for each step: nothing to undo.
        return None


def compact_target_flow(workflow, target, start, act, wait):
    """The flow of one target as one atom (:class:`RunTarget`) inside a
    retry controller: the graph of the failover runbooks' current
    factories."""
    flow = linear_flow.Flow(f'{workflow}:{target}',
                            retry=Again(f'{workflow}:{target}:retry'))
    return flow.add(RunTarget(workflow, target, (start, act, wait)))


def lanes(items, concurrency, key):
    """Split ``items`` (in order) into at most ``concurrency`` lanes;
    items with the same ``key(item)`` share a lane, groups are dealt
    round-robin in order of first appearance."""
    groups = {}
    for item in items:
        groups.setdefault(key(item), []).append(item)
    count = max(1, min(int(concurrency or 1), len(groups) or 1))
    result = [[] for _ in range(count)]
    for index, group in enumerate(groups.values()):
        result[index % count].extend(group)
    return [lane for lane in result if lane]


def build(workflow, params, targets, make_target, key=None):
    """The job's flow: lanes of per-target flows.

    ``make_target(item)`` returns the flow of one planned target (a dict
    with ``target``, ``action`` and ``details``).
    """
    key = key or (lambda item: item['details'].get('lb') or item['target'])
    split = lanes(targets, params.get('concurrency'), key)
    if not split:
        return linear_flow.Flow(workflow).add(NothingToDo(workflow))
    if len(split) == 1:
        flow = linear_flow.Flow(workflow)
        for item in split[0]:
            flow.add(make_target(item))
        return flow
    flow = unordered_flow.Flow(workflow)
    for number, lane in enumerate(split):
        sub = linear_flow.Flow(f'{workflow}:lane-{number}')
        for item in lane:
            sub.add(make_target(item))
        flow.add(sub)
    return flow
