"""Approval gates: the state logic and the operator's side (approve,
reject, resume) on a real SQLite store."""

import json

import pytest

from octavia_workflows import exceptions
from octavia_workflows.conf import load
from octavia_workflows.engine import gates, jobs
from octavia_workflows.engine import persistence as pers
from octavia_workflows.flows import selftest

# -- pure state logic ------------------------------------------------------


def test_empty_and_legacy_content():
    assert gates.parse(None) == gates.empty()
    assert gates.dump(gates.empty()) is None
    legacy = gates.parse('upgrade now')
    assert gates.message(legacy) == 'upgrade now'
    assert not gates.approved(legacy, 'gate')
    assert gates.parse('[1, 2]')['waiting']['message'] == '[1, 2]'


def test_ask_approve_round_trip():
    state = gates.ask(gates.empty(), 'g1', 'do it', '2026-01-01T00:00:00Z',
                      owner='c1', if_rejected='start by hand')
    state = gates.parse(gates.dump(state))
    assert gates.message(state) == 'do it'
    assert not gates.approved(state, 'g1')
    new, key = gates.approve(state, 'T', 'me@here')
    assert key == 'g1'
    assert gates.message(new) is None
    assert gates.approved(new, 'g1')
    assert not gates.approved(new, 'g2')
    # The original state was not modified in place.
    assert gates.message(state) == 'do it'
    # Asking an approved gate again is a no-op: it never re-asks.
    again = gates.ask(new, 'g1', 'do it', 'T2')
    assert gates.message(again) is None


def test_approve_refuses_nothing_waiting_or_other_key():
    with pytest.raises(exceptions.InvalidJobState):
        gates.approve(gates.empty(), 'T', 'me')
    state = gates.ask(gates.empty(), 'g1', 'm', 'T')
    with pytest.raises(exceptions.InvalidJobState, match="'g1'"):
        gates.approve(state, 'T', 'me', key='g2')


def test_reject_reason_names_gate_operator_and_advice():
    state = gates.ask(gates.empty(), 'upgrade', 'upgrade packages', 'T',
                      if_rejected='the services are stopped')
    new, text = gates.reject(state, 'T2', 'ops@ctl1', 'bad packages')
    assert text == ('rejected at gate upgrade by ops@ctl1 (bad packages): '
                    'upgrade packages. the services are stopped')
    assert new['rejected']['gate'] == 'upgrade'
    assert gates.message(new) is None
    assert not gates.approved(new, 'upgrade')
    with pytest.raises(exceptions.InvalidJobState):
        gates.reject(new, 'T3', 'ops')


# -- the operator's side on a real store -----------------------------------


@pytest.fixture
def service(tmp_path):
    conf = load([])
    conf.set_override('state_path', str(tmp_path))
    store = pers.Persistence(f'sqlite:///{tmp_path}/p.sqlite')
    store.upgrade()
    store.check()
    yield jobs.JobService(conf, store)
    store.close()


def _paused_at_gate(service, key='selftest-gate', message='go on?'):
    job_id = service.create(selftest.WORKFLOW, {'steps': 2})
    state = gates.ask(gates.empty(), key, message, 'T',
                      if_rejected='nothing to undo')
    service.records.save_plan(job_id, [
        {'target': 'step-1', 'action': 'step'},
        {'target': 'step-2', 'action': 'step'}], [])
    service.records.transition(job_id, 'PAUSED',
                               gate=gates.dump(state),
                               reason='waiting for approval')
    return job_id


def test_show_has_gate_message_only_while_paused(service):
    job_id = _paused_at_gate(service)
    view = service.get(job_id)
    assert view['gate'] == 'go on?'
    assert view['approvals'] == []
    service.records.transition(job_id, 'RUNNING')
    assert service.get(job_id)['gate'] is None


def test_approve_records_answer_and_resumes(service):
    job_id = _paused_at_gate(service)
    job = service.approve(job_id[:8])
    assert job['id'] == job_id
    stored = gates.parse(service.records.get_job(job_id)['gate'])
    assert gates.approved(stored, 'selftest-gate')
    assert stored['waiting'] is None
    view = service.get(job_id)
    assert view['gate'] is None
    assert [a['gate'] for a in view['approvals']] == ['selftest-gate']
    assert '@' in view['approvals'][0]['by']


def test_approve_wrong_gate_changes_nothing(service):
    job_id = _paused_at_gate(service)
    before = service.records.get_job(job_id)
    with pytest.raises(exceptions.InvalidJobState, match='selftest-gate'):
        service.approve(job_id, gate='other')
    after = service.records.get_job(job_id)
    assert after['gate'] == before['gate']
    assert after['state'] == 'PAUSED'


def test_approve_and_reject_refuse_jobs_not_at_a_gate(service):
    job_id = service.create(selftest.WORKFLOW, {'steps': 1})
    for call in (service.approve, service.reject):
        with pytest.raises(exceptions.InvalidJobState,
                           match='not waiting at an approval gate'):
            call(job_id)
    service.records.transition(job_id, 'PAUSED',
                               reason='paused by the operator')
    with pytest.raises(exceptions.InvalidJobState):
        service.approve(job_id)
    assert service.records.get_job(job_id)['state'] == 'PAUSED'
    with pytest.raises(exceptions.JobNotFound):
        service.approve('no-such-job')


def test_resume_of_a_gated_job_approves_it(service):
    job_id = _paused_at_gate(service)
    service.resume(job_id)
    assert gates.approved(gates.parse(
        service.records.get_job(job_id)['gate']), 'selftest-gate')


def test_reject_cancels_with_reason_and_skips_pending(service):
    job_id = _paused_at_gate(service)
    service.records.update_target(job_id, 'step-1', state='DONE')
    job = service.reject(job_id, reason='wrong window')
    assert job['state'] == 'CANCELLED'
    assert job['reason'].startswith('rejected at gate selftest-gate by ')
    assert job['reason'].endswith(
        '(wrong window): go on?. nothing to undo')
    assert job['finished_at'] is not None
    states = {t['target']: (t['state'], t['error'])
              for t in service.records.get_targets(job_id)}
    assert states == {'step-1': ('DONE', None),
                      'step-2': ('SKIPPED', 'job rejected at a gate')}
    assert json.loads(job['gate'])['rejected']['reason'] == 'wrong window'
    assert service.get(job_id)['gate'] is None


def test_cancel_keeps_the_approval_history(service):
    job_id = _paused_at_gate(service)
    service.approve(job_id)
    service.records.transition(job_id, 'PAUSED')
    service.cancel(job_id)
    job = service.records.get_job(job_id)
    assert job['state'] == 'CANCELLED'
    assert gates.approved(gates.parse(job['gate']), 'selftest-gate')


# -- wait output -------------------------------------------------------------


def _view(state, gate=None, reason=None):
    return {'id': 'J1', 'state': state, 'owner': 'c1', 'reason': reason,
            'gate': gate, 'targets': [],
            'progress': {'total': 2, 'done': 1, 'failed': 0, 'skipped': 0,
                         'running': 0}}


def test_follow_stops_at_a_gate_and_prints_how_to_answer():
    import io

    from octavia_workflows.cli import progress, submit

    views = iter([_view('RUNNING'),
                  _view('PAUSED', 'upgrade now', 'waiting for approval at '
                        'gate g1')])
    out = io.StringIO()
    last, timed_out = progress.follow(lambda: next(views), stream=out,
                                      interval=0, tty=False, timeout=30)
    assert not timed_out and last['state'] == 'PAUSED'
    assert out.getvalue().splitlines() == [
        'job J1: RUNNING on c1',
        'job J1: PAUSED (waiting for approval at gate g1)',
        'approval needed: upgrade now',
        'answer with "octavia-workflow approve J1" or "octavia-workflow '
        'reject J1"']
    assert submit.exit_code(last) == 4
    assert submit.exit_code(_view('PAUSED', reason='paused')) == 1
    assert 'approval needed: upgrade now' in progress.bar_line(last, None)


def test_follow_stops_when_the_job_paused_itself_and_exits_5():
    import io

    from octavia_workflows import states
    from octavia_workflows.cli import progress, submit

    reason = 'circuit breaker: 2 target(s) failed (max_failures=2)'
    paused = dict(_view('PAUSED', reason=reason),
                  paused_by=states.paused_by('PAUSED', reason, False))
    assert paused['paused_by'] == 'job'
    views = iter([_view('RUNNING'), paused])
    out = io.StringIO()
    last, timed_out = progress.follow(lambda: next(views), stream=out,
                                      interval=0, tty=False, timeout=30)
    assert not timed_out and last is paused
    lines = out.getvalue().splitlines()
    assert lines[1:] == [
        f'job J1: PAUSED ({reason})',
        f'the job paused itself: {reason}',
        'see "octavia-workflow report J1"; continue with "octavia-workflow '
        'resume J1" or end it with "octavia-workflow cancel J1"']
    assert submit.exit_code(last) == 5


def test_who_paused_a_job():
    from octavia_workflows import states

    assert states.paused_by('PAUSED', states.OPERATOR_PAUSE, False) == \
        'operator'
    assert states.paused_by('PAUSED', 'interrupted (conductor stopping); '
                            'continue with ...', False) == 'operator'
    assert states.paused_by('PAUSED', 'waiting for approval at gate g',
                            True) == 'gate'
    assert states.paused_by('PAUSED', 'circuit breaker: 1 target(s) '
                            'failed', False) == 'job'
    assert states.paused_by('RUNNING', 'circuit breaker', False) is None
