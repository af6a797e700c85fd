"""Lanes: a fixed number of atoms works through the plan from the records."""

import types

import pytest

from octavia_workflows import exceptions, states
from octavia_workflows.machinery import lanes


class Records:
    def __init__(self, rows):
        self.rows = rows

    def target_states(self, job_id, wanted=None):
        return {t: s for t, s in self.rows.items()
                if not wanted or s in wanted}


class Context:
    def __init__(self, rows):
        self.job_id = 'job'
        self.records = Records(rows)
        self.stopping = False
        self.claim = types.SimpleNamespace(lost=False)
        self.progress = 0

    def target(self, target):
        return {'target': target, 'state': self.records.rows[target]}

    def progressed(self):
        self.progress += 1


class Steps:
    """One pass of a target's steps: NotYet ``waits`` times, then DONE."""

    def __init__(self, context, item, log, waits=1):
        self.context, self.item, self.log = context, item, log
        self.waits = waits

    def execute(self, context):
        target = self.item['target']
        self.log.append(target)
        context.records.rows[target] = states.RUNNING
        if self.waits:
            self.waits -= 1
            raise exceptions.NotYet('still pending')
        context.records.rows[target] = states.DONE


def _items(*names):
    return [{'target': n, 'action': 'x', 'details': {}} for n in names]


def test_a_lane_skips_finished_targets_and_continues_the_one_in_flight():
    rows = {'a': states.DONE, 'b': states.PENDING, 'c': states.RUNNING,
            'd': states.SKIPPED}
    context = Context(rows)
    log = []
    worker = lanes.LaneWorker('wf', 0, _items('a', 'b', 'c', 'd'),
                              lambda item: Steps(context, item, log))
    assert worker.name == 'wf:lane-0:work'
    worker.execute(context)
    # the one a crash left RUNNING first, each retried once after NotYet
    assert log == ['c', 'c', 'b', 'b']
    assert rows == {'a': states.DONE, 'b': states.DONE, 'c': states.DONE,
                    'd': states.SKIPPED}
    assert context.progress == 2


def test_a_stopping_job_ends_the_lane_between_targets():
    rows = {'a': states.PENDING, 'b': states.PENDING}
    context = Context(rows)
    log = []

    class StopAfterFirst(Steps):
        def execute(self, context):
            if self.item['target'] == 'b' and context.stopping:
                raise exceptions.NotYet('the job is stopping')
            super().execute(context)
            if rows['a'] == states.DONE:
                context.stopping = True

    worker = lanes.LaneWorker('wf', 0, _items('a', 'b'),
                              lambda item: StopAfterFirst(context, item,
                                                          log, waits=0))
    with pytest.raises(exceptions.NotYet):
        worker.execute(context)
    assert rows == {'a': states.DONE, 'b': states.PENDING}


def test_a_gate_is_never_retried_inside_the_lane():
    context = Context({'a': states.PENDING})

    class Gate(Steps):
        def execute(self, context):
            raise exceptions.GateWaiting('gate g is not approved')

    worker = lanes.LaneWorker('wf', 0, _items('a'),
                              lambda item: Gate(context, item, []))
    with pytest.raises(exceptions.GateWaiting):
        worker.execute(context)


def test_the_flow_does_not_grow_with_the_targets():
    items = [{'target': f't{n}', 'action': 'x', 'details': {'lb': f'l{n}'}}
             for n in range(10000)]
    flow = lanes.build('wf', {'concurrency': 4}, items, lambda item: None)
    workers = [sub for lane in flow for sub in lane]
    assert len(workers) == 4
    assert sum(len(w.items) for w in workers) == 10000
    # plan order within each lane
    assert [i['target'] for i in workers[1].items[:3]] == ['t1', 't5', 't9']
