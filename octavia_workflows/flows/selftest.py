"""``selftest``: prove an installation claims, persists and resumes jobs.

``steps`` steps, run in order by one atom (so a job of 10,000 steps
costs no more per step than one of ten).  Each step waits ``step_seconds``,
confirms the claim (fencing), then appends ``<job id> <step number>`` to
``record_to`` if given.  Kill the conductor running it: another one
finishes the job, and the file shows every step exactly once except at
most the one that was interrupted (execution is at-least-once; a step
that was running when its conductor died runs again).

With ``gate_after=N`` the job also stops at an approval gate after step
N (gate key ``selftest-gate``): it checks ``approve``/``reject`` and
``wait``'s gate handling end to end.
"""

import os
import time

from taskflow import task
from taskflow.patterns import linear_flow

from octavia_workflows import exceptions, states, workflow
from octavia_workflows.machinery import gates, retry, shape
from octavia_workflows.machinery.target import TargetRun

#: The approval gate's key (``gate_after``); also its atom name in the
#: flows of earlier releases.
GATE = 'selftest-gate'


def _check(params):
    gate_after = params.get('gate_after')
    if gate_after is not None and gate_after > params['steps']:
        raise exceptions.InvalidParameter(
            f'parameter gate_after: {gate_after} is above steps '
            f'({params["steps"]})')
    path = params.get('record_to')
    if path:
        directory = os.path.dirname(os.path.abspath(path)) or '.'
        if not os.path.isdir(directory):
            raise exceptions.InvalidParameter(
                f'parameter record_to: directory {directory} does not exist')
        if os.path.isdir(path):
            raise exceptions.InvalidParameter(
                f'parameter record_to: {path} is a directory')


def plan(context, params):
    """Targets ``step-1`` .. ``step-N``; nothing is skipped."""
    return workflow.Plan(
        targets=[workflow.Target(f'step-{n}', 'step', {'step': n})
                 for n in range(1, params['steps'] + 1)],
        notes=['touches no cloud resource'])


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


WORKFLOW = workflow.Workflow(
    name='selftest',
    description='Validate the installation: jobboard, persistence, '
    'conductor and resume, without touching the cloud.',
    params=(
        workflow.Param('steps', 'int', 'number of steps', default=5, min=1,
                       max=10000),
        workflow.Param('step_seconds', 'float', 'seconds each step takes',
                       default=1.0, min=0, max=3600),
        workflow.Param('record_to', 'path',
                       'file to append "<job id> <step>" to for each executed '
                       'step (optional)'),
        workflow.Param('gate_after', 'int',
                       'stop at an approval gate after this step (optional)',
                       min=1, max=10000),
    ),
    factory='octavia_workflows.flows.selftest:selftest_flow_v2',
    earlier_factories=('octavia_workflows.flows.selftest:selftest_flow',),
    plan=plan,
    needs_cloud=False,
    check=_check,
)
