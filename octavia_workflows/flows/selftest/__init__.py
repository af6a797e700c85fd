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

from octavia_workflows import exceptions, workflow

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

#: The steps and flow factories, in :mod:`.flow` (see
#: :func:`octavia_workflows.workflow.flow_names`).
__getattr__ = workflow.flow_names(__name__)
