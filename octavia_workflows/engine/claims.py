"""Claims: who may work on a job right now, and the fencing check.

Two kinds, one interface:

- :class:`BoardClaim`: a claim on the jobboard, renewed by a keep-alive
  thread every third of ``jobboard_expiration_time`` (owner-checked).
- :class:`InlineClaim`: the embedded mode's lease in the job's record
  (owner + heartbeat), so two hosts cannot run one job inline at once.

``check()`` is the fencing check a task calls before every change to the
cloud: it asks the backend live and raises
:class:`~octavia_workflows.exceptions.ClaimLost` when the claim is gone.
While the backend is unreachable it keeps asking until the claim would
have expired anyway, then declares it lost, so a restarted Redis does
not kill a healthy run but a partition cannot outlive the expiry.
"""

import logging
import threading
import time

from octavia_workflows import exceptions
from octavia_workflows.engine import coordination
from octavia_workflows.engine import records as rec

LOG = logging.getLogger(__name__)


class Claim:
    """Base: ``lost`` flag, ``check()``, ``start()``/``stop()``."""

    def __init__(self, job_id, owner, expiry):
        self.job_id = job_id
        self.owner = owner
        self.expiry = float(expiry)
        self.lost_event = threading.Event()
        self._stop = threading.Event()
        self._thread = None
        self._last_ok = time.monotonic()
        #: The run's fleet entries (:mod:`.coordination`), renewed with
        #: the claim.
        self.fleet = coordination.Uncoordinated()

    @property
    def lost(self):
        return self.lost_event.is_set()

    def _owns(self):
        """True/False, or raise BackendUnavailable."""
        raise NotImplementedError

    def _renew(self):
        """True/False, or raise BackendUnavailable."""
        raise NotImplementedError

    def mark_lost(self, why):
        if not self.lost_event.is_set():
            LOG.warning('job %s: claim of %s lost: %s', self.job_id,
                        self.owner, why)
        self.lost_event.set()

    def check(self):
        """Fencing: raise ClaimLost unless this owner holds the claim."""
        while True:
            if self.lost:
                raise exceptions.ClaimLost(
                    f'job {self.job_id} is no longer claimed by {self.owner}')
            try:
                if self._owns():
                    self._last_ok = time.monotonic()
                    return
                self.mark_lost('the jobboard no longer records it as ours')
            except exceptions.BackendUnavailable as exc:
                if time.monotonic() - self._last_ok > self.expiry:
                    self.mark_lost(f'cannot confirm it: {exc}')
                else:
                    time.sleep(min(0.5, self.expiry / 10))

    def start(self):
        """Start keeping the claim alive in a daemon thread."""
        self._thread = threading.Thread(
            target=self._keepalive, name=f'claim-{self.job_id[:8]}',
            daemon=True)
        self._thread.start()

    def stop(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _keepalive(self):
        interval = max(0.2, self.expiry / 3.0)
        while not self._stop.wait(interval):
            if self.lost:
                return
            try:
                if self._renew():
                    self._last_ok = time.monotonic()
                    self.fleet.keep()
                else:
                    self.mark_lost('renewal refused')
                    return
            except exceptions.BackendUnavailable as exc:
                LOG.warning('job %s: cannot renew claim: %s', self.job_id,
                            exc)
                if time.monotonic() - self._last_ok > self.expiry:
                    self.mark_lost('not renewed within the expiry')
                    return
            except Exception:
                LOG.exception('job %s: claim keep-alive failed', self.job_id)


class BoardClaim(Claim):
    """A jobboard claim held by ``owner``."""

    def __init__(self, job_id, owner, driver, board_job, fleet=None):
        super().__init__(job_id, owner, driver.expiry)
        self.driver = driver
        self.board_job = board_job
        if fleet is not None:
            self.fleet = fleet
            fleet.is_lost = lambda: self.lost

    def _owns(self):
        return self.driver.owns(self.board_job, self.owner)

    def _renew(self):
        return self.driver.renew(self.board_job, self.owner)


class InlineClaim(Claim):
    """The embedded mode's lease: ``owner`` + heartbeat in the job record."""

    def __init__(self, job_id, owner, records, expiry):
        super().__init__(job_id, owner, expiry)
        self.records = records

    def _owns(self):
        try:
            job = self.records.get_job(self.job_id)
        except Exception as exc:
            raise exceptions.BackendUnavailable(str(exc)) from exc
        return job is not None and job['owner'] == self.owner

    def _renew(self):
        try:
            return self.records.update_job(
                self.job_id, expect_owner=self.owner,
                heartbeat_at=rec.utcnow())
        except Exception as exc:
            raise exceptions.BackendUnavailable(str(exc)) from exc
