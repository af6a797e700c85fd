"""The fenced TaskFlow connection and its log filter."""

import logging

import pytest
from taskflow import exceptions as tf_exc
from taskflow.types import failure

from octavia_workflows import exceptions
from octavia_workflows.engine import tfstore


def _record(name, exc, msg='atom post-completion failed'):
    return logging.LogRecord(name, logging.ERROR, __file__, 1, msg, (),
                             (type(exc), exc, None))


def _claim_lost():
    try:
        try:
            raise exceptions.ClaimLost('job j is no longer claimed by c')
        except exceptions.ClaimLost as exc:
            raise RuntimeError('saving failed') from exc
    except RuntimeError as exc:
        return exc


def test_fenced_write_is_one_info_line_from_the_first_logger():
    first = tfstore._FencedWriteFilter(first=True)
    record = _record('taskflow.engines.action_engine.builder',
                     _claim_lost())
    assert first.filter(record)
    assert record.levelno == logging.INFO and record.exc_info is None
    assert 'claim is lost' in record.getMessage()
    other = tfstore._FencedWriteFilter(first=False)
    assert not other.filter(_record('oslo_utils.excutils', _claim_lost()))


def test_wrapped_claim_lost_failures_are_quietened_too():
    try:
        raise exceptions.ClaimLost('gone')
    except exceptions.ClaimLost:
        lost = failure.Failure()
    wrapped = tf_exc.WrappedFailure([lost, lost])
    assert tfstore._about_claim_lost(
        _record('taskflow.engines.action_engine.engine', wrapped))


def test_other_errors_keep_their_traceback():
    quiet = tfstore._FencedWriteFilter(first=True)
    record = _record('taskflow.engines.action_engine.builder',
                     ValueError('a real bug'))
    assert quiet.filter(record)
    assert record.levelno == logging.ERROR and record.exc_info


def test_fenced_connection_refuses_writes_but_not_reads():
    calls = []

    class Inner:
        def update_atom_details(self, detail):
            calls.append(('write', detail))
            return detail

        def get_logbook(self, uuid, lazy=False):
            calls.append(('read', uuid))
            return uuid

    lost = []

    def fence():
        if lost:
            raise exceptions.ClaimLost('lost')

    conn = tfstore.FencedConnection(Inner(), fence)
    assert conn.update_atom_details('a') == 'a'
    lost.append(True)
    with pytest.raises(exceptions.ClaimLost):
        conn.update_atom_details('b')
    assert conn.get_logbook('book') == 'book'
    assert calls == [('write', 'a'), ('read', 'book')]
