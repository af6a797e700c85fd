"""Amphora targets: the steps several runbooks share to fail one over.

Used by ``failover-amphorae``, ``rotate-certificates`` and
``evacuate-host`` (each with its own start step where it re-checks
more).  What a target is and how it is chosen is planning
(:mod:`.amphora_plan`); here are its steps: re-check, fail over (the
amphora, or its load balancer to repair an ERROR one), wait and verify.
Amphorae of one load balancer share a lane and run one after the other.

What happens on failure: as for every paced step (:mod:`.steps`).
"""

from octavia_workflows import exceptions, states
from octavia_workflows.machinery import inventory, lanes, shape, steps
from octavia_workflows.machinery.amphora_plan import (
    LB_ACTION,
    action_for,
    amphora_skip_reason,
)


class StartAmphoraFailover(steps.StartTarget):
    """Re-check the amphora and its load balancer; record the ids."""

    repair = False

    def wanted(self, amp):
        """Extra reason to skip (rotate-certificates overrides)."""
        return None

    @staticmethod
    def read(cloud, details):
        try:
            amp = cloud.get_amphora(details['amphora'])
        except exceptions.CloudNotFound:
            return None
        lb, siblings = None, []
        if amp.get('loadbalancer_id'):
            try:
                lb, siblings = cloud.get_load_balancer_and_amphorae(
                    amp['loadbalancer_id'])
            except exceptions.CloudNotFound:
                lb = None
        return amp, lb, siblings

    def judge(self, context, data):
        if data is None:
            return 'amphora no longer exists (already replaced)', None
        amp, lb, siblings = data
        repair = bool(context.params.get('status') == 'ERROR')
        reason = (amphora_skip_reason(amp, lb, siblings, repair)
                  or self.wanted(amp))
        if reason:
            return reason, None
        before = inventory.snapshot(siblings)
        before['operating_status'] = lb.get('operating_status')
        before['amphora'] = self.details['amphora']
        before['via'] = action_for(lb, repair)
        return None, before


class FailoverAmphora(steps.ActOnTarget):
    """Fence, then fail over the amphora (or, to repair an ERROR load
    balancer, the load balancer) once."""

    def already_done(self, context, cloud, record):
        before = record.before or {}
        try:
            amp = cloud.get_amphora(self.details['amphora'])
        except exceptions.CloudNotFound:
            return True
        if amp.get('status') in inventory.GONE:
            return True
        lb = cloud.get_load_balancer(self.details['lb'])
        status = lb.get('provisioning_status')
        if status == inventory.ACTIVE:
            return False
        if status == inventory.ERROR:
            # Repairing an ERROR load balancer: still ERROR means our
            # call did not happen.  Otherwise it ended our failover.
            return before.get('via') != LB_ACTION
        return True

    def call(self, cloud, record):
        via = (record.before or {}).get('via')
        if via == LB_ACTION:
            cloud.failover_load_balancer(self.details['lb'])
        else:
            cloud.failover_amphora(self.details['amphora'])


class WaitForAmphora(steps.WaitForTarget):
    """Short check for the load balancer to settle; verify the amphora
    was replaced."""

    def verify(self, context, cloud, record, lb):
        status = lb.get('provisioning_status')
        if status == 'DELETED':
            return states.FAILED, 'the load balancer was deleted', None
        after = inventory.snapshot(cloud.list_amphorae(
            loadbalancer_id=lb['id']))
        if status != inventory.ACTIVE:
            return (states.FAILED,
                    f'the load balancer is {status} after the failover',
                    after)
        amp_id = self.details['amphora']
        if amp_id in after['amphorae']:
            return states.FAILED, f'amphora {amp_id} was not replaced', after
        return states.DONE, None, after


def amphora_flow(name, params, targets, start_cls=StartAmphoraFailover,
                 target_flow=shape.target_flow):
    """The flow of amphora targets: lanes (one load balancer's amphorae
    in one lane) of start / failover / wait per amphora, in the shape
    ``target_flow`` builds."""
    def make(item):
        target, details = item['target'], item['details']
        return target_flow(
            name, target, start_cls(name, target, details),
            FailoverAmphora(name, target, details),
            WaitForAmphora(name, target, details))

    return shape.build(name, params, targets, make)


def amphora_lanes(name, params, targets, start_cls=StartAmphoraFailover):
    """The flow of amphora targets as lanes of one atom each
    (:mod:`.lanes`; one load balancer's amphorae in one lane)."""
    return lanes.build(name, params, targets, lanes.steps_of(
        name, start_cls, FailoverAmphora, WaitForAmphora))
