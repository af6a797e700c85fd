"""The steps of ``cleanup-node``: re-check a leftover server
(:class:`StartCleanup`), delete it once (:class:`DeleteServer`), wait
until Nova has it gone (:class:`WaitServerGone`); and the flow factories.
"""

import time

from octavia_workflows import exceptions
from octavia_workflows.flows.cleanup_node import NAME, recheck_server
from octavia_workflows.machinery import lanes, retry, shape, steps


class StartCleanup(steps.StartTarget):
    """Pacing slot; re-check the server; with apply=false stop here."""

    def fleet_keys(self, context):
        # a report changes nothing: it neither waits for nor blocks a
        # job that acts on the host
        if not context.params.get('apply'):
            return []
        return super().fleet_keys(context)

    def recheck(self, context, cloud):
        reason, facts = recheck_server(
            cloud, context.params['host'], self.target,
            context.params['name_prefix'])
        if reason:
            return reason, None
        if not context.params.get('apply'):
            return f'would delete (apply=false): {facts["evidence"]}', None
        return None, facts


class DeleteServer(steps.TargetTask):
    """Fence, then delete the server (once; a repeat only waits)."""

    step = 'act'

    def execute(self, context):
        target = self.lifecycle(context)
        record = target.running()
        if record is None or record.requested_at:
            return None
        cloud = context.cloud()
        try:
            if record.intent and _deletion_under_way(cloud, self.target):
                # our earlier call (its conductor died before recording
                # it) happened: only wait for it
                target.requested(recovered=True)
                return None
            if not record.intent:
                target.intend()
            context.fence()
            cloud.delete_server(self.target)
        except exceptions.CloudNotFound:
            pass        # gone already: our earlier call, or Nova's own
        except exceptions.CloudError as exc:
            retry.retry_later_or(context, exc, target.fail)
            return None
        target.requested()
        return None


def _deletion_under_way(cloud, server_id):
    """True if the server is gone or being deleted (raises CloudError)."""
    try:
        server = cloud.get_server(server_id)
    except exceptions.CloudNotFound:
        return True
    return (server.get('status') or '').upper() in ('DELETED',
                                                   'SOFT_DELETED') or \
        (server.get('task_state') or '') == 'deleting'


class WaitServerGone(steps.TargetTask):
    """Short check that the server disappeared from Nova."""

    step = 'wait'

    def execute(self, context):
        target = self.lifecycle(context)
        record = target.running()
        if record is None:
            return None
        timeout = float(context.params.get('target_timeout') or 900.0)
        deadline = time.monotonic() + min(retry.CHECK_WINDOW, timeout)
        cloud = context.cloud()
        while True:
            try:
                server = cloud.get_server(self.target)
            except exceptions.CloudNotFound:
                return target.done(after={'deleted': True})
            except exceptions.CloudError as exc:
                if not exc.transient:
                    return target.fail(exc)
                server = None
            if record.elapsed() >= timeout:
                status = server.get('status') if server else 'unknown'
                return target.fail(f'server still present ({status}) '
                                   f'{timeout:g} s after its deletion')
            if time.monotonic() >= deadline or context.claim.lost:
                raise retry.NotYet('the server is still being deleted')
            time.sleep(retry.TICK)


def cleanup_node_flow_v2(params, targets):
    """Factory: at most ``concurrency`` lanes of one atom each, however
    many servers."""
    return lanes.build(NAME, params, targets, lanes.steps_of(
        NAME, StartCleanup, DeleteServer, WaitServerGone),
        key=lambda item: item['target'])


def cleanup_node_flow(params, targets):
    """Factory of earlier releases: lanes of start / delete / wait atoms
    per server."""

    def make(item):
        target, details = item['target'], item['details']
        return shape.target_flow(
            NAME, target, StartCleanup(NAME, target, details),
            DeleteServer(NAME, target, details),
            WaitServerGone(NAME, target, details))

    return shape.build(NAME, params, targets, make,
                        key=lambda item: item['target'])
