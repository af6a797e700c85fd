"""Short checks under a retry controller, and the transient-error idiom.

Waits are never one long blocking task: a step that finds its target
not ready raises :class:`~octavia_workflows.exceptions.NotYet`, and the
:class:`Again` retry controller runs the subflow again (a retry is saved
in the atom's record, so a long wait leaves a short history when its
checks grow longer, up to :data:`MAX_WINDOW`).

:func:`retry_later_or` is the one place that says what a cloud error
means to a step: a transient one (5xx, timeout, unreachable API) backs
off briefly and raises NotYet, so the step runs again later; any other
is handed to the step's ``fail`` (usually
:meth:`~octavia_workflows.machinery.target.TargetRun.fail`).
"""

import time

from taskflow import retry

from octavia_workflows import exceptions

NotYet = exceptions.NotYet

#: First length (seconds) of one check of a pacing gate or of a wait;
#: the retry controller runs it again as long as needed.  Later checks
#: get longer (up to MAX_WINDOW), so that a long wait leaves a short
#: retry history (each retry is saved in the atom's record).
CHECK_WINDOW = 15.0
MAX_WINDOW = 120.0
#: Longest single wait for an interval the operator asked for.
MAX_INTERVAL_WINDOW = 600.0
#: Seconds to hold a NotYet raised because the job stops or the cloud
#: failed, so the engine suspends (or the cloud recovers) before the
#: retry controller runs the check again.
BACKOFF = 1.0
#: Seconds between looks at the pacer or the stop flag inside a check.
TICK = 0.2

#: Names under which earlier releases defined NotYet and its gate
#: subclass (a retry history saved by them names these).
_LEGACY_NOT_YET = ('octavia_workflows.flows.common.NotYet',
                   'octavia_workflows.flows.gates.GateWaiting')


def backoff(context, seconds=BACKOFF):
    """Sleep briefly before raising NotYet (returns early on a lost
    claim), so that no check is repeated in a hot loop."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not context.claim.lost:
        time.sleep(min(TICK, max(0.0, deadline - time.monotonic())))


def retry_later_or(context, exc, fail, pause=BACKOFF):
    """The transient-error idiom, for a :class:`~octavia_workflows.
    exceptions.CloudError` ``exc`` caught by a step.

    Transient: back off ``pause`` seconds and raise NotYet (the step
    runs again later).  Otherwise: return ``fail(exc)``.
    """
    if exc.transient:
        backoff(context, pause)
        raise NotYet(str(exc)) from exc
    return fail(exc)


class Again(retry.Retry):
    """Run the subflow again while its failure is :class:`NotYet`.

    Any other failure (a bug, a lost claim) is not retried: REVERT.
    """

    def __init__(self, name):
        super().__init__(name=name)

    def on_failure(self, history, *args, **kwargs):
        if history.caused_by(NotYet, index=-1) or any(
                history.caused_by(name, index=-1)
                for name in _LEGACY_NOT_YET):
            return retry.RETRY
        return retry.REVERT

    def execute(self, history, *args, **kwargs):
        return len(history) + 1

    def revert(self, history, *args, **kwargs):
        return None
