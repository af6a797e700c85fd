"""Approval gates for runbooks: stop, ask the operator, go on when told.

Two ways to use them:

- :func:`gate_flow` adds a gate as a step of its own: the job pauses
  there with ``message`` until ``octavia-workflow approve JOB`` (or
  ``resume``); ``reject`` ends it CANCELLED;
- :func:`require` asks from inside any task (e.g. "this command's
  outcome is unknown after a crash: run it again?").

How it stays correct across pauses, crashes and takeovers: the answer is
kept in the job's record (:mod:`octavia_workflows.engine.gates`) under a
stable key, never in the engine's memory.  A gate that is not approved
records the question, asks the runner to pause the job and raises
:class:`GateWaiting` inside a retry-controlled subflow, so the step is
not completed: the engine suspends and the job is left PAUSED.  Run
again (after ``approve``, after a conductor died, on another conductor)
the same gate passes only if its key was approved, and otherwise asks
again.  It never passes unapproved, and once approved it never asks
again for the same key.

Failures: reading or writing the record raises the database's error (the
runner retries the job later); a lost claim raises
:class:`~octavia_workflows.exceptions.ClaimLost` before anything is
written.
"""

import logging

from taskflow import task
from taskflow.patterns import linear_flow

from octavia_workflows.engine import gates
from octavia_workflows.engine import records as rec
from octavia_workflows.flows import common

LOG = logging.getLogger(__name__)


class GateWaiting(common.NotYet):
    """The gate is not approved yet; the job pauses (retried later)."""


def approved(context, key):
    """True if the gate ``key`` of this job was approved."""
    job = context.records.get_job(context.job_id)
    return gates.approved(gates.parse(job['gate'] if job else None), key)


def require(context, key, message, if_rejected=None):
    """Return if gate ``key`` is approved; else ask and pause the job.

    :param message: what the operator must do or decide (shown by
        ``show`` and ``wait``).
    :param if_rejected: what is left to do by hand if the operator
        rejects (added to the job's reason).
    :raises GateWaiting: not approved yet (the job pauses; must run
        inside a subflow whose retry controller retries
        :class:`~octavia_workflows.flows.common.NotYet`, e.g.
        :class:`~octavia_workflows.flows.common.Again`).
    """
    job = context.records.get_job(context.job_id)
    state = gates.parse(job['gate'] if job else None)
    if gates.approved(state, key):
        return
    context.fence()
    new = gates.ask(state, key, message, rec.isoformat(rec.utcnow()),
                    owner=context.owner, if_rejected=if_rejected)
    context.records.update_job(context.job_id, expect_owner=context.owner,
                               gate=gates.dump(new))
    LOG.warning('job %s: waiting for approval at gate %s: %s',
                context.job_id, key, message)
    context.request_pause(f'waiting for approval at gate {key}',
                          kind='gate')
    common.backoff(context)
    raise GateWaiting(f'gate {key} is not approved')


class ApprovalGate(task.Task):
    """A step that passes once the operator approved it."""

    def __init__(self, name, message, if_rejected=None):
        super().__init__(name=name, requires=['context'])
        self.message = message
        self.if_rejected = if_rejected

    def execute(self, context):
        require(context, self.name, self.message, self.if_rejected)
        return True

    def revert(self, *args, **kwargs):
        return None


def gate_flow(name, message, if_rejected=None):
    """A subflow holding one :class:`ApprovalGate` named ``name`` under
    a retry controller ``<name>-retry`` (both atom names are stable)."""
    flow = linear_flow.Flow(f'{name}-flow',
                            retry=common.Again(f'{name}-retry'))
    return flow.add(ApprovalGate(name, message, if_rejected))
