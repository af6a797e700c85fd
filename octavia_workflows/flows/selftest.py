"""``selftest``: prove an installation claims, persists and resumes jobs.

A linear flow of ``steps`` steps.  Each step waits ``step_seconds``,
confirms the claim (fencing), then appends ``<job id> <step number>`` to
``record_to`` if given.  Kill the conductor running it: another one
finishes the job, and the file shows every step exactly once except at
most the one that was interrupted (execution is at-least-once; a step
that was running when its conductor died runs again).

With ``gate_after=N`` the job also stops at an approval gate after step
N (atom ``selftest-gate``): it checks ``approve``/``reject`` and
``wait``'s gate handling end to end.  Without it the flow is the same
as in earlier releases.
"""

import os
import time

from taskflow import task
from taskflow.patterns import linear_flow

from octavia_workflows import exceptions, workflow
from octavia_workflows.machinery import gates
from octavia_workflows.machinery.target import TargetRun


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


def selftest_flow(params, targets):
    """The flow: one :class:`RunStep` per planned step, in order."""
    flow = linear_flow.Flow('selftest')
    gate_after = params.get('gate_after')
    for item in targets:
        flow.add(RunStep(item['details']['step']))
        if item['details']['step'] == gate_after:
            flow.add(gates.gate_flow(
                'selftest-gate',
                f'selftest: approve to run the steps after step '
                f'{gate_after}'))
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
    factory='octavia_workflows.flows.selftest:selftest_flow',
    plan=plan,
    needs_cloud=False,
    check=_check,
)
