"""Pacing (concurrency, interval, per-zone cap) and the circuit breaker."""

import threading
import time

from taskflow import task

from octavia_workflows.engine import runner
from octavia_workflows.machinery import pacing, shape
from octavia_workflows.machinery import params as shared


class Clock:
    def __init__(self, now=1000.0):
        self.now = now

    def __call__(self):
        return self.now


def test_concurrency_caps_targets_in_flight():
    pacer = pacing.Pacer(concurrency=2, clock=Clock())
    assert pacer.try_start('a')[0]
    assert pacer.try_start('b')[0]
    assert pacer.try_start('c') == (False, 0.0)
    pacer.release('a')
    assert pacer.try_start('c')[0]
    assert set(pacer.in_flight) == {'b', 'c'}


def test_interval_spaces_starts_and_reports_the_wait():
    clock = Clock()
    pacer = pacing.Pacer(concurrency=5, interval=30, clock=clock)
    assert pacer.try_start('a')[0]
    clock.now += 10
    admitted, wait = pacer.try_start('b')
    assert not admitted and wait == 20
    clock.now += 20
    assert pacer.try_start('b')[0]
    assert pacer.last_start == clock.now


def test_interval_counts_from_the_start_not_the_end():
    clock = Clock()
    pacer = pacing.Pacer(interval=5, clock=clock)
    pacer.try_start('a')
    clock.now += 6
    pacer.release('a')
    assert pacer.try_start('b')[0]


def test_zone_cap_only_blocks_its_own_zone():
    pacer = pacing.Pacer(concurrency=4, max_per_az=1, clock=Clock())
    assert pacer.try_start('a', 'az1')[0]
    assert pacer.try_start('b', 'az1') == (False, 0.0)
    assert pacer.try_start('c', 'az2')[0]
    pacer.release('a')
    assert pacer.try_start('b', 'az1')[0]


def test_a_skipped_target_gives_its_slot_and_the_interval_back():
    clock = Clock()
    pacer = pacing.Pacer(interval=60, clock=clock)
    pacer.try_start('a')
    pacer.confirm('a')
    pacer.release('a')
    clock.now += 60
    assert pacer.try_start('b')[0]
    assert pacer.started_at('b') == clock.now
    pacer.cancel('b')
    assert pacer.in_flight == {}
    assert pacer.last_start == clock.now - 60
    assert pacer.try_start('c')[0]


def test_cancel_keeps_a_later_start():
    clock = Clock()
    pacer = pacing.Pacer(concurrency=2, clock=clock)
    pacer.try_start('a')
    clock.now += 1
    pacer.try_start('b')
    pacer.cancel('a')
    assert pacer.last_start == clock.now


def test_state_is_reloaded_from_records_on_resume():
    """After a takeover the new conductor's pacer sees what the old one
    started: in-flight targets and the last start time."""
    clock = Clock(2000.0)
    rows = [
        {'target': 'a', 'state': 'DONE',
         'details': {pacing.STARTED: 1990.0, 'az': 'az1'}},
        {'target': 'b', 'state': 'RUNNING',
         'details': {pacing.STARTED: 1995.0, 'az': 'az1'}},
        {'target': 'c', 'state': 'PENDING', 'details': {'az': 'az2'}},
    ]
    pacer = pacing.Pacer(concurrency=2, interval=10, max_per_az=1,
                         clock=clock)
    pacer.load(rows)
    assert pacer.in_flight == {'b': 'az1'}
    assert pacer.last_start == 1995.0
    admitted, wait = pacer.try_start('c', 'az2')
    assert not admitted and wait == 5.0
    clock.now = 2005.0
    assert pacer.try_start('d', 'az1') == (False, 0.0)
    assert pacer.try_start('c', 'az2')[0]
    # b was adopted from the record: finishing it frees its slot
    pacer.release('b')
    clock.now = 2015.0
    assert pacer.try_start('d', 'az1')[0]


def test_admitting_the_same_target_twice_is_idempotent():
    pacer = pacing.Pacer(concurrency=1, interval=100, clock=Clock())
    assert pacer.try_start('a')[0]
    assert pacer.try_start('a')[0]


def test_breaker_trips_at_each_multiple_of_max_failures():
    assert not pacing.breaker_should_trip(1, 0, 2)
    assert pacing.breaker_should_trip(2, 0, 2)
    # resumed after the first trip: the next one is at 4
    assert not pacing.breaker_should_trip(3, 1, 2)
    assert pacing.breaker_should_trip(4, 1, 2)
    assert not pacing.breaker_should_trip(50, 0, 0)
    assert not pacing.breaker_should_trip(50, 0, None)


class _Atom(task.Task):
    def execute(self):
        return None


def _item(target, lb=None):
    return {'target': target, 'action': 'x', 'details': {'lb': lb or target}}


def test_lanes_keep_one_load_balancer_together_and_round_robin():
    items = [_item('a1', 'A'), _item('b1', 'B'), _item('a2', 'A'),
             _item('c1', 'C'), _item('d1', 'D')]
    lanes = shape.lanes(items, 2, key=lambda i: i['details']['lb'])
    assert [[i['target'] for i in lane] for lane in lanes] == [
        ['a1', 'a2', 'c1'], ['b1', 'd1']]


def test_lanes_never_exceed_concurrency_or_groups():
    items = [_item(str(n)) for n in range(3)]
    assert len(shape.lanes(items, 8, key=lambda i: i['target'])) == 3
    assert len(shape.lanes(items, 1, key=lambda i: i['target'])) == 1
    assert shape.lanes([], 4, key=lambda i: i['target']) == []


def test_a_waiting_target_wakes_when_a_slot_is_freed():
    pacer = pacing.Pacer(concurrency=1)
    assert pacer.try_start('a')[0]
    seen = pacer.frees
    assert pacer.try_start('b') == (False, 0.0)
    woke = []
    waiter = threading.Thread(
        target=lambda: woke.append(pacer.wait(30.0, seen)))
    waiter.start()
    pacer.release('a')
    waiter.join(5.0)
    assert woke == [True]
    assert pacer.try_start('b')[0]


def test_a_slot_freed_before_the_wait_is_not_missed():
    pacer = pacing.Pacer(concurrency=1)
    pacer.try_start('a')
    seen = pacer.frees
    pacer.release('a')           # between the refusal and the wait
    began = time.monotonic()
    assert pacer.wait(30.0, seen) is True
    assert time.monotonic() - began < 1.0
    assert pacer.wait(0.05, pacer.frees) is False


def test_build_has_no_more_lanes_than_concurrency():
    """More lanes would let a later target start first (after a resume
    the retried atom of the next target is slower than a fresh one)."""
    items = [_item(f't{n}') for n in range(5)]
    flow = shape.build('wf', {'concurrency': 1}, items,
                        lambda item: _Atom(item['target']))
    assert [atom.name for atom in flow] == ['t0', 't1', 't2', 't3', 't4']
    assert runner._width(flow, shared.lanes({'concurrency': 1})) == 1
    flow = shape.build('wf', {'concurrency': 2}, items,
                        lambda item: _Atom(item['target']))
    assert [[atom.name for atom in lane] for lane in flow] == [
        ['t0', 't2', 't4'], ['t1', 't3']]
    assert runner._width(flow, shared.lanes({'concurrency': 2})) == 2


def test_width_counts_nested_lanes():
    """evacuate-host puts the amphora lanes inside a linear flow: the
    engine still gets a thread per lane."""
    from taskflow.patterns import linear_flow

    items = [_item(f't{n}') for n in range(6)]
    lanes = shape.build('wf', {'concurrency': 3}, items,
                         lambda item: _Atom(item['target']))
    outer = linear_flow.Flow('outer').add(_Atom('first'), lanes)
    assert runner._width(outer, shared.lanes({'concurrency': 1})) == 3


def test_expected_is_a_weighted_mean_of_recent_durations():
    expected = pacing.Expected(weight=0.5)
    assert expected.seconds is None
    expected.observe(1.0)
    assert expected.seconds == 1.0
    expected.observe(3.0)
    assert expected.seconds == 2.0
    expected.observe(2.0)
    assert expected.seconds == 2.0
