"""The steps of ``reconfigure-amphorae``: re-check the amphora
(:class:`StartConfigure`), push the configuration once
(:class:`ConfigureAmphora`), verify it took by the heartbeats
(:class:`VerifyConfigured`); and the flow factories.
"""

import time

from octavia_workflows import exceptions
from octavia_workflows.flows.reconfigure_amphorae import (
    CONFIRMED,
    HEARTBEAT_POLL,
    MAX_RETRY_PAUSE,
    NAME,
    NO_DATABASE,
    NOT_CONFIRMED,
    _verifying,
    amphora_skip_reason,
)
from octavia_workflows.machinery import (
    amphora_health,
    inventory,
    lanes,
    retry,
    shape,
    steps,
)


class StartConfigure(steps.StartTarget):
    """Pacing slot; re-check the amphora and its load balancer."""

    def recheck(self, context, cloud):
        amp_id = self.details['amphora']
        try:
            amp = cloud.get_amphora(amp_id)
        except exceptions.CloudNotFound:
            return 'amphora no longer exists (replaced)', None
        lb = None
        if amp.get('loadbalancer_id'):
            try:
                lb = cloud.get_load_balancer(amp['loadbalancer_id'])
            except exceptions.CloudNotFound:
                lb = None
        reason = amphora_skip_reason(amp, lb)
        if reason:
            return reason, None
        before = {'amphora': amp_id, 'status': amp.get('status'),
                  'lb': lb['id'],
                  'lb_status': lb.get('provisioning_status'),
                  'lb_network_ip': amp.get('lb_network_ip')}
        url = amphora_health.connection(context.conf)
        if _verifying(context.params) and url is not None:
            before['last_heartbeat'] = amphora_health.last_updates(
                url, [amp_id])[amp_id]
        return None, before


class ConfigureAmphora(steps.TargetTask):
    """Fence, count the request, send it; bounded retries on transient
    errors.  Every request sent (or possibly sent) is counted before it
    goes out, so a request re-sent after a crash shows in the report.
    """

    step = 'act'

    def execute(self, context):
        target = self.lifecycle(context)
        record = target.running()
        if record is None or record.details.get('accepted_at'):
            return None
        details = record.details
        calls = int(details.get('calls') or 0)
        errors = int(details.get('transient_errors') or 0)
        cloud = context.cloud()
        if calls:
            # The earlier request may or may not have reached Octavia:
            # send it again (harmless) and count it as one more attempt.
            target.note(add_attempt=True, calls=calls + 1, resent=True)
        else:
            target.note(calls=1)
        context.fence()
        try:
            cloud.configure_amphora(self.details['amphora'])
        except exceptions.CloudNotFound:
            target.skip('amphora no longer exists (replaced before it was '
                        'configured; its replacement boots with the '
                        'current configuration)')
            return None
        except exceptions.CloudError as exc:
            limit = int(context.params.get('retries') or 0)

            def fail(exc):
                tries = f' (after {errors + 1} tries)' if exc.transient \
                    else ''
                return target.fail(f'{exc}{tries}',
                                   after=outcome(calls + 1, None, None,
                                                 False))

            if exc.transient and errors >= limit:
                fail(exc)
                return None
            if exc.transient:
                target.note(transient_errors=errors + 1,
                            last_error=str(exc))
            retry.retry_later_or(context, exc, fail,
                                 pause=min(MAX_RETRY_PAUSE, 2.0 ** errors))
            return None
        target.note(accepted_at=time.time())
        return None


def outcome(calls, amp, lb, accepted=True):
    """The report's "after": what was and was not confirmed."""
    confirmed = [CONFIRMED] if accepted else []
    if calls > 1:
        confirmed.append(f'request sent {calls} times (re-sent after an '
                         f'interruption or a transient error; a repeated '
                         f'push is harmless)')
    after = {'calls': calls, 'confirmed': confirmed,
             'not_confirmed': [NOT_CONFIRMED] if accepted else
             ['the request was not accepted']}
    if amp is not None or lb is not None:
        amp_status = amp.get('status') if amp else 'gone (replaced)'
        lb_status = lb.get('provisioning_status') if lb else 'gone'
        after['amphora_status'] = amp_status
        after['lb_status'] = lb_status
        if accepted:
            confirmed.append(f'afterwards the amphora is {amp_status} and '
                             f'its load balancer {lb_status}')
    return after


class VerifyConfigured(steps.TargetTask):
    """Look once at the amphora and its load balancer after the 202 and
    record what was confirmed; an amphora or load balancer in ERROR
    after the request FAILS the target."""

    step = 'verify'

    def execute(self, context):
        target = self.lifecycle(context)
        record = target.running()
        if record is None:
            return None
        if not record.details.get('accepted_at'):
            raise retry.NotYet('the request was not accepted yet')
        cloud = context.cloud()
        try:
            try:
                amp = cloud.get_amphora(self.details['amphora'])
            except exceptions.CloudNotFound:
                amp = None
            try:
                lb = cloud.get_load_balancer(self.details['lb'])
            except exceptions.CloudNotFound:
                lb = None
        except exceptions.CloudError as exc:
            amp = lb = retry.retry_later_or(context, exc, lambda e: None)
        after = outcome(int(record.details.get('calls') or 1), amp, lb)
        broken = [what for what, obj, key in (
            ('amphora', amp, 'status'),
            ('load balancer', lb, 'provisioning_status'))
            if obj is not None and obj.get(key) == inventory.ERROR]
        if broken:
            return target.fail(f'{" and ".join(broken)} in ERROR after the '
                               f'configure request', after=after)
        if amp is None or not _verifying(context.params):
            return target.done(after=after)
        return self._heartbeat(context, target, record, after)

    def _heartbeat(self, context, target, record, after):
        """DONE once Octavia recorded a heartbeat later than the last one
        before the push; FAILED after ``heartbeat_timeout`` without."""
        amp_id = self.details['amphora']
        timeout = float(context.params['heartbeat_timeout'])
        was = (record.before or {}).get('last_heartbeat')
        url = amphora_health.connection(context.conf)
        if url is None:
            return target.fail(f'cannot verify the heartbeats: {NO_DATABASE}',
                               after=after)
        try:
            seen = amphora_health.last_updates(url, [amp_id])[amp_id]
        except exceptions.CloudError as exc:
            return retry.retry_later_or(context, exc, lambda e: target.fail(
                f'cannot verify the heartbeats: {e}', after=after))
        after['last_heartbeat'] = seen
        if amphora_health.moved(was, seen):
            after['confirmed'].append(
                f'Octavia recorded a heartbeat from the amphora at {seen} '
                f'(before the push: {was or "never"}): its agent sends to a '
                f'running health manager')
            after['not_confirmed'] = []
            return target.done(after=after)
        since = float(record.details.get('accepted_at') or time.time())
        if time.time() - since < timeout:
            retry.backoff(context, HEARTBEAT_POLL)
            raise retry.NotYet(f'waiting for a heartbeat from amphora '
                               f'{amp_id}')
        after['not_confirmed'] = ['that the amphora agent follows the new '
                                  'health-manager list']
        return target.fail(
            f'no heartbeat from amphora {amp_id} reached a health manager '
            f'within {timeout:g} s of the configuration push (last recorded: '
            f'{was or "never"}): its agent did not follow the new '
            f'health-manager list (an agent older than the fix of Octavia '
            f'bug 2121691 keeps the old one until it restarts)', after=after)


def reconfigure_amphorae_flow_v2(params, targets):
    """Factory: at most ``concurrency`` lanes of one atom each, however
    many amphorae (one load balancer's amphorae in one lane)."""
    return lanes.build(NAME, params, targets, lanes.steps_of(
        NAME, StartConfigure, ConfigureAmphora, VerifyConfigured))


def reconfigure_amphorae_flow(params, targets):
    """Factory of earlier releases: lanes (one load balancer's amphorae
    in one lane) of start / configure / verify atoms per amphora."""

    def make(item):
        target, details = item['target'], item['details']
        return shape.target_flow(
            NAME, target, StartConfigure(NAME, target, details),
            ConfigureAmphora(NAME, target, details),
            VerifyConfigured(NAME, target, details))

    return shape.build(NAME, params, targets, make)
