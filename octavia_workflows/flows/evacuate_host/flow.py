"""The steps of ``evacuate-host``: disable the host's compute service
once (:class:`DisableComputeService`), fail over each amphora on it
(the amphora steps, started by :class:`StartEvacuation`), verify the
host is left empty (:class:`VerifyHostEmpty`); and the flow factories.
"""

from taskflow.patterns import linear_flow

from octavia_workflows import exceptions, states
from octavia_workflows.flows.evacuate_host import (
    DISABLE,
    FAILOVER,
    NAME,
    VERIFY,
    disable_reason,
    left_on_host,
)
from octavia_workflows.machinery import (
    amphora,
    amphora_plan,
    hosts,
    retry,
    shape,
    steps,
)
from octavia_workflows.machinery.target import TargetRun


class HostTask(steps.TargetTask):
    """A host-level step (not paced); runs once, transient errors are
    retried."""

    paced = False

    def execute(self, context):
        target = self.lifecycle(context)
        record = target.record()
        if record is None or record.finished:
            return record.state if record else None
        try:
            return self.run(context, context.cloud(), target, record)
        except exceptions.CloudError as exc:
            return retry.retry_later_or(
                context, exc, lambda e: self.failed(context, target, e))

    def run(self, context, cloud, target, record):
        raise NotImplementedError

    def failed(self, context, target, exc):
        return target.fail(exc)


class DisableComputeService(HostTask):
    """Disable scheduling on the host (once; a disabled service is left
    alone).  A permanent failure stops the job before any failover.

    It first takes the host's fleet lock (``host:<host>``), which the job
    then holds to its end: while another job (a cleanup-node of the same
    host) has it, this waits, saying so for ``show``; after ``[fleet]
    lock_timeout`` it is SKIPPED ``in use by job <id>``, and so is every
    target not started yet (no amphora is failed over off a host whose
    scheduling was not disabled)."""

    step = 'disable'

    def run(self, context, cloud, target, record):
        host = self.details['host']
        keys = self.fleet_keys(context)
        if record.state == states.PENDING:
            if context.stopping:
                retry.backoff(context)
                raise retry.NotYet('the job is stopping: nothing starts')
            busy = steps.hold_or_wait(context, target, record, keys)
            if isinstance(busy, str):
                target.skip(busy)
                _skip_pending(context, f'not started: {host} is {busy}')
                return states.SKIPPED
            service = cloud.get_compute_service(host)
            extra = {'waiting': None} if record.details.get('waiting') \
                else {}
            target.begin(before=_service(service), **extra)
            record = target.record()
            if service.get('status') == 'disabled':
                return target.done(after=_service(service))
        else:
            # run again after a crash: our earlier call may have happened
            steps.hold_in_flight(context, target, keys)
            service = cloud.get_compute_service(host)
            if service.get('status') == 'disabled':
                return target.done(after=_service(service))
        context.fence()
        service = cloud.disable_compute_service(
            host, disable_reason(context.params, context.job_id))
        if service.get('status') != 'disabled':
            raise exceptions.CloudRequestError(
                f'the compute service of {host} is still '
                f'{service.get("status")} after disabling it')
        return target.done(after=_service(service))

    def failed(self, context, target, exc):
        reason = f'the compute service could not be disabled: {exc}'
        target.fail(exc)
        _skip_pending(context, f'not started: {reason}')
        raise exceptions.CloudRequestError(
            f'{reason}; no amphora was failed over')


def _skip_pending(context, reason):
    """SKIP every target of the job that has not started, with
    ``reason``."""
    for other in context.records.get_targets(
            context.job_id, states=[states.PENDING]):
        TargetRun(context, other['target'], paced=False).skip(reason)


def _service(service):
    return {'status': service.get('status'),
            'disabled_reason': service.get('disabled_reason')}


class StartEvacuation(amphora.StartAmphoraFailover):
    """Re-check the amphora and its load balancer, and that its VM is
    still on the host."""

    @staticmethod
    def read(cloud, details):
        data = amphora.StartAmphoraFailover.read(cloud, details)
        try:
            server = cloud.get_server(details['compute_id'])
        except exceptions.CloudNotFound:
            server = None
        return data, server

    def judge(self, context, data):
        amphora_data, server = data
        reason, before = super().judge(context, amphora_data)
        if reason:
            return reason, before
        host = self.details['host']
        if server is None:
            return f'its server is gone from {host}', None
        if server.get('host') != host:
            return f'no longer on {host} (now on {server.get("host")})', None
        before['host'] = host
        return None, before


class VerifyHostEmpty(HostTask):
    """No amphora of an ACTIVE load balancer may be left on the host."""

    step = 'verify'

    def run(self, context, cloud, target, record):
        host = self.details['host']
        if record.state == states.PENDING:
            target.begin()
        servers = cloud.list_servers_on_host(host)
        amphorae = cloud.list_amphorae()
        pairs = hosts.on_host(servers, amphorae)
        lbs, _ = amphora_plan.gather(cloud, [a for a, _ in pairs])
        active, other = left_on_host(servers, amphorae, lbs)
        after = {'servers_on_host': len(servers), 'amphorae_left': active,
                 'left_not_active': other}
        if active:
            return target.fail(
                f'{len(active)} amphora(e) of ACTIVE load balancers still '
                f'on {host}: {", ".join(active)}', after=after)
        return target.done(after=after)


def _host_flow(target, task):
    return linear_flow.Flow(f'{NAME}:{target}', retry=retry.Again(
        f'{NAME}:{target}:retry')).add(task)


def evacuate_host_flow(params, targets):
    """Factory of earlier releases: disable (if planned), then lanes of
    start / failover / wait atoms per amphora, then the verification."""
    return _flow(params, targets, lambda amps: amphora.amphora_flow(
        NAME, params, amps, StartEvacuation))


def evacuate_host_flow_v2(params, targets):
    """Factory: disable (if planned), then at most ``concurrency`` lanes
    of one atom each for the amphorae, then the verification."""
    return _flow(params, targets, lambda amps: amphora.amphora_lanes(
        NAME, params, amps, StartEvacuation))


def _flow(params, targets, amphora_part):
    disable = [t for t in targets if t['action'] == DISABLE]
    amps = [t for t in targets if t['action'] == FAILOVER]
    verify = [t for t in targets if t['action'] == VERIFY]
    if not (disable or amps or verify):
        return shape.build(NAME, params, [], None)
    flow = linear_flow.Flow(f'{NAME}:job')
    for item in disable:
        flow.add(_host_flow(item['target'], DisableComputeService(
            NAME, item['target'], item['details'])))
    if amps:
        flow.add(amphora_part(amps))
    for item in verify:
        flow.add(_host_flow(item['target'], VerifyHostEmpty(
            NAME, item['target'], item['details'])))
    return flow
