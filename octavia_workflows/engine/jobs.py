"""The operator's side of jobs: submit, read, pause, resume, cancel, purge.

:class:`JobService` is what the CLI calls.  The persistence database is
the source of truth for a job's state, parameters and control requests;
the jobboard only distributes work.  So a request is always written to
the job's record first and then, where needed, the board is updated:

- pause/cancel of a PENDING job removes it from the board; if a
  conductor claimed it meanwhile, that conductor sees the request in the
  record before it starts any step;
- pause/cancel of a RUNNING job is picked up by its conductor within a
  second; in-flight steps finish, nothing new starts;
- resume of a PAUSED job re-posts it (or runs it inline when the
  jobboard is disabled);
- approve/reject answer the approval gate a PAUSED job waits at
  (:mod:`octavia_workflows.engine.gates`): approve records the answer
  and resumes the job (``resume`` of a job waiting at a gate approves
  it too); reject ends the job CANCELLED with the reason ``rejected at
  gate ...``.

Every method validates first and raises a
:class:`~octavia_workflows.exceptions.UserError` subclass before changing
anything.
"""

import datetime
import logging
import os
import socket
import uuid

from octavia_workflows import exceptions, states
from octavia_workflows.engine import gates
from octavia_workflows.engine import records as rec

LOG = logging.getLogger(__name__)


def inline_owner():
    """The owner name of an inline (embedded mode) run."""
    return f'{socket.gethostname()}.inline.{os.getpid()}'


class JobService:
    """Job operations over one persistence store and (maybe) a jobboard.

    :param conf: parsed configuration.
    :param persistence: :class:`~octavia_workflows.engine.persistence.
        Persistence` (already checked).
    :param board_factory: returns a connected jobboard driver; used only
        when ``[task_flow] jobboard_enabled`` is true.
    """

    def __init__(self, conf, persistence, board_factory=None):
        self.conf = conf
        self.persistence = persistence
        self.records = persistence.records
        self._board_factory = board_factory
        self._board = None

    @property
    def board_enabled(self):
        return self.conf.task_flow.jobboard_enabled

    def board(self):
        if self._board is None:
            self._board = self._board_factory()
        return self._board

    def close(self):
        if self._board is not None:
            self._board.close()

    # -- reading ----------------------------------------------------------
    def resolve(self, job_id):
        """Full id for ``job_id`` (a unique prefix of 6+ chars works)."""
        job_id = (job_id or '').strip()
        if not job_id:
            raise exceptions.JobNotFound('no job id given')
        if self.records.get_job(job_id) is not None:
            return job_id
        if len(job_id) >= 6:
            found = self.records.find_jobs(job_id)
            if len(found) == 1:
                return found[0]
            if len(found) > 1:
                raise exceptions.JobNotFound(
                    f'job id prefix {job_id} is ambiguous')
        raise exceptions.JobNotFound(f'no job with id {job_id}')

    def get(self, job_id):
        """The job as ``show -f json`` prints it."""
        job_id = self.resolve(job_id)
        job = self.records.get_job(job_id)
        progress = self.records.progress([job_id])[job_id]
        return view(job, progress, self.records.target_summaries(job_id))

    def list(self, include_finished=False):
        jobs = self.records.list_jobs(include_finished=include_finished)
        progress = self.records.progress([j['id'] for j in jobs])
        return [view(j, progress[j['id']]) for j in jobs]

    def report(self, job_id):
        job_id = self.resolve(job_id)
        return self.records.get_targets(job_id)

    # -- submitting -------------------------------------------------------
    def create(self, workflow, params, cloud=None, job_id=None):
        """Create the job's record and post it (jobboard mode).

        Connects to the board first, so an unreachable board leaves
        nothing behind.  ``job_id``: a chosen id (a runbook posting a
        follow-up job picks a deterministic one, so a re-run step finds
        the job it already posted).
        """
        job_id = job_id or str(uuid.uuid4())
        mode = 'board' if self.board_enabled else 'inline'
        board = self.board() if self.board_enabled else None
        self.records.create_job(job_id, workflow.name, params, mode,
                                cloud=cloud)
        if board is not None:
            try:
                board_uuid = board.post(job_id, workflow.name)
            except exceptions.BackendUnavailable:
                self.records.delete_job(job_id)
                raise
            self.records.update_job(job_id, board_job=board_uuid)
        LOG.info('job %s: submitted %s (%s)', job_id, workflow.name, mode)
        return job_id

    def take_inline(self, job_id, force=False):
        """Make this process the inline owner of ``job_id``.

        Refuses while another inline run's heartbeat is fresh.
        """
        job = self.records.get_job(job_id)
        expiry = self.conf.task_flow.jobboard_expiration_time
        if (job['state'] == states.RUNNING and job['heartbeat_at']
                and not force
                and rec.utcnow() - job['heartbeat_at']
                < datetime.timedelta(seconds=expiry)):
            raise exceptions.InvalidJobState(
                f'job {job_id} is running on {job["owner"]} (heartbeat '
                f'{rec.isoformat(job["heartbeat_at"])}); retry after '
                f'{expiry} s if that run died')
        owner = inline_owner()
        ok = self.records.transition(
            job_id, states.RUNNING, expect=states.UNFINISHED,
            owner=owner, control=states.NO_CONTROL,
            heartbeat_at=rec.utcnow(),
            started_at=job['started_at'] or rec.utcnow())
        if not ok:
            raise exceptions.InvalidJobState(
                f'job {job_id} is {job["state"]}; nothing to resume')
        return owner

    def interrupted(self, job_id, why):
        """Leave an interrupted inline run PAUSED (it gave its lease back
        with ``why``), to be continued with ``resume``."""
        self.records.transition(
            job_id, states.PAUSED, expect=(states.PENDING,), owner=None,
            reason=f'{states.INTERRUPTED} ({why}); continue with '
            f'"octavia-workflow resume {job_id}"')

    # -- control ----------------------------------------------------------
    def _job(self, job_id):
        job_id = self.resolve(job_id)
        return self.records.get_job(job_id)

    def pause(self, job_id):
        job = self._job(job_id)
        if job['state'] not in states.RUNNABLE:
            raise exceptions.InvalidJobState(
                f'job {job["id"]} is {job["state"]}; only PENDING or '
                f'RUNNING jobs can be paused')
        self.records.update_job(job['id'], control=states.PAUSE)
        if job['state'] == states.PENDING and self._unpost(job):
            self.records.transition(
                job['id'], states.PAUSED, expect=(states.PENDING,),
                control=states.NO_CONTROL, reason=states.OPERATOR_PAUSE)
        return self.records.get_job(job['id'])

    def cancel(self, job_id):
        job = self._job(job_id)
        if job['state'] in states.FINISHED:
            raise exceptions.InvalidJobState(
                f'job {job["id"]} already ended {job["state"]}')
        self.records.update_job(job['id'], control=states.CANCEL)
        remaining = gates.parse(job['gate'])
        remaining['waiting'] = None
        settle_now = job['state'] == states.PAUSED or (
            job['state'] == states.PENDING and self._unpost(job))
        if settle_now:
            self.records.skip_pending(job['id'], 'job cancelled')
            self.records.transition(
                job['id'], states.CANCELLED,
                expect=(states.PENDING, states.PAUSED),
                control=states.NO_CONTROL, gate=gates.dump(remaining),
                finished_at=rec.utcnow(), reason='cancelled by the operator')
        return self.records.get_job(job['id'])

    def resume(self, job_id):
        """Resume a PAUSED job (board: re-post; inline: caller runs it).

        A job waiting at an approval gate is approved first (``resume``
        answers a gate like ``approve``).
        """
        job = self._job(job_id)
        if job['mode'] == 'inline' or not self.board_enabled:
            if job['state'] not in states.UNFINISHED:
                raise exceptions.InvalidJobState(
                    f'job {job["id"]} is {job["state"]}; nothing to resume')
            if job['state'] == states.PAUSED:
                self._answer_gate(job)
            return job
        if job['state'] != states.PAUSED:
            raise exceptions.InvalidJobState(
                f'job {job["id"]} is {job["state"]}; only PAUSED jobs can '
                f'be resumed')
        board = self.board()
        self._answer_gate(job)
        ok = self.records.transition(
            job['id'], states.PENDING, expect=(states.PAUSED,),
            control=states.NO_CONTROL, owner=None, reason=None, attempts=0,
            not_before=None, board_job=None)
        if not ok:
            raise exceptions.InvalidJobState(
                f'job {job["id"]} changed state; try again')
        board_uuid = board.post(job['id'], job['workflow'])
        self.records.update_job(job['id'], board_job=board_uuid)
        return self.records.get_job(job['id'])

    def waiting_gate(self, job_id):
        """``(job, gate)``: the job and the gate it waits at (or None)."""
        job = self._job(job_id)
        waiting = gates.parse(job['gate'])['waiting']
        if job['state'] != states.PAUSED:
            waiting = None
        return job, waiting

    def approve(self, job_id, gate=None):
        """Approve the gate a PAUSED job waits at, then resume it.

        :param gate: optional gate key; refused unless it is the one the
            job waits at (guards against approving a newer question by
            accident).
        :raises InvalidJobState: the job is not PAUSED at a gate (nothing
            is changed).
        """
        job, waiting = self.waiting_gate(job_id)
        if waiting is None:
            raise exceptions.InvalidJobState(
                f'job {job["id"]} is {job["state"]} and not waiting at an '
                f'approval gate; nothing to approve')
        if gate and gate != waiting['gate']:
            raise exceptions.InvalidJobState(
                f'job {job["id"]} waits at gate {waiting["gate"]!r}, not '
                f'{gate!r}')
        if job['mode'] == 'board' and self.board_enabled:
            self.board()        # unreachable board: fail before changing
        return self.resume(job['id'])

    def _answer_gate(self, job):
        state = gates.parse(job['gate'])
        if not state['waiting']:
            return None
        new, key = gates.approve(state, rec.isoformat(rec.utcnow()),
                                 gates.operator())
        ok = self.records.update_job(job['id'],
                                     expect_states=(states.PAUSED,),
                                     gate=gates.dump(new))
        if not ok:
            raise exceptions.InvalidJobState(
                f'job {job["id"]} changed state; try again')
        LOG.info('job %s: gate %s approved', job['id'], key)
        return key

    def reject(self, job_id, reason=None):
        """Reject the gate a PAUSED job waits at: the job ends CANCELLED.

        Its reason reads ``rejected at gate KEY by WHO: MESSAGE`` plus the
        runbook's advice for this case; targets not started are SKIPPED.

        :raises InvalidJobState: the job is not PAUSED at a gate.
        """
        job, waiting = self.waiting_gate(job_id)
        if waiting is None:
            raise exceptions.InvalidJobState(
                f'job {job["id"]} is {job["state"]} and not waiting at an '
                f'approval gate; nothing to reject (use "cancel")')
        new, text = gates.reject(gates.parse(job['gate']),
                                 rec.isoformat(rec.utcnow()),
                                 gates.operator(), reason)
        ok = self.records.transition(
            job['id'], states.CANCELLED, expect=(states.PAUSED,),
            control=states.NO_CONTROL, gate=gates.dump(new),
            finished_at=rec.utcnow(), reason=text)
        if not ok:
            raise exceptions.InvalidJobState(
                f'job {job["id"]} changed state; try again')
        self.records.skip_pending(job['id'], 'job rejected at a gate')
        LOG.info('job %s: %s', job['id'], text)
        return self.records.get_job(job['id'])

    def _unpost(self, job):
        """Remove an unclaimed job from the board; True if removed."""
        if job['mode'] != 'board' or not job['board_job']:
            return True
        board = self.board()
        if board.find(job['board_job']) is None:
            # gone from the board (e.g. a posting a Redis failover lost):
            # no conductor can run it
            return True
        return board.remove(job['board_job'], inline_owner())

    def purge(self, older_than_days):
        """Delete finished jobs last updated more than N days ago."""
        cutoff = rec.utcnow() - datetime.timedelta(days=older_than_days)
        ids = self.records.finished_before(cutoff)
        for job_id in ids:
            self.persistence.forget_logbook(job_id)
            self.records.delete_job(job_id)
        return ids


def view(job, progress, targets=None):
    """A job record shaped for output (see design.md, ``show -f json``)."""
    out = {
        'id': job['id'],
        'workflow': job['workflow'],
        'state': job['state'],
        'owner': job['owner'],
        'mode': job['mode'],
        'cloud': job['cloud'],
        'parameters': job['parameters'],
        'created_at': rec.isoformat(job['created_at']),
        'updated_at': rec.isoformat(job['updated_at']),
        'started_at': rec.isoformat(job['started_at']),
        'finished_at': rec.isoformat(job['finished_at']),
        'reason': job['reason'],
        # the schedule that posted the job (None: submitted by hand)
        'schedule': job.get('schedule'),
        'gate': None,
        'paused_by': None,
        'approvals': [],
        'progress': {k: progress[k] for k in
                     ('total', 'done', 'failed', 'skipped', 'running')},
    }
    gate = gates.parse(job['gate'])
    if job['state'] == states.PAUSED:
        out['gate'] = gates.message(gate)
    out['paused_by'] = states.paused_by(job['state'], job['reason'],
                                        bool(out['gate']))
    out['approvals'] = sorted(
        ({'gate': key, 'at': value.get('at'), 'by': value.get('by')}
         for key, value in gate['approved'].items()),
        key=lambda a: (a['at'] or '', a['gate']))
    if targets is not None:
        out['targets'] = [{
            'target': t['target'],
            'action': t['action'],
            'state': t['state'],
            'attempts': t['attempts'],
            'started_at': rec.isoformat(t['started_at']),
            'finished_at': rec.isoformat(t['finished_at']),
            'error': t['error'],
            # why a PENDING target does not start yet (the fleet budget,
            # a load balancer another job holds), else null
            'waiting': ((t.get('details') or {}).get('waiting')
                        if t['state'] == states.PENDING else None),
        } for t in targets]
    return out
