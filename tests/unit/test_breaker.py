"""The circuit breaker: a failure count and a failure ratio over a window."""

import datetime

from octavia_workflows import states
from octavia_workflows.machinery import pacing, runstate


def test_the_ratio_needs_a_full_window():
    assert not pacing.ratio_should_trip([True, True], 0.5, 4)
    assert pacing.ratio_should_trip([True, False, True, False], 0.5, 4)
    assert not pacing.ratio_should_trip([True, False, False, False], 0.5, 4)
    # only the last window counts
    assert not pacing.ratio_should_trip([True] * 3 + [False] * 4, 0.5, 4)
    assert not pacing.ratio_should_trip([True] * 9, None, 4)


class Context:
    """Records in memory: what the breaker reads and writes."""

    def __init__(self, params):
        self.job_id = 'job'
        self.params = params
        self.rows = {}
        self.paused = []
        self.records = self

    def finish(self, target, state, minute):
        self.rows[target] = {
            'target': target, 'state': state, 'details': {},
            'finished_at': datetime.datetime(2026, 1, 1, 0, minute)}

    def get_targets(self, job_id, states=None):
        return [r for r in self.rows.values()
                if not states or r['state'] in states]

    def write_target(self, target, details=None, **_):
        self.rows[target]['details'].update(details or {})

    def request_pause(self, reason, kind):
        self.paused.append((reason, kind))


def _run(context, outcomes):
    state = runstate.RunState(pacer=None, ahead=None)
    for minute, failed in enumerate(outcomes):
        target = f't{minute}'
        context.finish(target, states.FAILED if failed else states.DONE,
                       minute)
        if failed:
            state.breaker(context, target)
    return context


def test_the_ratio_trips_the_breaker_and_counts_again_after_the_trip():
    context = _run(Context({'max_failures': 0, 'max_failure_ratio': 0.5,
                            'breaker_window': 4}),
                   [False, True, False, True])
    [(reason, kind)] = context.paused
    assert kind == 'breaker'
    assert 'max_failure_ratio=0.5, breaker_window=4' in reason
    assert context.rows['t3']['details']['breaker_tripped'] is True
    # after a resume, the window starts again after the tripping target
    context.finish('t4', states.FAILED, 4)
    runstate.RunState(None, None).breaker(context, 't4')
    assert len(context.paused) == 1


def test_the_count_still_trips_alone():
    context = _run(Context({'max_failures': 2}), [True, False, True])
    [(reason, _)] = context.paused
    assert '2 target(s) failed (max_failures=2)' in reason


def test_no_breaker_no_pause():
    context = _run(Context({'max_failures': 0}), [True] * 5)
    assert context.paused == []
