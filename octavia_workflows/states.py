"""Job and target states, and the transitions allowed between them.

This module owns the states (as printed, see the design's CLI contract)
and keeps the allowed moves as data, the way TaskFlow keeps
``_ALLOWED_JOB_TRANSITIONS``.  Every write of a job's state goes through
:meth:`octavia_workflows.engine.records.Records.transition`, which
checks the move here and makes it a compare-and-set on the current
state in the same statement; every write of a target's state goes
through the same records layer with :func:`check_target_transition`.
No other module spells a state.
"""

from octavia_workflows import exceptions

PENDING = 'PENDING'
RUNNING = 'RUNNING'
PAUSED = 'PAUSED'
SUCCESS = 'SUCCESS'
FAILED = 'FAILED'
CANCELLED = 'CANCELLED'

JOB_STATES = (PENDING, RUNNING, PAUSED, SUCCESS, FAILED, CANCELLED)
#: Job states from which nothing moves any more.
FINISHED = (SUCCESS, FAILED, CANCELLED)
#: Job states a conductor may claim and run.
RUNNABLE = (PENDING, RUNNING)
#: Job states the operator can still pause or cancel.
UNFINISHED = (PENDING, RUNNING, PAUSED)

DONE = 'DONE'
SKIPPED = 'SKIPPED'
TARGET_STATES = (PENDING, RUNNING, DONE, SKIPPED, FAILED)
#: Target states that end a target.
TARGET_FINISHED = (DONE, SKIPPED, FAILED)

#: Operator requests kept in a job's ``control`` column, which its
#: runner acts on (pause, cancel); empty: none.
NO_CONTROL = ''
PAUSE = 'pause'
CANCEL = 'cancel'

#: The reason of a job paused on the operator's request; an interrupted
#: foreground run's reason starts with INTERRUPTED.  Any other PAUSED job
#: not waiting at a gate paused itself (circuit breaker).
OPERATOR_PAUSE = 'paused by the operator'
INTERRUPTED = 'interrupted'

#: Why the fleet (the cloud-wide budget, a lock held by another job)
#: refused a target for now.
FLEET_BUDGET = 'budget'
FLEET_LOCKED = 'locked'

#: Who paused a PAUSED job (``show``'s ``paused_by``).
BY_OPERATOR = 'operator'
BY_GATE = 'gate'
BY_JOB = 'job'


def paused_by(state, reason, at_gate):
    """:data:`BY_GATE`, :data:`BY_OPERATOR` or :data:`BY_JOB` for a
    PAUSED job (None for any other state)."""
    if state != PAUSED:
        return None
    if at_gate:
        return BY_GATE
    if (reason or '') == OPERATOR_PAUSE or (reason or '').startswith(
            INTERRUPTED):
        return BY_OPERATOR
    return BY_JOB


#: ``(from, to)`` moves of a job.  RUNNING -> RUNNING is a takeover (a
#: new owner claims a job whose owner died); RUNNING -> PENDING gives a
#: job back to the board (conductor stopping, transient failure);
#: PENDING -> PAUSED also ends an interrupted inline run.
ALLOWED_JOB_TRANSITIONS = frozenset((
    (PENDING, RUNNING),
    (PENDING, PAUSED),
    (PENDING, CANCELLED),
    (PENDING, FAILED),
    (RUNNING, RUNNING),
    (RUNNING, PENDING),
    (RUNNING, PAUSED),
    (RUNNING, SUCCESS),
    (RUNNING, FAILED),
    (RUNNING, CANCELLED),
    (PAUSED, PENDING),
    (PAUSED, RUNNING),
    (PAUSED, CANCELLED),
))

#: ``(from, to)`` moves of a target.  A FAILED target may run again
#: (cold-upgrade's "fix the cause, then approve to run it again").
ALLOWED_TARGET_TRANSITIONS = frozenset((
    (PENDING, RUNNING),
    (PENDING, DONE),
    (PENDING, SKIPPED),
    (PENDING, FAILED),
    (RUNNING, RUNNING),
    (RUNNING, DONE),
    (RUNNING, SKIPPED),
    (RUNNING, FAILED),
    (FAILED, RUNNING),
    (FAILED, FAILED),
    (FAILED, DONE),
    (FAILED, SKIPPED),
))


class InvalidTransition(exceptions.OctaviaWorkflowsError):
    """A state change that the lifecycle does not allow (a bug)."""


def job_sources(to, expect=None):
    """The states a job may move to ``to`` from, narrowed to
    ``expect`` when given.

    :raises InvalidTransition: ``to`` is not a job state, or no state
        in ``expect`` may move to it.
    """
    if to not in JOB_STATES:
        raise InvalidTransition(f'{to!r} is not a job state')
    sources = tuple(s for s in JOB_STATES
                    if (s, to) in ALLOWED_JOB_TRANSITIONS)
    if expect is not None:
        sources = tuple(s for s in sources if s in expect)
        if not sources:
            raise InvalidTransition(
                f'a job cannot move from {"/".join(expect)} to {to}')
    return sources


def check_target_transition(old, new):
    """Raise :class:`InvalidTransition` unless a target may move from
    ``old`` to ``new``."""
    if (old, new) not in ALLOWED_TARGET_TRANSITIONS:
        raise InvalidTransition(f'a target cannot move from {old} to {new}')
