"""The fleet census as Prometheus gauges, taken by one conductor at a time.

:class:`FleetGauges` holds the ``octavia_workflows_fleet_*`` gauges in
the conductor's metrics registry and sets them from a census document
(:mod:`octavia_workflows.cloud.census`).  Their labels are bounded by
the fleet's shape, never by its size: statuses, topologies, age and
expiry buckets, the image tag and image ids (a fleet runs a handful of
images), never a load balancer or amphora id.

:class:`FleetAudit` refreshes them every ``[fleet] audit_interval``
seconds in a thread of its own (a census of ten thousand load balancers
takes seconds; the dispatch loop never waits for it).  Only the
conductor holding the ``fleet-audit`` lease on the jobboard takes the
census; the others export no fleet figures (``..._audit_leader`` 0), so
a sum or max over every conductor counts the fleet once.  The lease is
renewed at each refresh and expires ``2 * interval + 60`` seconds after
the last one, so another conductor takes over when the holder dies; a
conductor that stops gives it back at once.

What happens on failure: a census or lease call that fails (the cloud
or the jobboard unreachable, any error) is logged as a warning and
counted in ``octavia_workflows_fleet_audit_failures_total``; the gauges
keep their last values (``..._audit_timestamp_seconds`` shows their
age) and the next refresh tries again.  It never stops the conductor.
"""

import logging
import re
import threading
import time

import prometheus_client

from octavia_workflows import cloud
from octavia_workflows.cloud import census

LOG = logging.getLogger(__name__)

LEASE = 'fleet-audit'
PREFIX = 'octavia_workflows_fleet'


def lease_ttl(interval):
    """Seconds the lease lives without a refresh."""
    return 2 * interval + 60


def slug(bucket):
    """A bucket name as a label value: ``'< 7 days'`` -> ``'lt_7_days'``."""
    return re.sub(r'[^a-z0-9]+', '_',
                  bucket.lower().replace('<', 'lt')).strip('_')


class FleetGauges:
    """The fleet gauges in ``registry`` (see the module docstring)."""

    def __init__(self, registry):
        def gauge(name, text, labels=()):
            return prometheus_client.Gauge(f'{PREFIX}_{name}', text,
                                           list(labels), registry=registry)

        self.lbs = gauge('loadbalancers', 'Load balancers by provisioning '
                         'and operating status',
                         ('provisioning_status', 'operating_status'))
        self.topology = gauge('loadbalancers_by_topology', 'Load balancers '
                              'by topology (NONE: no live amphorae)',
                              ('topology',))
        self.stuck = gauge('stuck_loadbalancers', 'Load balancers PENDING_* '
                           'not updated for stuck_minutes or more')
        self.stuck_minutes = gauge('stuck_minutes', 'Minutes after which a '
                                   'PENDING_* load balancer counts as stuck')
        self.amphorae = gauge('amphorae', 'Live amphorae by image id (none: '
                              'no image recorded)', ('image',))
        self.amp_status = gauge('amphorae_by_status', 'Amphorae by status',
                                ('status',))
        self.amp_age = gauge('amphorae_by_age', 'Live amphorae by age bucket',
                             ('age',))
        self.stale_amps = gauge('amphorae_not_newest_image', 'Live amphorae '
                                'not on the newest active image carrying the '
                                'tag', ('tag',))
        self.stale_lbs = gauge('loadbalancers_not_newest_image', 'Load '
                               'balancers with an amphora not on the newest '
                               'image carrying the tag', ('tag',))
        self.certs = gauge('certificates', 'Live amphorae by certificate '
                           'expiry bucket', ('expiry',))
        self.soonest = gauge('certificate_expiry_soonest_seconds', 'Seconds '
                             'until the soonest amphora certificate expiry '
                             '(negative: expired; +Inf: no certificate)')
        self.taken = gauge('audit_timestamp_seconds', 'When the census '
                           'these figures come from was taken (Unix time)')
        self.duration = gauge('audit_duration_seconds', 'How long the last '
                              'census took')
        self.leader = gauge('audit_leader', '1 if this conductor takes the '
                            'fleet census (holds the lease), else 0')
        self.failures = prometheus_client.Counter(
            f'{PREFIX}_audit_failures', 'Censuses or lease calls that failed',
            registry=registry)
        self._labelled = (self.lbs, self.topology, self.amphorae,
                          self.amp_status, self.amp_age, self.stale_amps,
                          self.stale_lbs, self.certs)
        self._plain = (self.stuck, self.stuck_minutes, self.soonest,
                       self.taken, self.duration)
        self.clear()

    def update(self, doc, seconds=None, when=None):
        """Set every gauge from a census document (labels that vanished
        from the fleet vanish from the gauges)."""
        for item in self._labelled:
            item.clear()
        for row in doc['load_balancers']['by_status']:
            self.lbs.labels(row['provisioning_status'],
                            row['operating_status']).set(row['count'])
        for topo, count in doc['load_balancers']['by_topology'].items():
            self.topology.labels(topo).set(count)
        for row in doc['images']['by_image']:
            self.amphorae.labels(row['id'] or 'none').set(row['amphorae'])
        for status, count in doc['amphorae']['by_status'].items():
            self.amp_status.labels(status).set(count)
        for row in doc['amphorae']['by_age']:
            self.amp_age.labels(slug(row['bucket'])).set(row['count'])
        images = doc['images']
        if images['newest'] is not None:
            self.stale_amps.labels(images['tag']).set(
                images['amphorae_not_newest'])
            self.stale_lbs.labels(images['tag']).set(
                images['load_balancers_not_newest'])
        certs = doc['certificates']
        for row in certs['by_expiry']:
            self.certs.labels(slug(row['bucket'])).set(row['count'])
        self.soonest.set(float('inf') if certs['soonest_seconds'] is None
                         else certs['soonest_seconds'])
        self.stuck.set(doc['stuck']['count'])
        self.stuck_minutes.set(doc['stuck']['older_than_minutes'])
        self.taken.set(time.time() if when is None else when)
        if seconds is not None:
            self.duration.set(seconds)

    def clear(self):
        """Export no fleet figures (this conductor does not hold the
        lease): no labelled series, NaN for the others."""
        for item in self._labelled:
            item.clear()
        for item in self._plain:
            item.set(float('nan'))
        self.leader.set(0)


class FleetAudit:
    """Refreshes :class:`FleetGauges` while holding the jobboard lease.

    :param gauges: the :class:`FleetGauges` to set.
    :param take: callable returning a census document.
    :param board: a connected jobboard driver (``try_lease``,
        ``release_lease``).
    :param holder: this conductor's unique name.
    :param interval: seconds between refreshes (> 0).
    """

    def __init__(self, gauges, take, board, holder, interval):
        self.gauges = gauges
        self.take = take
        self.board = board
        self.holder = holder
        self.interval = interval
        self.ttl = lease_ttl(interval)
        self._stop = threading.Event()
        self._thread = None
        self._leading = False

    def refresh(self):
        """One turn: take (or keep) the lease, then the census.  Returns
        True if the gauges were set now.  Never raises."""
        try:
            leading = self.board.try_lease(LEASE, self.holder, self.ttl)
        except Exception as exc:
            self._failed('taking the fleet-audit lease', exc)
            return False
        if not leading:
            if self._leading:
                LOG.info('fleet census: %s no longer holds the lease',
                         self.holder)
            self._leading = False
            self.gauges.clear()
            return False
        if not self._leading:
            LOG.info('fleet census: taken by %s every %d s', self.holder,
                     self.interval)
        self._leading = True
        self.gauges.leader.set(1)
        started = time.monotonic()
        try:
            doc = self.take()
        except Exception as exc:
            self._failed('taking the fleet census', exc)
            return False
        self.gauges.update(doc, seconds=time.monotonic() - started)
        return True

    def _failed(self, what, exc):
        self.gauges.failures.inc()
        message = str(exc).strip().splitlines()[0] if str(exc) else \
            type(exc).__name__
        LOG.warning('fleet census: %s failed: %s', what, message)

    def run(self):
        while not self._stop.is_set():
            self.refresh()
            self._stop.wait(self.interval)

    def start(self):
        self._thread = threading.Thread(target=self.run, name='fleet-audit',
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout=5.0):
        """Stop refreshing and give the lease back (another conductor
        takes the census at its next turn)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._leading:
            try:
                self.board.release_lease(LEASE, self.holder)
            except Exception as exc:
                LOG.warning('fleet census: releasing the lease failed: %s',
                            exc)
            self._leading = False
        self.gauges.clear()


def census_taker(cloud_name, tag, connect=cloud.connect,
                 older_than_minutes=60):
    """A callable taking the census of ``cloud_name``: connected on first
    use, connected afresh after a failed census."""
    held = {}

    def take():
        if 'cloud' not in held:
            held['cloud'] = connect(cloud_name)
        try:
            return census.take(held['cloud'], tag,
                               older_than_minutes=older_than_minutes)
        except Exception:
            held.pop('cloud', None)
            raise

    return take


def start(conf, gauges, board, holder, cloud_name, connect=cloud.connect):
    """The running :class:`FleetAudit` of a conductor, or None when
    ``[fleet] audit_interval`` is 0 or no cloud is configured."""
    interval = conf.fleet.audit_interval
    if not interval:
        return None
    if not cloud_name:
        # Jobs name their own cloud; a conductor need not have one.
        LOG.info('fleet census off: no cloud configured ([cloud] name or '
                 '--os-cloud)')
        return None
    take = census_taker(cloud_name, conf.fleet.image_tag, connect)
    return FleetAudit(gauges, take, board, holder, interval).start()
