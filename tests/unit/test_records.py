"""Target records on a real SQLite store: one transaction per update."""

import datetime

import pytest

from octavia_workflows.engine import persistence as pers


@pytest.fixture
def records(tmp_path):
    store = pers.Persistence(f'sqlite:///{tmp_path}/p.sqlite')
    store.records.create_schema()
    store.records.create_job('j1', 'rotate-images', {}, 'board')
    store.records.save_plan('j1', [
        {'target': 't1', 'action': 'lb-failover', 'details': {'lb': 'l1'}}],
        [])
    yield store.records
    store.engine.dispose()


def test_update_returns_the_row_before_and_merges_details(records):
    before = records.update_target('j1', 't1', state='RUNNING', start=True,
                                   add_attempt=True,
                                   merge_details={'started': 1.0})
    assert before['state'] == 'PENDING'
    assert before['started_at'] is None
    row = records.get_target('j1', 't1')
    assert row['state'] == 'RUNNING'
    assert row['attempts'] == 1
    assert row['details'] == {'lb': 'l1', 'started': 1.0}
    assert row['started_at'] is not None


def test_start_keeps_the_first_start_time(records):
    records.update_target('j1', 't1', state='RUNNING', start=True)
    first = records.get_target('j1', 't1')['started_at']
    before = records.update_target('j1', 't1', state='RUNNING', start=True,
                                   add_attempt=True)
    assert before['started_at'] == first
    assert records.get_target('j1', 't1')['started_at'] == first


def test_update_touches_the_job(records):
    old = datetime.datetime(2000, 1, 1)
    records.update_job('j1', updated_at=old)
    records.update_target('j1', 't1', merge_details={'intent': 2.0})
    assert records.get_job('j1')['updated_at'] > old


def test_unknown_target_changes_nothing(records):
    assert records.update_target('j1', 'nope', state='DONE') is None
    assert records.get_target('j1', 't1')['state'] == 'PENDING'


def test_a_job_whose_submit_died_before_posting_can_be_cancelled(tmp_path):
    """``submit`` killed between recording a board job and posting it
    leaves a PENDING record with no posting: ``cancel`` settles it
    without the jobboard (nothing there to remove)."""
    from octavia_workflows.conf import load
    from octavia_workflows.engine import jobs

    conf = load([])
    conf.set_override('state_path', str(tmp_path))
    store = pers.Persistence(f'sqlite:///{tmp_path}/s.sqlite')
    store.upgrade()
    store.records.create_job('j2', 'selftest', {'steps': 1}, 'board')
    try:
        job = jobs.JobService(conf, store).cancel('j2')
    finally:
        store.close()
    assert job['state'] == 'CANCELLED'
    assert job['board_job'] is None


def test_skip_pending_skips_only_pending_targets_of_that_job(records):
    records.create_job('j2', 'rotate-images', {}, 'board')
    records.save_plan('j2', [
        {'target': t, 'action': 'lb-failover', 'details': {}}
        for t in ('t1', 't2', 't3', 't4')], [])
    records.update_target('j2', 't2', state='RUNNING')
    records.update_target('j2', 't3', state='DONE')
    old = datetime.datetime(2000, 1, 1)
    records.update_job('j2', updated_at=old)
    assert records.skip_pending('j2', 'job cancelled') == 2
    rows = {r['target']: (r['state'], r['error'])
            for r in records.get_targets('j2')}
    assert rows == {'t1': ('SKIPPED', 'job cancelled'),
                    't2': ('RUNNING', None), 't3': ('DONE', None),
                    't4': ('SKIPPED', 'job cancelled')}
    assert records.get_target('j1', 't1')['state'] == 'PENDING'
    assert records.get_job('j2')['updated_at'] > old
    assert records.skip_pending('j2', 'again') == 0


def test_summaries_carry_every_column_and_only_a_pending_wait(records):
    records.create_job('j2', 'rotate-images', {}, 'board')
    records.save_plan('j2', [
        {'target': f't{n}', 'action': 'lb-failover',
         'details': {'lb': f'l{n}', 'amphorae': ['a', 'b']}}
        for n in range(4)], [])
    records.update_target('j2', 't0', state='RUNNING', start=True,
                          merge_details={'waiting': 'stale'})
    records.update_target('j2', 't1', merge_details={
        'waiting': 'waiting for the fleet budget'})
    records.update_target('j2', 't2', error='boom', state='FAILED')
    full = records.get_targets('j2')
    light = records.target_summaries('j2')
    assert [r['target'] for r in light] == ['t0', 't1', 't2', 't3']
    for whole, summary in zip(full, light, strict=True):
        assert {k: v for k, v in whole.items() if k != 'details'} == {
            k: v for k, v in summary.items() if k != 'details'}
    assert [r['details'] for r in light] == [
        {}, {'waiting': 'waiting for the fleet budget'}, {}, {}]
