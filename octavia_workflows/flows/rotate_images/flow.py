"""The steps of ``rotate-images``: re-check that the load balancer is
ACTIVE and still stale (:class:`StartRotation`), fail it over once
(:class:`FailoverLoadBalancer`), wait and verify its amphorae were
replaced on the wanted image (:class:`WaitForLoadBalancer`); and the
flow factories.
"""


from octavia_workflows import exceptions, states
from octavia_workflows.flows.rotate_images import NAME, stale_reason
from octavia_workflows.machinery import inventory, lanes, shape, steps


class StartRotation(steps.StartTarget):
    """Re-check that the load balancer is ACTIVE and still stale; record
    its amphora and image ids."""

    @staticmethod
    def read(cloud, details):
        try:
            return cloud.get_load_balancer_and_amphorae(details['lb'])
        except exceptions.CloudNotFound:
            return None

    def judge(self, context, data):
        if data is None:
            return 'load balancer no longer exists', None
        lb, amps = data
        reason = (inventory.lb_skip_reason(lb, amps)
                  or stale_reason(amps, self.details.get('want_image'),
                                  self.details.get('created_before')))
        before = inventory.snapshot(amps)
        before['operating_status'] = lb.get('operating_status')
        return reason, before


class FailoverLoadBalancer(steps.ActOnTarget):
    """Fence, then fail over the load balancer (once)."""

    def already_done(self, context, cloud, record):
        lb_id = self.details['lb']
        lb = cloud.get_load_balancer(lb_id)
        status = lb.get('provisioning_status')
        if status != inventory.ACTIVE:
            # PENDING_UPDATE: our call is under way; ERROR: it ran and
            # failed (the target was ACTIVE when it started).
            return True
        before = set((record.before or {}).get('amphorae') or [])
        now = {a['id'] for a in inventory.live(
            cloud.list_amphorae(loadbalancer_id=lb_id))}
        return now != before

    def call(self, cloud, record):
        cloud.failover_load_balancer(self.details['lb'])


class WaitForLoadBalancer(steps.WaitForTarget):
    """Short check for ACTIVE; verify the amphorae were replaced."""

    def verify(self, context, cloud, record, lb):
        return verify_replaced(cloud, record, lb,
                               self.details.get('want_image'))


def verify_replaced(cloud, record, lb, want_image=None):
    """``(state, error, after)`` for a load balancer that settled after a
    load-balancer failover."""
    status = lb.get('provisioning_status')
    if status == 'DELETED':
        return states.FAILED, 'the load balancer was deleted', None
    after = inventory.snapshot(cloud.list_amphorae(
        loadbalancer_id=lb['id']))
    if status != inventory.ACTIVE:
        return (states.FAILED,
                f'the load balancer is {status} after its failover', after)
    return judge(record.before or {}, after, want_image)


def judge(before, after, want_image=None):
    """Compare snapshots: ``(state, error, after)``."""
    kept = sorted(set(before.get('amphorae') or [])
                  & set(after.get('amphorae') or []))
    if kept:
        return (states.FAILED,
                f'amphorae not replaced: {", ".join(kept)}', after)
    if not after.get('amphorae'):
        return states.FAILED, 'no amphora in service after failover', after
    if want_image:
        other = [i for i in after.get('images') or [] if i != want_image]
        if other or not after.get('images'):
            return (states.FAILED,
                    f'amphorae replaced but on image '
                    f'{", ".join(other) or "unknown"}, not {want_image} '
                    f'(check Octavia amp_image_tag / amp_image_id)', after)
    return states.DONE, None, after


def _flow(params, targets, target_flow):
    def make(item):
        target, details = item['target'], item['details']
        return target_flow(
            NAME, target,
            StartRotation(NAME, target, details),
            FailoverLoadBalancer(NAME, target, details),
            WaitForLoadBalancer(NAME, target, details))

    return shape.build(NAME, params, targets, make)


def rotate_images_flow(params, targets):
    """Factory of earlier releases: lanes of start / failover / wait
    atoms per load balancer."""
    return _flow(params, targets, shape.target_flow)


def rotate_images_flow_v2(params, targets):
    """Factory of earlier releases: lanes of one start-failover-wait
    atom per load balancer (:func:`shape.compact_target_flow`)."""
    return _flow(params, targets, shape.compact_target_flow)


def rotate_images_flow_v3(params, targets):
    """Factory: at most ``concurrency`` lanes, one atom each, however
    many load balancers (:mod:`octavia_workflows.machinery.lanes`)."""
    return lanes.build(NAME, params, targets, lanes.steps_of(
        NAME, StartRotation, FailoverLoadBalancer, WaitForLoadBalancer))
