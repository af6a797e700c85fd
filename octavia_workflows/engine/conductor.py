"""The conductor: claims jobs from the jobboard and runs them.

TaskFlow's own conductors claim without an expiry, re-claim failing jobs
in a hot loop and have no fencing, so this one drives TaskFlow engines
itself (see the design's durability rules):

- claims always carry an expiry and are renewed by their owner
  (:mod:`octavia_workflows.engine.claims`);
- its name is ``<NAME>-<8 hex>``, unique per process start; that is the
  owner ``show`` reports;
- a job that made no progress in ``[conductor] max_job_attempts``
  attempts in a row ends FAILED with the last reason, and a transient
  failure is retried with exponential backoff, not at once;
- :meth:`Conductor.stop` (SIGTERM): stop claiming, suspend the running
  engines (in-flight steps finish), release the claims, return.

Leaving :meth:`Conductor.stop` uncalled leaves jobs claimed until their
claims expire; another conductor then takes them over.
"""

import concurrent.futures
import logging
import secrets
import socket
import threading
import time

from octavia_workflows import exceptions, states, workflow
from octavia_workflows.engine import claims, coordination, firing, runner
from octavia_workflows.engine import records as rec
from octavia_workflows.engine.jobboard import base as jobboard_base

LOG = logging.getLogger(__name__)


def unique_name(prefix=None):
    """``<prefix>-<8 hex>``; the prefix defaults to the host name."""
    return f'{prefix or socket.gethostname()}-{secrets.token_hex(4)}'


def _stale(record, board_uuid):
    """Why a claimed posting must not run (purged, re-posted, settled)."""
    if record is None:
        return 'the job has no record (purged?)'
    if record['board_job'] != board_uuid:
        return f'the job was re-posted as {record["board_job"]}'
    if record['state'] not in states.RUNNABLE:
        return f'the job is already {record["state"]}'
    return None


def _preload():
    """Import what running a job needs (the cloud SDK, every installed
    workflow with its current flow factory) while the conductor waits
    for work, so that the first job claimed does not pay a second for
    it.  A workflow that cannot be imported is reported here; its jobs
    fail when they run."""
    try:
        import openstack  # noqa: F401
    except Exception as exc:
        LOG.warning('cannot import openstacksdk: %s', exc)
    for name in workflow.names():
        try:
            workflow.get(name).load_factory()
        except Exception as exc:
            LOG.warning('workflow %s cannot be loaded: %s', name, exc)


class Conductor:
    """Claims and runs up to ``workers`` jobs at a time.

    :param conf: parsed configuration.
    :param persistence: a checked :class:`~octavia_workflows.engine.
        persistence.Persistence`.
    :param driver: a connected jobboard driver.
    :param name: name prefix (``--name``).
    :param workers: jobs run at the same time.
    :param listener: optional callable ``(event, **fields)`` for metrics.
    """

    def __init__(self, conf, persistence, driver, name=None, workers=1,
                 listener=None, cloud_factory=None):
        self.conf = conf
        self.persistence = persistence
        self.records = persistence.records
        self.driver = driver
        self.name = unique_name(name)
        self.workers = max(1, int(workers))
        self.listener = listener or (lambda event, **fields: None)
        self.cloud_factory = cloud_factory
        # TaskFlow (and with it eventlet) must be imported on the main
        # thread: imported first inside a job's worker thread, it leaves
        # that thread unjoinable and the process hangs at exit.
        import taskflow.engines  # noqa: F401

        persistence.taskflow_backend()
        self._stop = threading.Event()
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=self.workers, thread_name_prefix='conductor-job')
        self._running = {}
        #: Board jobs whose run ended on a lost claim while the board may
        #: still record them as ours (job id -> board job).
        self._orphans = {}
        self._lock = threading.Lock()
        #: Posts due schedules' jobs (once per fire time across conductors).
        self._schedules = firing.Firer(
            self.records, driver, conf.task_flow.jobboard_expiration_time)

    # -- lifecycle --------------------------------------------------------
    def run(self):
        """Claim and run jobs until :meth:`stop`; then wait for them."""
        LOG.info('conductor %s started (%d workers, board %s)', self.name,
                 self.workers, self.driver.describe())
        threading.Thread(target=_preload, name='preload', daemon=True).start()
        poll = self.conf.conductor.poll_interval
        while not self._stop.is_set():
            try:
                self._schedules.tick()      # never raises
                self._dispatch()
                self.listener('poll')
            except exceptions.BackendUnavailable as exc:
                LOG.warning('conductor %s: %s', self.name, exc)
                self.listener('poll', error=str(exc))
                self._stop.wait(min(5.0, poll * 5))
                continue
            except Exception:
                LOG.exception('conductor %s: dispatch failed', self.name)
            if self._free_slots() > 0:
                # woken at once by a posting where the board can say so
                self.driver.idle(poll, self._stop)
            else:
                self._stop.wait(poll)
        self._drain()
        LOG.info('conductor %s stopped', self.name)

    def stop(self):
        """Stop claiming; running jobs suspend after their current step."""
        if not self._stop.is_set():
            LOG.info('conductor %s stopping', self.name)
        self._stop.set()

    @property
    def running_jobs(self):
        with self._lock:
            return list(self._running)

    def _drain(self):
        deadline = time.monotonic() + self.conf.conductor.stop_timeout
        with self._lock:
            futures = list(self._running.values())
        for future in futures:
            left = max(0.0, deadline - time.monotonic())
            try:
                future.result(timeout=left)
            except concurrent.futures.TimeoutError:
                LOG.warning('conductor %s: a job did not suspend within '
                            '%s s; its claim will expire', self.name,
                            self.conf.conductor.stop_timeout)
            except Exception:
                LOG.exception('conductor %s: job ended badly', self.name)
        self._pool.shutdown(wait=False)

    # -- claiming ---------------------------------------------------------
    def _free_slots(self):
        with self._lock:
            for job_id in [j for j, f in self._running.items() if f.done()]:
                del self._running[job_id]
            return self.workers - len(self._running)

    def _give_back_orphans(self):
        """Release claims our runs gave up on but the board kept.

        A run stops when it cannot confirm its claim in time (say a
        ZooKeeper restart suspended the session); the session may come
        back with the claim still ours, and then nobody would ever run
        the job.  Release it (owner-checked) so it is claimed again.
        """
        with self._lock:
            orphans = dict(self._orphans)
        for job_id, board_job in orphans.items():
            try:
                if self.driver.owner(board_job) == self.name:
                    LOG.info('job %s: giving back a claim this conductor '
                             'no longer acts on', job_id)
                    self.driver.release(board_job, self.name)
            except exceptions.BackendUnavailable:
                continue
            with self._lock:
                self._orphans.pop(job_id, None)

    def _dispatch(self):
        self._give_back_orphans()
        if self._free_slots() <= 0:
            return
        for board_job in self.driver.unclaimed():
            if self._stop.is_set() or self._free_slots() <= 0:
                return
            details = board_job.details or {}
            job_id = details.get('job_id')
            with self._lock:
                here = job_id in self._running
            if here:
                # Our claim vanished (e.g. Redis lost it in a restart)
                # while the run is still on its way out: claiming it
                # again would run the job twice in this very process,
                # where the owner name alone cannot fence the old run.
                LOG.debug('job %s: still winding down here; not '
                          'claiming it again yet', job_id)
                continue
            record = self.records.get_job(job_id) if job_id else None
            if record is not None and record['not_before'] and \
                    record['not_before'] > rec.utcnow():
                continue
            if not self.driver.claim(board_job, self.name):
                continue
            if record is not None and record['board_job'] is None:
                # Claimed between the post and its recording (submit,
                # resume): the posting is fresh, not stale.  Adopt it,
                # unless the poster has just recorded it itself.
                self.records.adopt_posting(job_id, board_job.uuid)
            # Judge the posting on the record as it is now that we hold
            # the claim, not as it was before.
            record = self.records.get_job(job_id) if job_id else None
            why = _stale(record, board_job.uuid)
            if why:
                LOG.info('conductor %s: dropping stale posting %s of job '
                         '%s: %s', self.name, board_job.uuid, job_id, why)
                self.driver.complete(board_job, self.name)
                continue
            self._start(board_job, job_id)

    def _start(self, board_job, job_id):
        ok = self.records.transition(
            job_id, states.RUNNING, expect=states.RUNNABLE,
            owner=self.name, heartbeat_at=rec.utcnow())
        if not ok:
            self.driver.complete(board_job, self.name)
            return
        job = self.records.get_job(job_id)
        if job['started_at'] is None:
            self.records.update_job(job_id, started_at=rec.utcnow())
        attempts = self.records.add_attempt(job_id)
        name = job['workflow']
        self.listener('claimed', job_id=job_id, workflow=name)
        LOG.info('job %s: claimed by %s (attempt %d)', job_id, self.name,
                 attempts)
        limit = self.conf.conductor.max_job_attempts
        if attempts > limit:
            reason = (f'gave up after {limit} attempts without progress'
                      f'{": " + job["reason"] if job["reason"] else ""}')
            self.records.transition(job_id, states.FAILED,
                                    expect_owner=self.name, reason=reason,
                                    finished_at=rec.utcnow())
            LOG.error('job %s: FAILED: %s', job_id, reason)
            self.driver.complete(board_job, self.name)
            self.listener('finished', job_id=job_id, workflow=name,
                          state=states.FAILED)
            return
        claim = claims.BoardClaim(job_id, self.name, self.driver, board_job,
                                  fleet=self._fleet(job_id))
        claim.start()
        with self._lock:
            self._running[job_id] = self._pool.submit(
                self._run, board_job, job_id, name, claim)

    def _fleet(self, job_id):
        """The job run's fleet entries on the board (:mod:`.coordination`)."""
        if jobboard_base.FLEET not in self.driver.capabilities:
            return None
        return coordination.Fleet(
            self.driver, job_id,
            budget=self.conf.fleet.max_concurrent_failovers,
            lock_timeout=self.conf.fleet.lock_timeout)

    def _run(self, board_job, job_id, workflow, claim):
        def listener(event, **fields):
            self.listener(event, job_id=job_id, workflow=workflow, **fields)

        try:
            outcome = runner.run_job(
                self.persistence, job_id, claim, stop_event=self._stop,
                save_logbook=self.conf.task_flow.jobboard_save_logbook,
                cloud_factory=self.cloud_factory, listener=listener,
                conf=self.conf)
        except Exception:
            LOG.exception('job %s: runner crashed', job_id)
            outcome = runner.Outcome(states.PENDING, 'runner crashed',
                                     release=True)
        finally:
            claim.stop()
            # a lost claim's entries are given back only where they are
            # this conductor's own (Fleet.give)
            claim.fleet.give_all()
        try:
            if outcome.lost:
                listener('lost')
                with self._lock:
                    self._orphans[job_id] = board_job
            elif outcome.release:
                self.driver.release(board_job, self.name)
                listener('released')
            else:
                self.driver.complete(board_job, self.name)
                listener('finished', state=outcome.state)
        except exceptions.BackendUnavailable as exc:
            LOG.warning('job %s: cannot update the board: %s', job_id, exc)
        return outcome
