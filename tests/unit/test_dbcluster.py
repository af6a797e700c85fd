"""The persistence URL's host list and the records' retry rules.

The retries run against real servers in the chaos tier (a Galera node
killed under a job, conflicting writers on two nodes); here the rules
that need no server: how a URL's hosts are read, which errors count as
rolled back or as a lost connection, and that a target update that had
already landed is recognised on an SQLite store.
"""

import pymysql
import pytest
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from octavia_workflows import exceptions, states
from octavia_workflows.engine import dbcluster, persistence


def _url(text):
    return sa.engine.make_url(text)


def test_a_listed_host_url_is_read_in_order_with_default_ports():
    url, hosts = dbcluster.parse_hosts(_url(
        'mysql+pymysql://u:p@/db?host=db1:3307&host=db2&charset=utf8mb4'))
    assert hosts == [('db1', 3307), ('db2', 3306)]
    assert url.database == 'db' and url.query == {'charset': 'utf8mb4'}
    assert dbcluster.parse_hosts(_url('mysql+pymysql://u:p@db/x'))[1] is None
    # PostgreSQL's own host list is libpq's: left as it is.
    pg = _url('postgresql+psycopg://u:p@/db?host=a:1&host=b:2')
    assert dbcluster.parse_hosts(pg) == (pg, None)


def test_a_bad_listed_port_is_a_one_line_config_error():
    with pytest.raises(exceptions.ConfigError) as err:
        persistence.Persistence('mysql+pymysql://u:secret@/db?host=a:x')
    assert 'port is not a number' in str(err.value)
    assert 'secret' not in str(err.value)
    assert '\n' not in str(err.value)


def _mysql_error(code, message='x', invalidated=False):
    return sa_exc.OperationalError('UPDATE', {}, pymysql.err.OperationalError(
        code, message), connection_invalidated=invalidated)


class _PgError(Exception):
    def __init__(self, sqlstate):
        super().__init__(sqlstate)
        self.sqlstate = sqlstate


@pytest.mark.parametrize('error, kind', [
    (_mysql_error(1213, 'Deadlock found'), 'rolled_back'),
    (_mysql_error(1205, 'Lock wait timeout'), 'rolled_back'),
    (sa_exc.OperationalError('x', {}, _PgError('40001')), 'rolled_back'),
    (sa_exc.OperationalError('x', {}, _PgError('40P01')), 'rolled_back'),
    (_mysql_error(2013, 'Lost connection', invalidated=True), 'gone'),
    (_mysql_error(1047, 'WSREP has not yet prepared node'), 'gone'),
    # every listed host refused: an outage, not something to retry here
    (_mysql_error(2003, "Can't connect"), None),
    (_mysql_error(1045, 'Access denied'), None),
    (sa_exc.IntegrityError('x', {}, Exception('duplicate')), None),
])
def test_errors_are_classified(error, kind):
    assert dbcluster.classify(error) == kind


class _Flaky:
    """Records whose named method first raises the given errors."""

    def __init__(self, records, name, errors):
        self._records = records
        self._name = name
        self._errors = list(errors)
        self.calls = 0

    def __getattr__(self, name):
        method = getattr(self._records, name)
        if name != self._name:
            return method

        def flaky(*args, **kwargs):
            self.calls += 1
            if self._errors:
                raise self._errors.pop(0)
            return method(*args, **kwargs)

        return flaky


@pytest.fixture
def store(tmp_path):
    store = persistence.Persistence(f'sqlite:///{tmp_path}/p.sqlite')
    store.records.create_schema()         # our tables; no TaskFlow here
    store.records.create_job('j', 'selftest', {}, 'board')
    store.records.save_plan('j', [{'target': 't', 'action': 'step'}], [])
    yield store
    store.close()


def _retrying(store, name, errors):
    flaky = _Flaky(store.records._records, name, errors)
    return dbcluster.RetryingRecords(flaky, store.engine), flaky


def test_a_rolled_back_write_runs_again_exactly_once_more(store):
    records, flaky = _retrying(store, 'add_attempt',
                               [_mysql_error(1213, 'Deadlock found')])
    assert records.add_attempt('j') == 1
    assert flaky.calls == 2
    assert store.records.get_job('j')['attempts'] == 1


def test_a_lost_connection_is_not_retried_for_a_compare_and_set(store):
    records, flaky = _retrying(store, 'transition', [_mysql_error(
        2013, 'Lost connection', invalidated=True)])
    with pytest.raises(sa_exc.OperationalError):
        records.transition('j', states.RUNNING, owner='me')
    assert flaky.calls == 1


def test_a_lost_connection_is_retried_for_a_read(store):
    records, flaky = _retrying(store, 'get_job', [_mysql_error(
        2013, 'Lost connection', invalidated=True)])
    assert records.get_job('j')['id'] == 'j'
    assert flaky.calls == 2


def test_a_target_update_that_had_landed_is_recognised(store):
    records = store.records
    records.update_target('j', 't', state=states.RUNNING, add_attempt=True)
    records.update_target('j', 't', state=states.DONE,
                          merge_details={'verified': 1.0})
    # the same update again (its first try's reply was lost): landed
    row = records.update_target('j', 't', state=states.DONE,
                                merge_details={'verified': 1.0})
    assert row['state'] == states.DONE
    # a different one is still refused
    with pytest.raises(states.InvalidTransition):
        records.update_target('j', 't', state=states.DONE,
                              merge_details={'verified': 2.0})
    with pytest.raises(states.InvalidTransition):
        records.update_target('j', 't', state=states.PENDING)


def test_the_host_that_answered_last_is_tried_first():
    hosts = dbcluster.HostList([('a', 1), ('b', 2), ('c', 3)])
    hosts.worked(('b', 2))
    assert hosts.order() == [('b', 2), ('a', 1), ('c', 3)]
    hosts.worked(('b', 2))
    assert hosts.order() == [('b', 2), ('a', 1), ('c', 3)]
