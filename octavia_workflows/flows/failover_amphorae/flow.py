"""The steps of ``failover-amphorae``: the shared amphora steps with a
start (:class:`StartStoppedFailover`) that also accepts amphorae in
FAILOVER_STOPPED; and the flow factories.
"""


from octavia_workflows import states
from octavia_workflows.flows.failover_amphorae import NAME, STOPPED
from octavia_workflows.machinery import amphora, shape


class StartStoppedFailover(amphora.StartAmphoraFailover):
    """The start of a FAILOVER_STOPPED amphora: as any amphora failover,
    and the amphora must still be FAILOVER_STOPPED and (with
    ``stop_at_threshold``) at least the threshold of amphorae stale,
    not counting this job's own failovers in flight.  Fresh reads only
    (no read-ahead): a count read ahead would be old."""

    read = None

    def recheck(self, context, cloud):
        data = amphora.StartAmphoraFailover.read(cloud, self.details)
        reason, before = self.judge(context, data)
        if reason or data is None:
            return reason, before
        amp = data[0]
        if amp.get('status') != STOPPED:
            return (f'amphora is {amp.get("status")} now, no longer '
                    f'{STOPPED} (its heartbeats came back)'), None
        threshold = self.details.get('stale_threshold')
        if threshold:
            stale = {a['id'] for a in cloud.list_amphorae(status=STOPPED)
                     if a.get('status') == STOPPED}
            flying = set(context.records.target_states(
                context.job_id, (states.RUNNING,))) - {self.target}
            count = len(stale - flying)
            if count < threshold:
                return (f'fewer than failover_threshold={threshold} '
                        f'amphorae are stale now ({count}): the health '
                        f'manager has resumed automatic failover'), None
        return None, before


def failover_amphorae_flow(params, targets):
    """Factory of earlier releases: lanes (one load balancer's amphorae
    in one lane) of start / failover / wait atoms per amphora."""
    return amphora.amphora_flow(NAME, params, targets)


def failover_amphorae_flow_v2(params, targets):
    """Factory of earlier releases: lanes (one load balancer's amphorae
    in one lane) of one start-failover-wait atom per amphora."""
    return amphora.amphora_flow(NAME, params, targets,
                                target_flow=shape.compact_target_flow)


def failover_amphorae_flow_v3(params, targets):
    """Factory: at most ``concurrency`` lanes of one atom each, however
    many amphorae (one load balancer's amphorae in one lane)."""
    start = StartStoppedFailover if params.get('status') == STOPPED \
        else amphora.StartAmphoraFailover
    return amphora.amphora_lanes(NAME, params, targets, start)
