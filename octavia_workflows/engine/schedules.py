"""Schedules: cron-timed jobs posted by the conductors, once per fire time.

A schedule (table ``ow_schedules``) names a workflow, its validated
parameters and a cron expression, read in UTC by the maintained
``croniter`` library (five fields, or six with the seconds first).  Its
``next_fire`` column is the next fire time not yet handled.  Every
conductor looks at the schedules about once a second
(:mod:`octavia_workflows.engine.firing`); for a due one it moves
``next_fire`` on by a compare-and-set **in the same transaction** that
inserts the job's row, so however many conductors run, and whichever
of them dies, one job row exists per fire time.  The job id is derived
from the schedule and the fire time; a conductor killed between that
commit and the board posting leaves a PENDING row with no posting, which
any conductor posts once the row has been left alone for the claim
expiry (recorded by compare-and-set like every posting, see
:meth:`~octavia_workflows.engine.records.Records.adopt_posting`).

- Overlap ``skip`` (the default): while the schedule's previous job is
  unfinished (PENDING, RUNNING or PAUSED) nothing is posted; the fire is
  recorded as skipped (``skipped``, ``last_skipped``).  ``allow``: a job
  per fire time regardless.
- ``pause_on_failure``: the schedule pauses, saying which job, when one
  of its jobs ends FAILED or pauses itself (circuit breaker, health
  regression), counting only jobs that changed after the schedule was
  last created, paused or resumed (``updated_at``; firing does not
  touch it).
- Fire times missed while no conductor ran are not posted in a burst:
  one job for the latest missed fire time only.  Fire times that pass
  while a schedule is paused are not posted; ``resume`` continues with
  the next one after now.

Failures: bad input (name, cron, overlap, unknown schedule) raises
:class:`~octavia_workflows.exceptions.UserError` subclasses before
anything is written.  Database errors propagate unchanged from the
store methods (the conductor's firer logs them and tries again).
"""

import dataclasses
import datetime
import json
import logging
import re
import uuid

import croniter as croniter_mod
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from octavia_workflows import exceptions, states
from octavia_workflows.engine import gates
from octavia_workflows.engine import records as rec

LOG = logging.getLogger(__name__)

OVERLAP_SKIP = 'skip'
OVERLAP_ALLOW = 'allow'
OVERLAPS = (OVERLAP_SKIP, OVERLAP_ALLOW)

#: What ``schedule show`` says of an active / a paused schedule.
ACTIVE = 'active'
PAUSED = 'paused'

NAME_RE = re.compile(r'^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$')

#: The namespace of scheduled jobs' ids (uuid5 of schedule and fire time).
JOB_NAMESPACE = uuid.UUID('5c1b7e0a-3f2d-4e8b-9a61-0d4c2b7f8e13')


class ScheduleNotFound(exceptions.UserError):
    """No schedule with that name."""


class InvalidSchedule(exceptions.UserError):
    """A malformed schedule name, cron expression or option."""


# -- cron (pure) ------------------------------------------------------------
def _floor(when):
    return when.replace(microsecond=0)


def _iter(expr, start):
    return croniter_mod.croniter(expr, start, ret_type=datetime.datetime,
                                 second_at_beginning=True)


def check_cron(expr, now):
    """The normalised expression; raises :class:`InvalidSchedule`.

    Five fields (minute hour day-of-month month day-of-week), six with
    the seconds first, or an alias (``@hourly``, ``@daily``, ...); UTC.
    It must fire at least once in the future.
    """
    text = ' '.join((expr or '').split())
    fields = text.split(' ') if text else []
    if not text.startswith('@') and len(fields) not in (5, 6):
        raise InvalidSchedule(
            f'invalid cron expression {expr!r}: give 5 fields (minute hour '
            f'day-of-month month day-of-week) or 6 (seconds first)')
    try:
        next_after(text, now)
    except croniter_mod.CroniterBadDateError:
        raise InvalidSchedule(
            f'cron expression {expr!r} never fires') from None
    except (croniter_mod.CroniterError, ValueError, KeyError,
            IndexError) as exc:
        message = str(exc).splitlines()[0] if str(exc) else 'malformed'
        raise InvalidSchedule(
            f'invalid cron expression {expr!r}: {message}') from None
    return text


def next_after(expr, when):
    """The first fire time strictly after ``when`` (naive UTC)."""
    return _iter(expr, when).get_next()


def latest_at_or_before(expr, when):
    """The last fire time at or before ``when`` (whole seconds)."""
    return _iter(expr, _floor(when) + datetime.timedelta(seconds=1)) \
        .get_prev()


def missed_between(expr, first, last, cap=1000):
    """How many fire times lie in ``[first, last)`` (counted up to
    ``cap``)."""
    count, when = 0, first
    iterator = _iter(expr, first - datetime.timedelta(seconds=1))
    while count < cap:
        when = iterator.get_next()
        if when >= last:
            break
        count += 1
    return count


def check_name(name):
    if not NAME_RE.match(name or ''):
        raise InvalidSchedule(
            f'invalid schedule name {name!r}: 1-64 letters, digits, ".", '
            f'"_" or "-", starting with a letter or digit')
    return name


def job_id(schedule, fire):
    """The id of the job ``schedule`` posts for fire time ``fire``.

    The schedule's creation time is part of it, so a schedule deleted
    and created again under the same name posts new ids.
    """
    key = (f'{schedule["name"]}|{rec.isoformat(schedule["created_at"])}|'
           f'{rec.isoformat(fire)}')
    return str(uuid.uuid5(JOB_NAMESPACE, key))


# -- decisions (pure) -------------------------------------------------------
@dataclasses.dataclass
class Decision:
    """What to do with a due schedule: ``action`` is ``fire`` or
    ``skip``; ``fire`` the fire time handled, ``next_fire`` the one after
    it, ``missed`` how many earlier fire times were not handled."""

    action: str
    fire: datetime.datetime
    next_fire: datetime.datetime
    missed: int = 0


def decide(schedule, now, last_job_state=None):
    """The :class:`Decision` for ``schedule`` at ``now``, or None when it
    is paused or not due.  ``last_job_state``: the state of the job it
    posted last (None if none or purged)."""
    if schedule['paused'] or schedule['next_fire'] > now:
        return None
    expr = schedule['cron']
    fire = max(latest_at_or_before(expr, now), schedule['next_fire'])
    missed = 0
    if fire > schedule['next_fire']:
        missed = missed_between(expr, schedule['next_fire'], fire)
    action = 'fire'
    if (schedule['overlap'] == OVERLAP_SKIP
            and last_job_state in states.UNFINISHED):
        action = 'skip'
    return Decision(action, fire, next_after(expr, fire), missed)


def failure(job):
    """Why ``job`` pauses a schedule with pause-on-failure: it ended
    FAILED or paused itself.  None otherwise."""
    reason = ((job.get('reason') or '').strip().splitlines() or [''])[0]
    reason = reason[:200]
    if job['state'] == states.FAILED:
        return f'job {job["id"]} FAILED' + (f': {reason}' if reason else '')
    at_gate = bool(gates.message(gates.parse(job.get('gate'))))
    if states.paused_by(job['state'], job.get('reason'),
                        at_gate) == states.BY_JOB:
        return f'job {job["id"]} paused itself' + (
            f': {reason}' if reason else '')
    return None


def resume_from(schedule, now):
    """The next fire time once ``schedule`` resumes at ``now``: after
    now, and after its last fire (a clock behind another conductor's
    never posts a fire time twice)."""
    after = now
    if schedule['last_fire'] and schedule['last_fire'] > after:
        after = schedule['last_fire']
    return next_after(schedule['cron'], after)


def view(schedule, last_job_state=None):
    """A schedule shaped for ``schedule show -f json``."""
    paused = bool(schedule['paused'])
    return {
        'name': schedule['name'],
        'workflow': schedule['workflow'],
        'cron': schedule['cron'],
        'timezone': 'UTC',
        'parameters': schedule['parameters'],
        'cloud': schedule['cloud'],
        'overlap': schedule['overlap'],
        'pause_on_failure': bool(schedule['pause_on_failure']),
        'state': PAUSED if paused else ACTIVE,
        'paused_reason': schedule['paused_reason'] if paused else None,
        'next_fire': None if paused else rec.isoformat(
            schedule['next_fire']),
        'last_fire': rec.isoformat(schedule['last_fire']),
        'last_job': schedule['last_job'],
        'last_job_state': last_job_state,
        'skipped': schedule['skipped'],
        'last_skipped': rec.isoformat(schedule['last_skipped']),
        'created_at': rec.isoformat(schedule['created_at']),
        'updated_at': rec.isoformat(schedule['updated_at']),
    }


# -- records ----------------------------------------------------------------
def _row(row):
    item = dict(row._mapping)
    item['parameters'] = json.loads(item['parameters'])
    return item


class ScheduleRecords:
    """Reads and writes ``ow_schedules`` (and the job rows it posts).

    ``clock`` returns naive UTC now; the tests inject one.
    """

    def __init__(self, engine, clock=rec.utcnow):
        self.engine = engine
        self.clock = clock

    def _now(self):
        return _floor(self.clock())

    # -- operator side ----------------------------------------------------
    def create(self, name, workflow, cron, parameters, cloud=None,
               overlap=OVERLAP_SKIP, pause_on_failure=False):
        """Store a new schedule (``cron`` already checked).

        :raises InvalidSchedule: the name is taken (nothing changed).
        """
        now = self._now()
        try:
            with self.engine.begin() as conn:
                conn.execute(rec.schedules.insert().values(
                    name=name, workflow=workflow, cron=cron,
                    parameters=json.dumps(parameters, sort_keys=True),
                    cloud=cloud, overlap=overlap,
                    pause_on_failure=bool(pause_on_failure), paused=False,
                    paused_reason=None, next_fire=next_after(cron, now),
                    skipped=0, created_at=now, updated_at=now))
        except sa_exc.IntegrityError:
            raise InvalidSchedule(
                f'a schedule named {name} exists (delete it first, or '
                f'choose another name)') from None
        return self.get(name)

    def get(self, name):
        """The schedule as a dict; raises :class:`ScheduleNotFound`."""
        with self.engine.connect() as conn:
            row = conn.execute(rec.schedules.select().where(
                rec.schedules.c.name == name)).first()
        if row is None:
            raise ScheduleNotFound(f'no schedule named {name!r}')
        return _row(row)

    def list(self, active_only=False):
        query = rec.schedules.select().order_by(rec.schedules.c.name)
        if active_only:
            query = query.where(rec.schedules.c.paused.is_(False))
        with self.engine.connect() as conn:
            return [_row(r) for r in conn.execute(query)]

    def job_states(self, job_ids):
        """``{job_id: state}`` of those that exist."""
        ids = [j for j in job_ids if j]
        if not ids:
            return {}
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(rec.jobs.c.id, rec.jobs.c.state)
                                .where(rec.jobs.c.id.in_(ids)))
            return {r.id: r.state for r in rows}

    def delete(self, name):
        """Delete the schedule (its jobs stay); ScheduleNotFound if none."""
        with self.engine.begin() as conn:
            gone = conn.execute(rec.schedules.delete().where(
                rec.schedules.c.name == name)).rowcount
        if not gone:
            raise ScheduleNotFound(f'no schedule named {name!r}')

    def pause(self, name, reason=states.OPERATOR_PAUSE):
        schedule = self.get(name)
        if schedule['paused']:
            raise InvalidSchedule(
                f'schedule {name} is already paused '
                f'({schedule["paused_reason"]})')
        self._set_paused(schedule, True, reason)
        return self.get(name)

    def resume(self, name):
        schedule = self.get(name)
        if not schedule['paused']:
            raise InvalidSchedule(f'schedule {name} is not paused')
        self._set_paused(schedule, False, None,
                         next_fire=resume_from(schedule, self._now()))
        return self.get(name)

    def _set_paused(self, schedule, paused, reason, **values):
        table = rec.schedules
        with self.engine.begin() as conn:
            ok = conn.execute(table.update().where(
                table.c.name == schedule['name'],
                table.c.paused.is_(not paused)).values(
                    paused=paused, paused_reason=reason,
                    updated_at=self._now(), **values)).rowcount == 1
        if not ok:
            raise InvalidSchedule(
                f'schedule {schedule["name"]} changed meanwhile; try again')

    # -- conductor side ---------------------------------------------------
    def pause_after_failure(self, schedule, reason):
        """Pause ``schedule`` unless it changed since it was read."""
        table = rec.schedules
        with self.engine.begin() as conn:
            return conn.execute(table.update().where(
                table.c.name == schedule['name'], table.c.paused.is_(False),
                table.c.updated_at == schedule['updated_at']).values(
                    paused=True, paused_reason=reason,
                    updated_at=self._now())).rowcount == 1

    def failed_jobs(self, schedules):
        """Jobs of ``schedules`` (those with pause-on-failure) now FAILED
        or PAUSED that changed since their schedule's ``updated_at``:
        ``{schedule name: [job, ...]}``."""
        watched = {s['name']: s for s in schedules if s['pause_on_failure']}
        if not watched:
            return {}
        since = min(s['updated_at'] for s in watched.values())
        table = rec.jobs
        query = sa.select(table.c.id, table.c.schedule, table.c.state,
                          table.c.reason, table.c.gate,
                          table.c.updated_at).where(
            table.c.state.in_((states.FAILED, states.PAUSED)),
            table.c.schedule.in_(list(watched)),
            table.c.updated_at >= since).order_by(table.c.updated_at)
        found = {}
        with self.engine.connect() as conn:
            for row in conn.execute(query):
                job = dict(row._mapping)
                if job['updated_at'] >= watched[job['schedule']][
                        'updated_at']:
                    found.setdefault(job['schedule'], []).append(job)
        return found

    def fire(self, schedule, decision, now):
        """Handle one fire time: compare-and-set ``next_fire`` and, for
        ``fire``, insert the job row in the same transaction.

        :returns: the new job's id (``fire``), True (``skip``) or None
            when another conductor handled it first (nothing written).
        """
        table = rec.schedules
        values = {'next_fire': decision.next_fire}
        new_job = None
        if decision.action == 'fire':
            new_job = job_id(schedule, decision.fire)
            values.update(last_fire=decision.fire, last_job=new_job)
        else:
            values.update(skipped=table.c.skipped + 1,
                          last_skipped=decision.fire)
        with self.engine.begin() as conn:
            moved = conn.execute(table.update().where(
                table.c.name == schedule['name'],
                table.c.next_fire == schedule['next_fire'],
                table.c.paused.is_(False)).values(**values)).rowcount
            if moved != 1:
                return None
            if new_job is not None:
                conn.execute(rec.jobs.insert().values(
                    id=new_job, workflow=schedule['workflow'],
                    state=states.PENDING, mode='board',
                    cloud=schedule['cloud'],
                    parameters=json.dumps(schedule['parameters'],
                                          sort_keys=True),
                    created_at=now, updated_at=now,
                    control=states.NO_CONTROL, attempts=0, planned=False,
                    schedule=schedule['name']))
        return new_job if new_job is not None else True

    def unposted(self, older_than):
        """Scheduled jobs still PENDING with no board posting, untouched
        since ``older_than`` (their poster died before posting)."""
        table = rec.jobs
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(table.c.id, table.c.workflow)
                                .where(table.c.schedule.is_not(None),
                                       table.c.state == states.PENDING,
                                       table.c.mode == 'board',
                                       table.c.board_job.is_(None),
                                       table.c.updated_at < older_than))
            return [(r.id, r.workflow) for r in rows]
