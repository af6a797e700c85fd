"""Lanes: a fixed number of atoms works through the plan from the records."""

import threading
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
    # one shared plan, not four copies
    assert len({id(w.work) for w in workers}) == 1
    assert len(workers[0].work.items) == 10000
    # fewer groups than the concurrency: one lane per group
    flow = lanes.build('wf', {'concurrency': 8}, items[:3], lambda i: None)
    assert len([sub for lane in flow for sub in lane]) == 3


def _shared(names, key=lambda item: item['target']):
    return lanes.Work(_items(*names), key)


def test_a_free_lane_takes_the_next_target_while_a_slow_one_works():
    rows = {n: states.PENDING for n in 'abcdef'}
    context = Context(rows)
    work = _shared('abcdef')
    released = threading.Event()
    log = {0: [], 1: []}

    class Slow(Steps):
        def execute(self, context):
            if self.item['target'] == 'a':
                assert released.wait(10)
            super().execute(context)

    def lane(number):
        return lanes.LaneWorker('wf', number, work, lambda item: Slow(
            context, item, log[number], waits=0))

    slow = threading.Thread(target=lane(0).execute, args=(context,))
    slow.start()
    # lane 0 holds 'a' (the first in plan order); lane 1 does the rest
    assert lane(1).execute(context) == 5
    released.set()
    slow.join(10)
    assert log == {0: ['a'], 1: ['b', 'c', 'd', 'e', 'f']}
    assert set(rows.values()) == {states.DONE}


def test_a_group_is_driven_in_plan_order_by_one_lane():
    items = [{'target': t, 'action': 'x', 'details': {'lb': lb}}
             for t, lb in (('a1', 'A'), ('b1', 'B'), ('a2', 'A'),
                           ('b2', 'B'))]
    work = lanes.Work(items, lambda item: item['details']['lb'])
    context = Context({i['target']: states.PENDING for i in items})
    assert [i['target'] for i in work.take(context, 0)] == ['a1', 'a2']
    assert [i['target'] for i in work.take(context, 1)] == ['b1', 'b2']
    assert work.take(context, 2) is None


def test_groups_in_flight_come_first_and_finished_targets_never():
    rows = {'a': states.DONE, 'b': states.PENDING, 'c': states.RUNNING,
            'd': states.SKIPPED, 'e': states.PENDING}
    work = _shared('abcde')
    context = Context(rows)
    taken = [work.take(context, n) for n in range(4)]
    assert [[i['target'] for i in g] for g in taken[:3]] == [
        ['c'], ['b'], ['e']]
    assert taken[3] is None


def test_a_lane_stopped_inside_its_group_keeps_it_and_others_do_not_get_it():
    items = [{'target': t, 'action': 'x', 'details': {'lb': 'A'}}
             for t in ('a1', 'a2')]
    work = lanes.Work(items, lambda item: item['details']['lb'])
    rows = {'a1': states.PENDING, 'a2': states.PENDING}
    context = Context(rows)
    log = []

    class StopAfterFirst(Steps):
        def execute(self, context):
            if rows[self.item['target']] == states.DONE:
                return      # as real steps: a finished target stays so
            if self.item['target'] == 'a2' and context.stopping:
                raise exceptions.NotYet('the job is stopping')
            super().execute(context)
            context.stopping = True

    worker = lanes.LaneWorker('wf', 0, work, lambda item: StopAfterFirst(
        context, item, log, waits=0))
    with pytest.raises(exceptions.NotYet):
        worker.execute(context)
    assert rows == {'a1': states.DONE, 'a2': states.PENDING}
    # another lane of this run finds nothing to take: the group is held
    other = lanes.LaneWorker('wf', 1, work, lambda item: StopAfterFirst(
        context, item, log, waits=0))
    assert other.execute(context) == 0
    # the lane run again (same run) goes on inside its group
    context.stopping = False
    worker.execute(context)
    assert rows == {'a1': states.DONE, 'a2': states.DONE}
    assert log == ['a1', 'a2']
