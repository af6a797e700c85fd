"""Job and target records in the persistence database.

TaskFlow's logbooks hold each step's saved state, which is what makes a
run resumable.  These two tables hold what operators read: one row per
job (workflow, parameters, state, owner, control requests) and one row
per target of its frozen plan (state, attempts, times, error, details).
They are small, indexed, and queried without loading any logbook, so
``list`` over thousands of jobs stays fast.

Values are JSON-simple; no credential is ever stored here (only the
cloud's name).  Every method raises SQLAlchemy errors unchanged; callers
at the boundary translate them.
"""

import datetime
import json

import sqlalchemy as sa

from octavia_workflows import states

#: Version 2 added ``ow_jobs.fence`` (the fencing token), ``ow_jobs.schedule``
#: (the schedule that posted the job) and the ``ow_schedules`` table.
SCHEMA_VERSION = 2

#: The action of targets the plan skipped (they get no step in the flow).
SKIP_ACTION = 'skip'

metadata = sa.MetaData()

schema_table = sa.Table(
    'ow_schema', metadata,
    sa.Column('version', sa.Integer, primary_key=True, autoincrement=False),
)

jobs = sa.Table(
    'ow_jobs', metadata,
    sa.Column('id', sa.String(36), primary_key=True),
    sa.Column('workflow', sa.String(64), nullable=False),
    sa.Column('state', sa.String(16), nullable=False, index=True),
    sa.Column('mode', sa.String(16), nullable=False),
    sa.Column('owner', sa.String(255)),
    sa.Column('cloud', sa.String(255)),
    sa.Column('parameters', sa.Text, nullable=False),
    sa.Column('created_at', sa.DateTime, nullable=False, index=True),
    sa.Column('updated_at', sa.DateTime, nullable=False),
    sa.Column('started_at', sa.DateTime),
    sa.Column('finished_at', sa.DateTime),
    sa.Column('heartbeat_at', sa.DateTime),
    sa.Column('reason', sa.Text),
    sa.Column('control', sa.String(16), nullable=False, default=''),
    sa.Column('gate', sa.Text),
    sa.Column('attempts', sa.Integer, nullable=False, default=0),
    sa.Column('not_before', sa.DateTime),
    sa.Column('board_job', sa.String(64)),
    sa.Column('planned', sa.Boolean, nullable=False, default=False),
    # Advanced by every conductor that starts running the job; each of
    # the run's writes checks it in its own transaction (version 2).
    sa.Column('fence', sa.Integer, nullable=False, default=0,
              server_default='0'),
    sa.Column('schedule', sa.String(64)),
)

#: Columns added to ``ow_jobs`` after version 1, as (name, DDL type).
_ADDED_JOB_COLUMNS = (
    ('fence', 'INTEGER NOT NULL DEFAULT 0'),
    ('schedule', 'VARCHAR(64)'),
)

schedules = sa.Table(
    'ow_schedules', metadata,
    sa.Column('name', sa.String(64), primary_key=True),
    sa.Column('workflow', sa.String(64), nullable=False),
    sa.Column('cron', sa.String(255), nullable=False),
    sa.Column('parameters', sa.Text, nullable=False),
    sa.Column('cloud', sa.String(255)),
    sa.Column('overlap', sa.String(16), nullable=False),
    sa.Column('pause_on_failure', sa.Boolean, nullable=False, default=False),
    sa.Column('paused', sa.Boolean, nullable=False, default=False),
    sa.Column('paused_reason', sa.Text),
    # The next fire time not yet handled; moved on by compare-and-set.
    sa.Column('next_fire', sa.DateTime, nullable=False),
    sa.Column('last_fire', sa.DateTime),
    sa.Column('last_job', sa.String(36)),
    sa.Column('skipped', sa.Integer, nullable=False, default=0),
    sa.Column('last_skipped', sa.DateTime),
    sa.Column('created_at', sa.DateTime, nullable=False),
    sa.Column('updated_at', sa.DateTime, nullable=False),
)

targets = sa.Table(
    'ow_targets', metadata,
    sa.Column('job_id', sa.String(36), primary_key=True),
    sa.Column('target', sa.String(255), primary_key=True),
    sa.Column('seq', sa.Integer, nullable=False),
    sa.Column('action', sa.String(32), nullable=False),
    sa.Column('state', sa.String(16), nullable=False),
    sa.Column('attempts', sa.Integer, nullable=False, default=0),
    sa.Column('started_at', sa.DateTime),
    sa.Column('finished_at', sa.DateTime),
    sa.Column('error', sa.Text),
    sa.Column('details', sa.Text),
    sa.Index('ow_targets_job_seq', 'job_id', 'seq'),
)


def utcnow():
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


def isoformat(value):
    return value.strftime('%Y-%m-%dT%H:%M:%SZ') if value else None


def _job_row(row):
    job = dict(row._mapping)
    job['parameters'] = json.loads(job['parameters'])
    return job


def _target_row(row):
    target = dict(row._mapping)
    target['details'] = json.loads(target['details'] or '{}')
    return target


class Records:
    """Reads and writes the job and target tables."""

    def __init__(self, engine):
        self.engine = engine

    # -- schema -----------------------------------------------------------
    def create_schema(self):
        """Create the tables, or bring a version-1 schema to this one."""
        metadata.create_all(self.engine)
        with self.engine.begin() as conn:
            current = conn.execute(sa.select(sa.func.max(
                schema_table.c.version))).scalar()
            if current is None:
                conn.execute(schema_table.insert().values(
                    version=SCHEMA_VERSION))
                return
            if current < 2:
                have = {c['name'] for c in
                        sa.inspect(conn).get_columns(jobs.name)}
                for name, ddl in _ADDED_JOB_COLUMNS:
                    if name not in have:
                        conn.execute(sa.text(f'ALTER TABLE {jobs.name} '
                                             f'ADD COLUMN {name} {ddl}'))
            if current < SCHEMA_VERSION:
                conn.execute(schema_table.insert().values(
                    version=SCHEMA_VERSION))

    def schema_version(self):
        with self.engine.connect() as conn:
            return conn.execute(sa.select(sa.func.max(
                schema_table.c.version))).scalar()

    # -- jobs -------------------------------------------------------------
    def create_job(self, job_id, workflow, parameters, mode, cloud=None):
        now = utcnow()
        with self.engine.begin() as conn:
            conn.execute(jobs.insert().values(
                id=job_id, workflow=workflow, state=states.PENDING, mode=mode,
                cloud=cloud, parameters=json.dumps(parameters, sort_keys=True),
                created_at=now, updated_at=now, control=states.NO_CONTROL,
                attempts=0, planned=False))

    def delete_job(self, job_id):
        with self.engine.begin() as conn:
            conn.execute(targets.delete().where(targets.c.job_id == job_id))
            conn.execute(jobs.delete().where(jobs.c.id == job_id))

    def get_job(self, job_id):
        """The job's row as a dict, or None."""
        with self.engine.connect() as conn:
            row = conn.execute(jobs.select().where(
                jobs.c.id == job_id)).first()
        return _job_row(row) if row else None

    def find_jobs(self, prefix):
        """Ids of jobs whose id starts with ``prefix`` (at most 2)."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(jobs.c.id).where(
                jobs.c.id.like(prefix.replace('%', '') + '%')).limit(2))
            return [r.id for r in rows]

    def list_jobs(self, include_finished=False, limit=None):
        query = jobs.select().order_by(jobs.c.created_at.desc())
        if not include_finished:
            query = query.where(jobs.c.state.notin_(states.FINISHED))
        if limit:
            query = query.limit(limit)
        with self.engine.connect() as conn:
            return [_job_row(r) for r in conn.execute(query)]

    def update_job(self, job_id, expect_states=None, expect_owner=None,
                   **values):
        """Update a job's other columns; return True if a row matched.

        ``expect_states``/``expect_owner`` make it a compare-and-set: the
        row changes only while it is still in one of those states or
        owned by that owner.  The state itself changes only through
        :meth:`transition`.
        """
        if 'state' in values:
            raise states.InvalidTransition(
                'a job state changes only through Records.transition()')
        return self._update_job(job_id, expect_states, expect_owner, values)

    def transition(self, job_id, to, expect=None, expect_owner=None,
                   **values):
        """Move a job to state ``to``; return True if it moved.

        One compare-and-set statement: the row changes only while its
        state is one that may move to ``to``
        (:data:`~octavia_workflows.states.ALLOWED_JOB_TRANSITIONS`),
        narrowed to ``expect`` when given, and while ``expect_owner``
        (when given) owns it.  Other ``values`` are written with it.

        :raises InvalidTransition: no state in ``expect`` may move to
            ``to`` (a bug: nothing is written).
        """
        sources = states.job_sources(to, expect)
        values['state'] = to
        return self._update_job(job_id, sources, expect_owner, values)

    def _update_job(self, job_id, expect_states, expect_owner, values):
        values['updated_at'] = utcnow()
        query = jobs.update().where(jobs.c.id == job_id)
        if expect_states:
            query = query.where(jobs.c.state.in_(expect_states))
        if expect_owner is not None:
            query = query.where(jobs.c.owner == expect_owner)
        with self.engine.begin() as conn:
            return conn.execute(query.values(**values)).rowcount == 1

    def take_fence(self, job_id):
        """Advance the job's fencing token and return the new value (a
        conductor starting a run of the job calls this; see
        :mod:`.fencing`).  None if there is no such job."""
        with self.engine.begin() as conn:
            conn.execute(jobs.update().where(jobs.c.id == job_id).values(
                fence=jobs.c.fence + 1))
            return conn.execute(sa.select(jobs.c.fence).where(
                jobs.c.id == job_id)).scalar()

    def adopt_posting(self, job_id, board_uuid):
        """Record ``board_uuid`` as the job's posting if none is recorded.

        ``submit`` and ``resume`` post first and record the posting's uuid
        right after; a conductor that claims the posting in between
        adopts it here instead of taking it for a stale one.  True if the
        row changed.
        """
        with self.engine.begin() as conn:
            return conn.execute(jobs.update().where(
                jobs.c.id == job_id, jobs.c.board_job.is_(None),
                jobs.c.state.in_(states.RUNNABLE)).values(
                    board_job=board_uuid, updated_at=utcnow())).rowcount == 1

    def add_attempt(self, job_id):
        """Count one more attempt; return the new count."""
        with self.engine.begin() as conn:
            conn.execute(jobs.update().where(jobs.c.id == job_id).values(
                attempts=jobs.c.attempts + 1, updated_at=utcnow()))
            return conn.execute(sa.select(jobs.c.attempts).where(
                jobs.c.id == job_id)).scalar()

    def finished_before(self, cutoff):
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(jobs.c.id).where(
                jobs.c.state.in_(states.FINISHED), jobs.c.updated_at < cutoff))
            return [r.id for r in rows]

    # -- targets ----------------------------------------------------------
    def save_plan(self, job_id, planned, skipped):
        """Freeze a job's plan: one row per target, in order.

        ``planned`` and ``skipped`` are lists of dicts with ``target``,
        ``action``, ``details`` (and ``reason`` for skipped ones).  Runs
        in one transaction together with marking the job planned, so a
        crash leaves either no plan or the whole plan.
        """
        rows = []
        for seq, item in enumerate(planned):
            rows.append(dict(job_id=job_id, target=item['target'], seq=seq,
                             action=item['action'], state=states.PENDING,
                             attempts=0, error=None,
                             details=json.dumps(item.get('details') or {})))
        for seq, item in enumerate(skipped, start=len(planned)):
            rows.append(dict(job_id=job_id, target=item['target'], seq=seq,
                             action=SKIP_ACTION, state=states.SKIPPED,
                             attempts=0,
                             error=item.get('reason'),
                             details=json.dumps(item.get('details') or {})))
        with self.engine.begin() as conn:
            done = conn.execute(sa.select(jobs.c.planned).where(
                jobs.c.id == job_id)).scalar()
            if done:
                return False
            if rows:
                conn.execute(targets.insert(), rows)
            conn.execute(jobs.update().where(jobs.c.id == job_id).values(
                planned=True, updated_at=utcnow()))
        return True

    def get_targets(self, job_id, states=None):
        query = targets.select().where(
            targets.c.job_id == job_id).order_by(targets.c.seq)
        if states:
            query = query.where(targets.c.state.in_(states))
        with self.engine.connect() as conn:
            return [_target_row(r) for r in conn.execute(query)]

    def target_summaries(self, job_id):
        """The job's targets in plan order as ``show`` and ``wait`` need
        them: every column, but ``details`` only where a PENDING target
        says why it waits (``{'waiting': ...}``; else ``{}``).  Reading
        and decoding every target's details made each look at a job of
        10,000 targets cost a large part of a second."""
        waiting = sa.case((sa.and_(targets.c.state == states.PENDING,
                                   targets.c.details.like('%"waiting"%')),
                           targets.c.details), else_=None)
        columns = [c for c in targets.c if c.name != 'details']
        names = [c.name for c in columns] + ['details']
        query = sa.select(*columns, waiting).where(
            targets.c.job_id == job_id).order_by(targets.c.seq)
        with self.engine.connect() as conn:
            rows = [dict(zip(names, r, strict=True))
                    for r in conn.execute(query)]
        for row in rows:
            raw = row['details']
            row['details'] = ({'waiting': json.loads(raw).get('waiting')}
                              if raw else {})
        return rows

    def target_states(self, job_id, states_=None):
        """``{target: state}`` of the job's targets (only those in
        ``states_`` when given), without their details: cheap for jobs
        of thousands of targets."""
        query = sa.select(targets.c.target, targets.c.state).where(
            targets.c.job_id == job_id)
        if states_:
            query = query.where(targets.c.state.in_(states_))
        with self.engine.connect() as conn:
            return {r.target: r.state for r in conn.execute(query)}

    def get_target(self, job_id, target):
        with self.engine.connect() as conn:
            row = conn.execute(targets.select().where(
                targets.c.job_id == job_id,
                targets.c.target == target)).first()
        return _target_row(row) if row else None

    def update_target(self, job_id, target, add_attempt=False,
                      merge_details=None, start=False, **values):
        """Update one target row in one transaction.

        ``merge_details`` is merged into the row's JSON details;
        ``add_attempt`` counts one more attempt; ``start`` sets
        ``started_at`` unless the target started before.  The job's
        ``updated_at`` is touched in the same transaction.

        :returns: the row as it was before the update, or None if there
            is no such target (then nothing is changed).
        """
        where = (targets.c.job_id == job_id, targets.c.target == target)
        with self.engine.begin() as conn:
            row = conn.execute(targets.select().where(*where)).first()
            if row is None:
                return None
            before = _target_row(row)
            if 'state' in values:
                states.check_target_transition(before['state'],
                                               values['state'])
            if merge_details:
                details = dict(before['details'])
                details.update(merge_details)
                values['details'] = json.dumps(details)
            if add_attempt:
                values['attempts'] = targets.c.attempts + 1
            if start and before['started_at'] is None:
                values['started_at'] = utcnow()
            conn.execute(targets.update().where(*where).values(**values))
            conn.execute(jobs.update().where(jobs.c.id == job_id).values(
                updated_at=utcnow()))
        return before

    def skip_pending(self, job_id, error):
        """Mark every PENDING target of the job SKIPPED with ``error``
        (one statement, however many targets); touches the job's
        ``updated_at``.

        :returns: how many targets were skipped.
        """
        with self.engine.begin() as conn:
            skipped = conn.execute(targets.update().where(
                targets.c.job_id == job_id,
                targets.c.state == states.PENDING).values(
                    state=states.SKIPPED, error=error)).rowcount
            conn.execute(jobs.update().where(jobs.c.id == job_id).values(
                updated_at=utcnow()))
        return skipped

    def progress(self, job_ids):
        """``{job_id: {'total', 'done', 'failed', 'skipped', 'running'}}``."""
        result = {j: dict(total=0, done=0, failed=0, skipped=0, running=0)
                  for j in job_ids}
        if not job_ids:
            return result
        key = {states.DONE: 'done', states.FAILED: 'failed',
               states.SKIPPED: 'skipped', states.RUNNING: 'running'}
        query = sa.select(targets.c.job_id, targets.c.state,
                          sa.func.count()).group_by(
            targets.c.job_id, targets.c.state)
        if len(job_ids) <= 500:
            query = query.where(targets.c.job_id.in_(list(job_ids)))
        with self.engine.connect() as conn:
            for job_id, state, count in conn.execute(query):
                if job_id not in result:
                    continue
                result[job_id]['total'] += count
                if state in key:
                    result[job_id][key[state]] += count
        return result
