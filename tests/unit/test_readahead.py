"""Read-ahead of re-check reads, and how a target's start uses it."""

import threading
import time
import types

from octavia_workflows import states
from octavia_workflows.machinery import pacing, readahead, runstate, steps
from octavia_workflows.machinery.target import PROGRESS

RECHECKED = PROGRESS['rechecked']


class Clock:
    def __init__(self, now=1000.0):
        self.now = now

    def __call__(self):
        return self.now


def _rows(*targets, lb=None, state=states.PENDING):
    return [{'target': t, 'state': state,
             'details': {'lb': (lb or {}).get(t, f'lb-{t}')}}
            for t in targets]


def _reader(log):
    def read(details):
        log.append(details['lb'])
        return {'lb': details['lb']}
    return read


def test_reads_the_next_pending_targets_in_plan_order():
    log = []
    ahead = readahead.ReadAhead(_rows('a', 'b', 'c', 'd'), width=2,
                                clock=Clock())
    assert ahead.schedule(_reader(log)) == ['a', 'b']
    # already read: nothing new until one of them is taken
    assert ahead.schedule(_reader(log)) == []
    assert ahead.take('a') == (1000.0, {'lb': 'lb-a'})
    assert ahead.schedule(_reader(log), busy={'a'}) == ['c']
    assert sorted(log) == ['lb-a', 'lb-b', 'lb-c']
    # taken once: a target is no longer pending afterwards
    assert ahead.take('a') is None


def test_a_load_balancer_in_flight_or_earlier_in_the_plan_is_not_read():
    lbs = {'a1': 'x', 'a2': 'x', 'b': 'y', 'c': 'z'}
    ahead = readahead.ReadAhead(_rows('a1', 'a2', 'b', 'c', lb=lbs),
                                width=3, clock=Clock())
    # a1 in flight: a2 shares its load balancer
    ahead.take('a1')
    assert ahead.schedule(_reader([]), busy={'a1'}) == ['b', 'c']
    # a1 done: a2 may be read now
    assert ahead.schedule(_reader([]), busy=set()) == ['a2']


def test_an_old_read_is_not_used_and_is_made_again():
    clock = Clock()
    ahead = readahead.ReadAhead(_rows('a', 'b'), width=1, clock=clock)
    ahead.schedule(_reader([]))
    clock.now += readahead.MAX_AGE + 0.1
    assert ahead.take('a') is None
    log = []
    assert ahead.schedule(_reader(log)) == ['b']
    clock.now += readahead.MAX_AGE + 0.1
    # too old by now: scheduled again
    assert ahead.schedule(_reader(log)) == ['b']
    assert ahead.take('b') == (clock.now, {'lb': 'lb-b'})
    assert log == ['lb-b', 'lb-b']


def test_reads_only_as_far_ahead_as_targets_start_within_half_max_age():
    clock = Clock()
    targets = [f't{i}' for i in range(12)]
    ahead = readahead.ReadAhead(_rows(*targets), width=8, clock=clock)
    assert ahead.window == 8        # no pace known yet
    for target in targets[:4]:      # one start every 2 s
        ahead.take(target)
        clock.now += 2.0
    assert ahead.window == 1
    assert ahead.schedule(_reader([])) == ['t4']
    for target in targets[4:10]:    # then one every 0.25 s
        ahead.take(target)
        clock.now += 0.25
    assert 1 < ahead.window <= 8
    assert ahead.schedule(_reader([])) == ['t10', 't11'][:ahead.window]


def test_a_failed_read_is_not_used():
    def broken(details):
        raise RuntimeError('boom')

    ahead = readahead.ReadAhead(_rows('a'), clock=Clock())
    ahead.schedule(broken)
    assert ahead.take('a') is None


def test_a_read_under_way_is_waited_for():
    gate = threading.Event()

    def slow(details):
        gate.wait(5)
        return 'late'

    ahead = readahead.ReadAhead(_rows('a'), clock=Clock())
    ahead.schedule(slow)
    threading.Timer(0.2, gate.set).start()
    assert ahead.take('a') == (1000.0, 'late')


def test_off_when_the_interval_is_longer_than_a_read_may_be_old():
    ahead = readahead.ReadAhead(_rows('a'), interval=readahead.MAX_AGE,
                                clock=Clock())
    assert ahead.schedule(_reader([])) == []


def test_only_pending_targets_are_read():
    rows = _rows('a', state=states.RUNNING) + _rows('b', 'c') + \
        _rows('d', state=states.DONE)
    ahead = readahead.ReadAhead(rows, width=4, clock=Clock())
    assert ahead.schedule(_reader([])) == ['b', 'c']


# -- a target's start ------------------------------------------------------


class Start(steps.StartTarget):
    """Skip a load balancer unless it is ACTIVE; reads come from
    ``Cloud.status`` (what the cloud says now)."""

    @staticmethod
    def read(cloud, details):
        cloud.reads.append(details['lb'])
        return cloud.status[details['lb']]

    def judge(self, context, data):
        if data != 'ACTIVE':
            return f'load balancer is {data}', None
        return None, {'status': data}


class Context:
    """The part of a job's context a start uses (records in memory)."""

    def __init__(self, rows, cloud):
        self.job_id = 'job'
        self.params = {'concurrency': 1}
        self.stopping = False
        self.claim = types.SimpleNamespace(lost=False)
        self.rows = {r['target']: r for r in rows}
        self.records = types.SimpleNamespace(
            get_targets=lambda job_id, states=None: list(
                self.rows.values()))
        self._cloud = cloud
        self.run = runstate.for_job(self)

    def cloud(self):
        return self._cloud

    def fence(self):
        pass

    def target(self, target):
        return self.rows[target]

    def write_target(self, target, state=None, error=None, details=None,
                     **_flags):
        if state is not None:
            self.rows[target].update(state=state, error=error)
        self.rows[target]['details'].update(details or {})


def _start(target):
    return Start('wf', target, {'lb': f'lb-{target}'})


def test_a_start_uses_the_read_made_ahead_only_to_go():
    cloud = types.SimpleNamespace(reads=[], status={
        'lb-a': 'ACTIVE', 'lb-b': 'PENDING_UPDATE', 'lb-c': 'ACTIVE'})
    context = Context(_rows('a', 'b', 'c'), cloud)
    run = context.run
    assert _start('a').execute(context) == states.RUNNING
    run.ahead.schedule(lambda d: Start.read(cloud, d), busy={'a'})
    context.run.pacer.release('a')
    # b read ahead while busy elsewhere; ACTIVE by the time it starts
    cloud.status['lb-b'] = 'ACTIVE'
    assert _start('b').execute(context) == states.RUNNING
    assert cloud.reads == ['lb-a', 'lb-b', 'lb-b']     # read again
    row = context.rows['b']['details']
    assert row[RECHECKED] >= row[pacing.STARTED]
    run.ahead.schedule(lambda d: Start.read(cloud, d), busy={'b'})
    context.run.pacer.release('b')
    # c read ahead and still ACTIVE: started on that read, not again
    assert _start('c').execute(context) == states.RUNNING
    assert cloud.reads == ['lb-a', 'lb-b', 'lb-b', 'lb-c']
    row = context.rows['c']['details']
    assert row[RECHECKED] <= row[pacing.STARTED]


# -- a target's wait -------------------------------------------------------


class Wait(steps.WaitForTarget):
    def verify(self, context, cloud, record, lb):
        return states.DONE, None, {}


def test_the_wait_learns_only_from_failovers_this_run_requested():
    cloud = types.SimpleNamespace(get_load_balancer=lambda lb: {
        'id': lb, 'provisioning_status': 'ACTIVE'})
    context = Context(_rows('a', 'b', state=states.RUNNING), cloud)
    run = context.run
    # a was requested by a run before this one (its conductor died): the
    # five minutes since say nothing about how long failovers take
    context.rows['a']['details'].update(
        started=run.began - 301, requested_at=run.began - 300)
    assert Wait('wf', 'a', {'lb': 'lb-a'}).execute(context) == states.DONE
    assert run.settling.seconds is None
    now = time.time()
    context.rows['b']['details'].update(started=now, requested_at=now)
    assert Wait('wf', 'b', {'lb': 'lb-b'}).execute(context) == states.DONE
    assert 0.2 < run.settling.seconds < 5.0
    assert context.rows['b']['state'] == states.DONE
