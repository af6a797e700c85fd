"""``db upgrade`` on PostgreSQL: from an empty database, and from the
store of an earlier release.

The earlier release's store is the one kept in ``data/upgrade`` (a
``selftest`` job paused at its approval gate after step 2 of 3, written
by that release on SQLite), moved to PostgreSQL as that release had it:
TaskFlow's tables made by TaskFlow's own migrations, our tables with the
columns and indexes that release created (read off the stored file), and
every row copied over.  The current code upgrades the schema and
``approve`` finishes the job from its saved logbook: steps 1 and 2 are
not run again.
"""

import pathlib

from clihelp import run, write_conf
import pytest
import sqlalchemy as sa
from taskflow.persistence.backends.sqlalchemy import tables as tf_tables

from octavia_workflows.engine import persistence as pers
from octavia_workflows.engine import records as rec

pytestmark = pytest.mark.functional

DATA = pathlib.Path(__file__).parent / 'data' / 'upgrade'
#: TaskFlow's tables, parents first.
TASKFLOW_TABLES = ('logbooks', 'flowdetails', 'atomdetails')


def _conf(tmp_path, url):
    return write_conf(tmp_path / 'ow.conf', DEFAULT={
        'state_path': str(tmp_path)}, task_flow={
        'persistence_connection': url, 'jobboard_expiration_time': 2})


def _version_and_tables(url):
    engine = sa.create_engine(url)
    try:
        names = set(sa.inspect(engine).get_table_names())
        return rec.Records(engine).schema_version(), names
    finally:
        engine.dispose()


def test_db_upgrade_of_an_empty_database(tmp_path, postgresql_server,
                                         namespace):
    url = postgresql_server.create_database(namespace)
    conf = _conf(tmp_path, url)
    proc = run(conf, 'list')
    assert proc.returncode == 2
    assert 'db upgrade' in proc.stderr and postgresql_server.password \
        not in proc.stderr
    run(conf, 'db', 'upgrade', check=0)
    run(conf, 'db', 'upgrade', check=0)         # a second run is a no-op
    version, names = _version_and_tables(url)
    assert version == rec.SCHEMA_VERSION
    assert {'ow_jobs', 'ow_targets', 'ow_schema', *TASKFLOW_TABLES} <= names
    assert run(conf, 'list', '-f', 'value', '-c', 'id',
               check=0).stdout.strip() == ''


def _move_to_postgresql(saved, url):
    """The earlier release's store ``saved`` (SQLite) on PostgreSQL."""
    source = sa.create_engine(f'sqlite:///{saved}')
    target = sa.create_engine(url)
    store = pers.Persistence(url)
    try:
        # TaskFlow's schema: its own migrations, as that release ran them.
        store.taskflow_backend().get_connection().upgrade()
        old = sa.MetaData()
        old.reflect(source)
        ours = sa.MetaData()
        for table in old.sorted_tables:
            if table.name.startswith('ow_'):
                copy = table.to_metadata(ours)
                for column in copy.columns:
                    column.type = column.type.as_generic()
        ours.create_all(target)
        # TaskFlow's rows through its own table types (its JSON columns
        # are text on SQLite, native JSON on PostgreSQL).
        taskflow = tf_tables.fetch(sa.MetaData())
        tables = [getattr(taskflow, name) for name in TASKFLOW_TABLES]
        tables += [ours.tables[name] for name in
                   ('ow_schema', 'ow_jobs', 'ow_targets')]
        with source.connect() as src, target.begin() as dst:
            for table in tables:
                rows = [dict(r._mapping) for r in src.execute(table.select())]
                if rows:
                    dst.execute(table.insert(), rows)
    finally:
        store.close()
        source.dispose()
        target.dispose()


def _targets(url, job_id):
    engine = sa.create_engine(url)
    try:
        return {t['target']: t for t in
                rec.Records(engine).get_targets(job_id)}
    finally:
        engine.dispose()


@pytest.mark.parametrize('saved', sorted(
    p.name for p in DATA.glob('*.sqlite')) if DATA.is_dir() else [])
def test_job_saved_by_an_earlier_release_finishes_on_postgresql(
        tmp_path, postgresql_server, namespace, saved):
    url = postgresql_server.create_database(namespace)
    _move_to_postgresql(DATA / saved, url)
    conf = _conf(tmp_path, url)
    run(conf, 'db', 'upgrade', check=0)
    version, _ = _version_and_tables(url)
    assert version == rec.SCHEMA_VERSION
    [job_id] = run(conf, 'list', '-f', 'value', '-c', 'id',
                   check=0).stdout.split()
    before = _targets(url, job_id)
    assert [before[f'step-{n}']['state'] for n in (1, 2, 3)] == [
        'DONE', 'DONE', 'PENDING']
    shown = run(conf, 'show', job_id, '-f', 'value', '-c', 'state',
                check=0).stdout.split()
    assert shown == ['PAUSED']
    proc = run(conf, 'approve', job_id, '-f', 'value', '-c', 'state')
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ['SUCCESS']
    after = _targets(url, job_id)
    for n in (1, 2):
        step = f'step-{n}'
        assert after[step]['attempts'] == 1, step      # not run again
        assert after[step]['finished_at'] == before[step]['finished_at']
    assert after['step-3']['state'] == 'DONE'
    assert after['step-3']['attempts'] == 1
