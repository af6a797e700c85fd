"""Conductor metrics (Prometheus text format) and a health endpoint.

:class:`Metrics` is the conductor's listener: the conductor and the runs
it drives call it with events (``claimed``, ``finished``, ``released``,
``lost``, ``target``, ``paused``) and it counts them in its own registry.
:meth:`Metrics.serve` answers on a loopback port (``[conductor]
metrics_port``):

- ``GET /metrics``: the counters and the target-duration histogram (for
  failover runbooks this is the amphora build time Octavia's maintenance
  guide asks operators to watch);
- ``GET /healthz``: ``200 ok`` while the conductor's dispatch loop runs
  and reaches the jobboard, ``503`` with the reason otherwise.

If the port cannot be bound, :meth:`serve` raises ``ConfigError``; leave
``metrics_port`` unset and nothing listens.
"""

import http.server
import logging
import threading
import time

import prometheus_client

from octavia_workflows import exceptions, states

LOG = logging.getLogger(__name__)

#: Seconds: from a quick no-op failover to a slow real amphora build.
DURATION_BUCKETS = (1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 1800)


class Metrics:
    """Counts conductor events; callable as ``metrics(event, **fields)``."""

    def __init__(self, conductor_name='', stale_after=30.0):
        self.registry = prometheus_client.CollectorRegistry()
        self.stale_after = stale_after
        self._last_poll = None
        self._board_error = None
        self._server = None
        reg = self.registry
        self.info = prometheus_client.Info(
            'octavia_workflows_conductor', 'This conductor', registry=reg)
        self.info.info({'name': conductor_name})
        self.claimed = prometheus_client.Counter(
            'octavia_workflows_jobs_claimed', 'Jobs claimed',
            ['workflow'], registry=reg)
        self.finished = prometheus_client.Counter(
            'octavia_workflows_jobs_finished',
            'Jobs that ended here, by final state', ['workflow', 'state'],
            registry=reg)
        self.released = prometheus_client.Counter(
            'octavia_workflows_jobs_released',
            'Jobs handed back to the board (stop, transient failure)',
            ['workflow'], registry=reg)
        self.abandoned = prometheus_client.Counter(
            'octavia_workflows_jobs_abandoned',
            'Jobs whose claim was lost while running here (fenced)',
            ['workflow'], registry=reg)
        self.targets = prometheus_client.Counter(
            'octavia_workflows_targets',
            'Targets finished, by state (DONE, FAILED, SKIPPED)',
            ['workflow', 'state'], registry=reg)
        self.duration = prometheus_client.Histogram(
            'octavia_workflows_target_duration_seconds',
            'Time from a target\'s start to its end (for failover runbooks:'
            ' the amphora build and failover time)', ['workflow'],
            buckets=DURATION_BUCKETS, registry=reg)
        self.pauses = prometheus_client.Counter(
            'octavia_workflows_job_pauses',
            'Jobs paused by a runbook itself (circuit breaker, approval '
            'gate)', ['workflow', 'kind'], registry=reg)
        self.running = prometheus_client.Gauge(
            'octavia_workflows_jobs_running', 'Jobs running now',
            registry=reg)

    # -- the listener -----------------------------------------------------
    def __call__(self, event, **fields):
        workflow = fields.get('workflow') or 'unknown'
        if event == 'claimed':
            self.claimed.labels(workflow).inc()
            self.running.inc()
        elif event in ('finished', 'released', 'lost'):
            self.running.dec()
            if event == 'finished':
                self.finished.labels(workflow, fields.get('state')).inc()
            elif event == 'released':
                self.released.labels(workflow).inc()
            else:
                self.abandoned.labels(workflow).inc()
        elif event == 'target':
            self.targets.labels(workflow, fields.get('state')).inc()
            if fields.get('seconds') is not None and \
                    fields.get('state') != states.SKIPPED:
                self.duration.labels(workflow).observe(fields['seconds'])
        elif event == 'paused':
            self.pauses.labels(workflow, fields.get('kind', 'runbook')).inc()
        elif event == 'poll':
            self._last_poll = time.monotonic()
            self._board_error = fields.get('error')

    # -- health -----------------------------------------------------------
    def health(self):
        """``(ok, reason)`` for ``/healthz``."""
        if self._last_poll is None:
            return False, 'conductor has not polled the jobboard yet'
        age = time.monotonic() - self._last_poll
        if age > self.stale_after:
            return False, f'dispatch loop stalled for {age:.0f} s'
        if self._board_error:
            return False, f'jobboard unreachable: {self._board_error}'
        return True, 'ok'

    def exposition(self):
        return prometheus_client.generate_latest(self.registry)

    # -- the HTTP endpoint --------------------------------------------------
    def serve(self, host, port):
        """Answer /metrics and /healthz on ``host:port`` in a thread."""
        metrics = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                path = self.path.split('?', 1)[0]
                if path == '/metrics':
                    body = metrics.exposition()
                    status = 200
                    ctype = prometheus_client.CONTENT_TYPE_LATEST
                elif path == '/healthz':
                    ok, reason = metrics.health()
                    body = (reason + '\n').encode()
                    status = 200 if ok else 503
                    ctype = 'text/plain; charset=utf-8'
                else:
                    body, status, ctype = b'not found\n', 404, 'text/plain'
                self.send_response(status)
                self.send_header('Content-Type', ctype)
                self.send_header('Content-Length', str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, fmt, *args):
                LOG.debug('metrics: ' + fmt, *args)

        try:
            self._server = http.server.ThreadingHTTPServer((host, port),
                                                           Handler)
        except OSError as exc:
            raise exceptions.ConfigError(
                f'[conductor] metrics_port: cannot listen on {host}:{port}: '
                f'{exc.strerror or exc}') from exc
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever,
                         name='metrics', daemon=True).start()
        LOG.info('metrics on http://%s:%d/metrics', host,
                 self._server.server_address[1])
        return self._server.server_address[1]

    def close(self):
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
