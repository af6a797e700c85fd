"""The steps of ``selftest`` (wait, confirm the claim, record the step)
and its flow factories.
"""

import os
import time

from taskflow import task
from taskflow.patterns import linear_flow

from octavia_workflows import states
from octavia_workflows.flows.selftest import GATE
from octavia_workflows.machinery import gates, retry, shape
from octavia_workflows.machinery.target import TargetRun


class RunStep(task.Task):
    """Wait, confirm the claim, record the step."""

    def __init__(self, number):
        super().__init__(name=f'selftest-step-{number}',
                         requires=['context'])
        self.number = number

    def execute(self, context):
        target = TargetRun(context, f'step-{self.number}', paced=False)
        target.begin()
        deadline = time.monotonic() + float(context.params['step_seconds'])
        while time.monotonic() < deadline:
            time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
        context.fence()
        path = context.params.get('record_to')
        if path:
            with open(path, 'a', encoding='utf-8') as handle:
                handle.write(f'{context.job_id} {self.number}\n')
                handle.flush()
                os.fsync(handle.fileno())
        target.done()
        return self.number

    def revert(self, result, *args, **kwargs):
        # Nothing to undo: a recorded line is a fact about the past.
        return None


class RunSteps(task.Task):
    """Every step in one atom, in order, from the steps' records: a
    finished step is not run again, the one a crash interrupted is (and
    the gate after step ``gate_after`` is asked once, by its key).  The
    job stopping (pause, cancel, shutdown) ends the atom between two
    steps with :class:`~octavia_workflows.exceptions.NotYet`, so the
    engine suspends and the next run continues."""

    def __init__(self, numbers):
        super().__init__(name='selftest:steps', requires=['context'])
        self.numbers = numbers

    def execute(self, context):
        done = set(context.records.target_states(
            context.job_id, (states.DONE,)))
        gate_after = context.params.get('gate_after')
        for number in self.numbers:
            if f'step-{number}' not in done:
                if context.stopping:
                    retry.backoff(context)
                    raise retry.NotYet('the job is stopping')
                RunStep(number).execute(context)
                context.progressed()
            if number == gate_after:
                context.require_approval(GATE, gate_message(gate_after))
        return len(self.numbers)

    def revert(self, *args, **kwargs):
        return None


def gate_message(gate_after):
    return f'selftest: approve to run the steps after step {gate_after}'


def selftest_flow_v2(params, targets):
    """Factory: one atom for all the steps, however many
    (:class:`RunSteps`)."""
    if not targets:
        return linear_flow.Flow('selftest').add(
            shape.NothingToDo('selftest'))
    steps = linear_flow.Flow('selftest:lane', retry=retry.Again(
        'selftest:steps-retry'))
    steps.add(RunSteps([t['details']['step'] for t in targets]))
    return linear_flow.Flow('selftest').add(steps)


def selftest_flow(params, targets):
    """Factory of earlier releases: one :class:`RunStep` per planned
    step, in order."""
    flow = linear_flow.Flow('selftest')
    gate_after = params.get('gate_after')
    for item in targets:
        flow.add(RunStep(item['details']['step']))
        if item['details']['step'] == gate_after:
            flow.add(gates.gate_flow(GATE, gate_message(gate_after)))
    return flow
