"""Approval gates: the state kept in a job's record.

Any runbook can stop at an approval gate (see
:mod:`octavia_workflows.flows.gates` for the task side).  The gate's
state lives in the ``gate`` column of the job's record, as JSON::

    {"waiting": {"gate": KEY, "message": TEXT, "if_rejected": TEXT,
                 "since": ISO, "owner": CONDUCTOR} or null,
     "approved": {KEY: {"at": ISO, "by": WHO}, ...},
     "rejected": {"gate": KEY, "at": ISO, "by": WHO, "reason": TEXT}}

``KEY`` is stable for one question (usually the gate's atom name, or a
step name plus an attempt number): a gate that was approved once passes
every later time it runs, so a gate re-executed after a crash or a
takeover never asks twice and never passes unapproved.

The functions here are pure (dicts in, dicts out) so the state logic is
tested without a database; :class:`~octavia_workflows.engine.jobs.
JobService` applies them with compare-and-set updates.  Malformed or
legacy content (a bare message string) is read as a waiting gate with
that message, never as an approval.
"""

import getpass
import json
import socket

from octavia_workflows import exceptions


def empty():
    return {'waiting': None, 'approved': {}, 'rejected': None}


def parse(raw):
    """The gate state of a job from its ``gate`` column (None: empty)."""
    state = empty()
    if not raw:
        return state
    try:
        data = json.loads(raw)
    except (TypeError, ValueError):
        data = None
    if not isinstance(data, dict):
        state['waiting'] = {'gate': 'gate', 'message': str(raw)}
        return state
    waiting = data.get('waiting')
    if isinstance(waiting, dict) and waiting.get('gate'):
        state['waiting'] = waiting
    approved = data.get('approved')
    if isinstance(approved, dict):
        state['approved'] = approved
    if isinstance(data.get('rejected'), dict):
        state['rejected'] = data['rejected']
    return state


def dump(state):
    """The ``gate`` column's text for ``state`` (None when empty)."""
    if not state['waiting'] and not state['approved'] and \
            not state['rejected']:
        return None
    return json.dumps(state, sort_keys=True)


def operator():
    """Who answers a gate: ``user@host`` of the CLI process."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = 'unknown'
    return f'{user}@{socket.gethostname()}'


def ask(state, key, message, since, owner=None, if_rejected=None):
    """Mark ``key`` as the gate the job waits at; returns the new state.

    Asking an approved gate changes nothing (callers check
    :func:`approved` first).
    """
    new = dict(state, approved=dict(state['approved']))
    if key in new['approved']:
        return new
    new['waiting'] = {'gate': key, 'message': message, 'since': since,
                      'owner': owner, 'if_rejected': if_rejected}
    return new


def approved(state, key):
    return key in state['approved']


def approve(state, at, by, key=None):
    """Approve the waiting gate; returns ``(new_state, gate_key)``.

    :raises InvalidJobState: nothing is waiting, or ``key`` names another
        gate than the waiting one.
    """
    waiting = state['waiting']
    if not waiting:
        raise exceptions.InvalidJobState('the job is not waiting at an '
                                         'approval gate')
    if key and key != waiting['gate']:
        raise exceptions.InvalidJobState(
            f'the job waits at gate {waiting["gate"]!r}, not {key!r}')
    new = dict(state, approved=dict(state['approved']), waiting=None)
    new['approved'][waiting['gate']] = {'at': at, 'by': by}
    return new, waiting['gate']


def reject(state, at, by, reason=None):
    """Reject the waiting gate; returns ``(new_state, job_reason)``.

    ``job_reason`` is what the job's record says afterwards: ``rejected
    at gate KEY: MESSAGE`` plus the operator's reason and the runbook's
    advice for a rejection (what is left to do by hand).

    :raises InvalidJobState: nothing is waiting.
    """
    waiting = state['waiting']
    if not waiting:
        raise exceptions.InvalidJobState('the job is not waiting at an '
                                         'approval gate')
    new = dict(state, approved=dict(state['approved']), waiting=None)
    new['rejected'] = {'gate': waiting['gate'], 'at': at, 'by': by,
                       'reason': reason}
    text = f'rejected at gate {waiting["gate"]} by {by}'
    if reason:
        text += f' ({reason})'
    text += f': {waiting["message"]}'
    if waiting.get('if_rejected'):
        text += f'. {waiting["if_rejected"]}'
    return new, text


def message(state):
    """The waiting gate's message, or None."""
    waiting = state['waiting']
    return waiting['message'] if waiting else None
