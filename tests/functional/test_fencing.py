"""The fencing token, on SQLite, MariaDB and PostgreSQL: once another
conductor took the job over, no write of the old run lands -- neither a
new one nor one already in flight when the takeover happened."""

import pytest
import sqlalchemy as sa
from taskflow import exceptions as tf_exc
from taskflow.persistence import models

from octavia_workflows import exceptions, states
from octavia_workflows.engine import fencing
from octavia_workflows.engine import persistence as pers
from octavia_workflows.engine import records as rec

pytestmark = pytest.mark.functional


def _url(request, kind, tmp_path, namespace):
    if kind == 'sqlite':
        return f'sqlite:///{tmp_path}/persistence.sqlite'
    return request.getfixturevalue(f'{kind}_server').create_database(
        namespace)


@pytest.fixture
def url(request, store, tmp_path, namespace):
    return _url(request, store, tmp_path, namespace)


@pytest.fixture(params=['mariadb', 'postgresql'])
def server_url(request, tmp_path, namespace):
    return _url(request, request.param, tmp_path, namespace)


class Claim:
    def __init__(self, owner):
        self.owner = owner
        self.why = None

    def mark_lost(self, why):
        self.why = why


def _job(url):
    store = pers.Persistence(url)
    store.upgrade()
    store.records.create_job('job-1', 'selftest', {'steps': 2}, 'board')
    store.records.save_plan('job-1', [
        {'target': 'step-1', 'action': 'step', 'details': {}},
        {'target': 'step-2', 'action': 'step', 'details': {}}], [])
    return store


def test_a_takeover_refuses_the_old_runs_writes(url):
    store = _job(url)
    old_claim, new_claim = Claim('old'), Claim('new')
    old = fencing.open_run(store, 'job-1', old_claim)
    try:
        old.records.update_target('job-1', 'step-1', state=states.RUNNING)
        new = fencing.open_run(store, 'job-1', new_claim)
        assert new.token == old.token + 1
        with pytest.raises(exceptions.ClaimLost):
            old.records.update_target('job-1', 'step-1',
                                      state=states.DONE)
        assert 'taken over' in old_claim.why
        # TaskFlow's logbook writes go through the same check
        with pytest.raises((exceptions.ClaimLost, tf_exc.StorageFailure)):
            old.taskflow_backend().get_connection().save_logbook(
                models.LogBook('job-1-book', uuid='job-1-book'))
        with pytest.raises(tf_exc.NotFound):
            store.taskflow_backend().get_connection().get_logbook(
                'job-1-book')
        new.records.update_target('job-1', 'step-1', state=states.DONE)
        new.close()
    finally:
        old.close()
    row = store.records.get_target('job-1', 'step-1')
    assert row['state'] == states.DONE
    store.close()


def test_a_write_in_flight_at_the_takeover_is_refused(server_url):
    """The old run's statement reached the database before the takeover
    but had not committed (a partition held its commit back): when the
    commit arrives, the token has moved and nothing lands."""
    store = _job(server_url)
    old = fencing.open_run(store, 'job-1', Claim('old'))
    try:
        conn = old.engine.connect()
        transaction = conn.begin()
        conn.execute(rec.targets.update().where(
            rec.targets.c.job_id == 'job-1',
            rec.targets.c.target == 'step-2').values(
                state=states.FAILED, error='stale write'))
        fencing.open_run(store, 'job-1', Claim('new')).close()
        with pytest.raises(exceptions.ClaimLost):
            transaction.commit()
        conn.close()
    finally:
        old.close()
    row = store.records.get_target('job-1', 'step-2')
    assert (row['state'], row['error']) == (states.PENDING, None)
    with store.engine.connect() as check:
        assert check.execute(sa.select(rec.jobs.c.fence)).scalar() == 2
    store.close()
