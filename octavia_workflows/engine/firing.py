"""The conductor's side of schedules: post what is due, exactly once.

Every conductor calls :meth:`Firer.tick` once per loop iteration; it
looks at the schedules about once a second and, for each due one,
handles its fire time through
:meth:`~octavia_workflows.engine.schedules.ScheduleRecords.fire` (a
compare-and-set on ``next_fire`` in the transaction that inserts the
job row, so one conductor wins each fire time), then posts the job on
the board and records the posting by compare-and-set.  Scheduled job
rows left without a posting for the claim expiry (their conductor died
between the commit and the post, or the board was unreachable) are
posted by whichever conductor sees them; two such postings are harmless:
the one recorded first runs, the other is dropped as stale when claimed.

Failures: :meth:`Firer.tick` never raises.  A database or jobboard error
is logged as one line and the next tick tries again; nothing is lost (a
fire time not yet handled stays due, an unposted row is posted later).
"""

import datetime
import logging
import time

from sqlalchemy import exc as sa_exc

from octavia_workflows import exceptions
from octavia_workflows.engine import records as rec
from octavia_workflows.engine import schedules

LOG = logging.getLogger(__name__)

#: Seconds between a conductor's looks at the schedules.
TICK_INTERVAL = 1.0


class Firer:
    """A conductor's side of schedules; :meth:`tick` once per loop.

    :param records: the persistence store's
        :class:`~octavia_workflows.engine.records.Records`.
    :param driver: the conductor's connected jobboard driver.
    :param repost_after: seconds a scheduled job row may wait for its
        posting before another conductor posts it (the claim expiry).
    """

    def __init__(self, records, driver, repost_after, clock=rec.utcnow,
                 interval=TICK_INTERVAL):
        self.records = records
        self.store = schedules.ScheduleRecords(records.engine, clock=clock)
        self.driver = driver
        self.clock = clock
        self.repost_after = datetime.timedelta(seconds=repost_after)
        self.interval = interval
        self._last = None

    def tick(self):
        """Handle what is due, at most once per ``interval``; never
        raises (a failure is logged and tried again next time)."""
        started = time.monotonic()
        if self._last is not None and started - self._last < self.interval:
            return
        self._last = started
        try:
            self._tick()
        except (sa_exc.SQLAlchemyError, exceptions.OctaviaWorkflowsError) \
                as exc:
            LOG.warning('schedules: %s', str(exc).splitlines()[0])
        except Exception:
            LOG.exception('schedules: tick failed')

    def _tick(self):
        active = self.store.list(active_only=True)
        failed = self.store.failed_jobs(active)
        now = self.clock()
        due = []
        for schedule in active:
            reasons = [r for r in map(schedules.failure, failed.get(
                schedule['name'], ())) if r]
            if reasons:
                if self.store.pause_after_failure(schedule, reasons[0]):
                    LOG.warning('schedule %s paused: %s', schedule['name'],
                                reasons[0])
            elif schedule['next_fire'] <= now:
                due.append(schedule)
        last = self.store.job_states([s['last_job'] for s in due])
        for schedule in due:
            decision = schedules.decide(schedule, now,
                                        last.get(schedule['last_job']))
            if decision is not None:
                self._handle(schedule, decision, now)
        self._repost(now)

    def _handle(self, schedule, decision, now):
        name = schedule['name']
        result = self.store.fire(schedule, decision, now)
        if result is None:
            return
        if decision.missed:
            LOG.warning('schedule %s: %d fire time(s) before %s were missed '
                        '(no conductor ran); posting one job for the '
                        'latest only', name, decision.missed,
                        rec.isoformat(decision.fire))
        if decision.action == 'skip':
            LOG.info('schedule %s: fire time %s skipped: job %s is still '
                     'unfinished', name, rec.isoformat(decision.fire),
                     schedule['last_job'])
            return
        LOG.info('schedule %s: job %s created for fire time %s', name,
                 result, rec.isoformat(decision.fire))
        self._post(result, schedule['workflow'])

    def _post(self, job_id_, workflow_name):
        board_uuid = self.driver.post(job_id_, workflow_name)
        if not self.records.adopt_posting(job_id_, board_uuid):
            # A conductor claimed ours and adopted it already, or another
            # posting was recorded first (then ours is dropped as stale).
            LOG.debug('job %s: a posting was recorded before ours',
                      job_id_)

    def _repost(self, now):
        for job_id_, workflow_name in self.store.unposted(
                now - self.repost_after):
            LOG.warning('job %s: posted by no conductor (its poster '
                        'died?); posting it now', job_id_)
            self._post(job_id_, workflow_name)
