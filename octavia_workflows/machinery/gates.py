"""Approval gates for runbooks: stop, ask the operator, go on when told.

Two ways to use them:

- :func:`gate_flow` adds a gate as a step of its own: the job pauses
  there with ``message`` until ``octavia-workflow approve JOB`` (or
  ``resume``); ``reject`` ends it CANCELLED;
- any task calls ``context.require_approval(key, message, if_rejected)``
  (e.g. "this command's outcome is unknown after a crash: run it
  again?"), a service of the run context.

How it stays correct across pauses, crashes and takeovers: the answer is
kept in the job's record under a stable key, never in the engine's
memory (see :meth:`octavia_workflows.engine.context.RunContext.
require_approval`).  A gate that is not approved records the question,
asks the runner to pause the job and raises
:class:`~octavia_workflows.exceptions.GateWaiting` inside a
retry-controlled subflow, so the step is not completed: the engine
suspends and the job is left PAUSED.  Run again the same gate passes
only if its key was approved, and otherwise asks again.

Failures: reading or writing the record raises the database's error (the
runner retries the job later); a lost claim raises
:class:`~octavia_workflows.exceptions.ClaimLost` before anything is
written.
"""

from taskflow import task
from taskflow.patterns import linear_flow

from octavia_workflows.machinery import retry


class ApprovalGate(task.Task):
    """A step that passes once the operator approved it."""

    def __init__(self, name, message, if_rejected=None):
        super().__init__(name=name, requires=['context'])
        self.message = message
        self.if_rejected = if_rejected

    def execute(self, context):
        context.require_approval(self.name, self.message, self.if_rejected)
        return True

    def revert(self, *args, **kwargs):
        return None


def gate_flow(name, message, if_rejected=None):
    """A subflow holding one :class:`ApprovalGate` named ``name`` under
    a retry controller ``<name>-retry`` (both atom names are stable)."""
    flow = linear_flow.Flow(f'{name}-flow',
                            retry=retry.Again(f'{name}-retry'))
    return flow.add(ApprovalGate(name, message, if_rejected))
