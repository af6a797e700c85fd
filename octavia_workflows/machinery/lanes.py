"""Lanes: a job's flow whose size does not grow with its targets.

TaskFlow's engine browses every atom of a flow after each completion, so
a flow with one atom per target costs time and memory that grow with
the square of the targets (a bare linear flow of 2,000 trivial tasks
takes 36 s and 721 MB).  The current factories therefore build a fixed
number of lanes instead: one TaskFlow atom per lane
(``<workflow>:lane-<n>:work``, inside retry ``<workflow>:lane-<n>:retry``),
however many targets the job has.  The lanes of a run share the frozen
plan (:class:`Work`): each takes the next group of targets in plan order
when it is free (a group: the targets of one load balancer, driven one
after the other by one lane), so a slow load balancer holds up only its
own lane, never a share of the plan waiting behind it while the other
lanes idle.  What is done and what is left is read from the targets' own
records (:class:`~.target.TargetRecord`), which are the durable
per-target state: which lane drove a target is not durable and does not
matter.

A lane drives one target with the target's usual steps
(:class:`.shape.RunTarget`: start, act, wait), re-running them while they
answer :class:`~.retry.NotYet` -- the short checks the retry controller
used to repeat, now repeated inside the lane so that the retry history
does not grow with the targets.

What happens on a crash, a pause and a takeover: the lane atoms found
RUNNING are run again (TaskFlow is at-least-once) and share what the
records say is left: groups with a RUNNING target first (whose steps know
from its record what already happened: the call is never made twice),
then the rest in plan order.  A lane atom completes only once nothing is
left to take, so whatever is unfinished is always held by a lane atom
that did not complete and runs again.  When the job stops (pause,
cancel, breaker, gate, conductor shutdown) a lane finishes the target it
has in flight and then raises NotYet: the engine suspends with the
lane's atom not completed, and the next run continues it.  A lost claim raises
:class:`~octavia_workflows.exceptions.ClaimLost` from the fence and
stops the lane at once.

The canary (``canary=N``, :class:`Canary`): the lanes of one run share
one gate that lets the first N targets start and no more; once all N
have finished, the next target to start asks for approval at gate
``<workflow>:canary`` with the canary targets' health before and after
(:meth:`~octavia_workflows.engine.context.RunContext.require_approval`):
the job pauses there, targets in flight finish, nothing new starts.  The
question and the answer live in the job's record, so a conductor killed
while the job waits asks nothing twice and redoes no canary target (they
are DONE in their records); approved once, the gate passes in every
later run.
"""

import collections
import json
import threading
import time

from taskflow import task
from taskflow.patterns import linear_flow, unordered_flow

from octavia_workflows import exceptions, states
from octavia_workflows.machinery import health, inventory, retry, shape

#: States of a target that started (it counts for the canary).
STARTED = (states.RUNNING, states.DONE, states.FAILED)
#: At most this many canary targets are named in the gate's message.
NAMED = 10

#: Seconds to wait before running a target's steps again when a pass
#: left it neither finished nor waiting (it should not happen; it keeps
#: a surprise from becoming a hot loop).
IDLE = 0.2


class Work:
    """The targets the lanes of one run share (see the module docstring).

    ``items``: the planned targets (dicts with ``target``, ``action`` and
    ``details``) in plan order; ``key(item)`` groups the targets that are
    driven one after the other by one lane.  What is left is read from
    the records once, when the first lane asks (:meth:`take`).
    """

    def __init__(self, items, key):
        self.items = items
        self._key = key
        self._lock = threading.Lock()
        self._queue = None          # groups not taken yet, in order
        self._held = {}             # lane number -> its group
        self.unfinished = {}        # target -> state when first read

    def groups(self):
        """Every group of the plan, in plan order."""
        found = {}
        for item in self.items:
            found.setdefault(self._key(item), []).append(item)
        return list(found.values())

    def take(self, context, lane):
        """The unfinished targets of the group lane ``lane`` works on:
        the one it holds (it stopped inside it), else the next one
        (None: nothing is left to take)."""
        with self._lock:
            if self._queue is None:
                self._load(context)
            held = self._held.get(lane)
            if held is None and self._queue:
                held = self._held[lane] = self._queue.popleft()
            return held

    def finished(self, lane):
        """Lane ``lane`` is done with the group it held."""
        with self._lock:
            self._held.pop(lane, None)

    def _load(self, context):
        self.unfinished = context.records.target_states(
            context.job_id, (states.PENDING, states.RUNNING))
        left = []
        for group in self.groups():
            group = [i for i in group if i['target'] in self.unfinished]
            if group:
                # a target in flight first: it was started before a crash
                group.sort(key=lambda i: self.unfinished[i['target']]
                           != states.RUNNING)
                left.append(group)
        left.sort(key=lambda g: self.unfinished[g[0]['target']]
                  != states.RUNNING)
        self._queue = collections.deque(left)


class LaneWorker(task.Task):
    """One lane: take the next group of targets from the run's shared
    :class:`Work`, drive its targets, until nothing is left (see the
    module docstring).

    ``work``: the run's :class:`Work` (a list of planned targets makes a
    lane of its own); ``make_steps(item)`` returns an object whose
    ``execute(context)`` runs one pass of the target's steps (a
    :class:`.shape.RunTarget`).
    """

    def __init__(self, workflow, number, work, make_steps, canary=None):
        super().__init__(name=f'{workflow}:lane-{number}:work',
                         requires=['context'])
        if not isinstance(work, Work):
            work = Work(work, lambda item: item['target'])
        self.number = number
        self.work = work
        self.make_steps = make_steps
        self.canary = canary

    def execute(self, context):
        driven = 0
        while True:
            group = self.work.take(context, self.number)
            if group is None:
                return driven
            for item in group:
                # (driven again after a stop inside the group, a target
                # that finished is one pass that reads its record)
                state = self.work.unfinished.get(item['target'])
                self._drive(context, item, state == states.PENDING)
                driven += 1
            self.work.finished(self.number)

    def revert(self, *args, **kwargs):
        # Nothing to undo: each target's steps re-check when run again.
        return None

    def _drive(self, context, item, pending=False):
        target = item['target']
        steps = self.make_steps(item)
        gated = pending and self.canary is not None
        while gated:
            try:
                self.canary.admit(context, target)
                gated = False
            except exceptions.GateWaiting:
                raise
            except retry.NotYet:
                if context.stopping:
                    raise
                time.sleep(IDLE)
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


class Canary:
    """The canary gate the lanes of one run share (see the module
    docstring): the first ``count`` targets may start; the next one
    waits until they have all finished and then asks for approval.

    Which targets are the canary is read from the records (a target
    that started: RUNNING, DONE or FAILED) plus the ones this run let
    through that have not written their record yet; a target let
    through and then SKIPPED by its re-check gives its place back.

    If a canary target FAILED, the gate is still asked, but its message
    says so first (``canary FAILED: ...``): it is never offered as if
    the canary were healthy.  The circuit breaker, consulted when the
    target failed, may have paused the job already; a resume then comes
    to this gate, which asks again.
    """

    def __init__(self, workflow, count):
        self.workflow = workflow
        self.key = f'{workflow}:canary'
        self.count = int(count)
        self.passed = False
        self._lock = threading.Lock()
        self._admitted = set()

    def admit(self, context, target):
        """Return if ``target`` may start; raise NotYet while the canary
        targets are in flight (or the job stops), GateWaiting at the
        gate."""
        if self.passed:
            return
        with self._lock:
            if self.passed or target in self._admitted:
                return
            if context.stopping:
                retry.backoff(context)
                raise retry.NotYet('the job is stopping: no new target '
                                   'starts')
            rows = context.records.target_states(context.job_id)
            started = {t for t, s in rows.items() if s in STARTED}
            started |= {t for t in self._admitted
                        if rows.get(t) == states.PENDING}
            if len(started) < self.count:
                self._admitted.add(target)
                return
            if self._approved(context):
                self.passed = True
                return
            if any(rows.get(t) != states.DONE and rows.get(t) !=
                   states.FAILED for t in started):
                raise retry.NotYet(f'canary: waiting for the first '
                                   f'{self.count} target(s) to finish')
            canaries = self._rows(context, started)
            settle = float(context.params.get('canary_settle') or 0)
            waited = _since_last_finish(canaries)
            if waited < settle:
                retry.backoff(context, min(1.0, settle - waited))
                raise retry.NotYet(f'canary: letting the health manager '
                                   f'report on the canary targets '
                                   f'({settle - waited:.0f} s)')
            left = sum(1 for s in rows.values() if s == states.PENDING)
            message = self.message(context, canaries, left)
        context.require_approval(
            self.key, message,
            if_rejected='the canary targets are finished (see the '
            'report); no other target was started')
        self.passed = True

    def _approved(self, context):
        job = context.records.get_job(context.job_id)
        return bool(job) and self.key in _approvals(job.get('gate'))

    @staticmethod
    def _rows(context, started):
        return [r for r in context.records.get_targets(
            context.job_id, states=[states.DONE, states.FAILED])
            if r['target'] in started]

    def message(self, context, rows, left):
        """The gate's text: each canary target's health before, after
        and now (read again: a load balancer that regressed since its
        target was DONE counts as failed), failed ones first."""
        now = _current_health(context, rows)
        sick = {r['target'] for r in rows if r['state'] == states.FAILED
                or health.regressed(_before(r), now.get(r['target']))}
        rows = sorted(rows, key=lambda r: (r['target'] not in sick,
                                           r.get('seq') or 0))
        failed = [r for r in rows if r['target'] in sick]
        parts = [_health_line(r, now.get(r['target'])) for r in rows[:NAMED]]
        if len(rows) > NAMED:
            parts.append(f'and {len(rows) - NAMED} more')
        seen = '; '.join(parts)
        if failed:
            return (f'canary FAILED: {len(failed)} of the first '
                    f'{len(rows)} target(s) failed ({seen}); see the report '
                    f'before answering: approve continues with the other '
                    f'{left} target(s) anyway, reject cancels them')
        return (f'canary: the first {len(rows)} target(s) are verified '
                f'healthy ({seen}); approve to continue with the other '
                f'{left} target(s), reject to cancel them')


def _approvals(raw):
    """Approved gate keys in a job's ``gate`` column (JSON; see
    :mod:`octavia_workflows.engine.gates`)."""
    try:
        data = json.loads(raw) if raw else {}
    except (TypeError, ValueError):
        return {}
    approved = data.get('approved') if isinstance(data, dict) else None
    return approved if isinstance(approved, dict) else {}


def _before(row):
    return ((row.get('details') or {}).get('before') or {}).get(
        'operating_status')


def _health_line(row, current=None):
    details = row.get('details') or {}
    was = _before(row) or '?'
    after = (details.get('after') or {}).get('operating_status') or '?'
    line = f'{row["target"]} {row["state"]}: {was} -> {after}'
    if current and current != after:
        line += f', now {current}'
    if row['state'] == states.FAILED and row.get('error'):
        line += f' ({row["error"]})'
    return line


def _since_last_finish(rows):
    """Seconds since the last of ``rows`` finished (large if unknown)."""
    ends = []
    for row in rows:
        end = row.get('finished_at')
        if end is not None and not hasattr(end, 'year'):
            end = inventory.parse_time(end)
        if end is not None:
            ends.append(end.replace(tzinfo=None))
    if not ends:
        return float('inf')
    return (inventory.utcnow() - max(ends)).total_seconds()


def _current_health(context, rows):
    """``{target: operating status now}`` of the canary targets' load
    balancers (a read that fails leaves the target out)."""
    cloud = context.cloud()
    found = {}
    for row in rows:
        lb_id = (row.get('details') or {}).get('lb')
        if not lb_id:
            continue
        try:
            found[row['target']] = cloud.get_load_balancer(lb_id).get(
                'operating_status')
        except exceptions.CloudError:
            continue
    return found


def build(workflow, params, targets, make_steps, key=None):
    """The job's flow: at most ``concurrency`` lanes, one atom each,
    sharing one :class:`Work` (as many lanes as the plan has groups, if
    fewer).

    ``make_steps(item)`` returns the steps of one planned target (see
    :class:`LaneWorker`); ``key(item)`` groups targets that one lane
    drives one after the other (default: their load balancer).  With
    ``canary`` in the parameters the lanes share one :class:`Canary`
    (the atoms are the same).
    """
    key = key or (lambda item: item['details'].get('lb') or item['target'])
    work = Work(targets, key)
    count = len(shape.lanes(targets, params.get('concurrency'), key))
    if not count:
        return linear_flow.Flow(workflow).add(shape.NothingToDo(workflow))
    canary = Canary(workflow, params['canary']) if params.get('canary') \
        else None
    flow = unordered_flow.Flow(workflow)
    for number in range(count):
        sub = linear_flow.Flow(f'{workflow}:lane-{number}',
                               retry=retry.Again(
                                   f'{workflow}:lane-{number}:retry'))
        sub.add(LaneWorker(workflow, number, work, make_steps, canary))
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
