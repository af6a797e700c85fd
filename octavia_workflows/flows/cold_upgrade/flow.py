"""The steps and the flow factory of ``cold-upgrade`` (the declaration
and the plan, which import no TaskFlow, are in the package,
:mod:`octavia_workflows.flows.cold_upgrade`).

Every step is a task in its own retry-controlled subflow and keeps its
progress in its target's record, so that run again (resume, takeover,
approval) it knows what already happened:

- a finished step (DONE/SKIPPED) does nothing;
- a command step records ``RUNNING`` with ``command_started`` before its
  command runs (fenced: a conductor that lost the job runs nothing).
  Found ``RUNNING`` again, the command's outcome is unknown (its
  conductor died while it ran): a service command is run again (they
  must be idempotent); the backup and the database upgrade wait at a
  gate "check ..., approve to run it again" instead;
- a command that fails (non-zero exit, timeout, missing program) marks
  the step FAILED with the exit code and its output's last lines
  (secrets removed), and the job waits at a gate: "<step> failed: ...;
  fix the cause, then approve to run it again, or reject to end the
  job; done so far: ...";
- cloud errors that may pass (API down, 5xx) are retried by short
  checks; the API being down is expected between ``stop:api`` and
  ``wait-api``, and only ``preflight``, ``wait-api``, ``image`` and
  ``rotate`` talk to it.
"""

import logging
import os
import time

from taskflow.patterns import linear_flow

from octavia_workflows import exceptions, states
from octavia_workflows.cloud import upgrade
from octavia_workflows.flows.cold_upgrade import procedure as cu
from octavia_workflows.machinery import commands, retry, steps

LOG = logging.getLogger(__name__)

#: Seconds between looks at the API in ``wait-api``.
API_POLL = 1.0


class PreflightRefused(exceptions.OctaviaWorkflowsError):
    """Load balancers are PENDING_*: nothing was stopped."""


class Step(steps.TargetTask):
    """One step of the runbook (atom ``cold-upgrade:<target>:step``, not
    paced); subclasses implement :meth:`run`.  Its revert undoes
    nothing: a stopped service is not restarted behind the operator's
    back; the report and the reason say what ran."""

    step = 'step'
    paced = False
    #: Run again without asking when its conductor died during it.
    rerun_safe = True

    def __init__(self, target, action, details):
        super().__init__(cu.NAME, target, details)
        self.action = action

    def execute(self, context):
        target = self.lifecycle(context)
        record = target.record()
        if record is None or record.state in (states.DONE, states.SKIPPED):
            return record.state if record else None
        if record.state == states.FAILED:
            context.require_approval(
                f'{self.target}:retry-{record.attempts}',
                f'{self.target} failed: {record.error}. Fix the cause, '
                f'then approve to run it again, or reject to end the job',
                if_rejected=done_so_far(context))
        elif record.running and record.details.get('command_started') \
                and not self.rerun_safe:
            context.require_approval(
                f'{self.target}:unknown-{record.attempts}',
                f'{self.target} was running on '
                f'{record.details.get("conductor")} when that conductor '
                f'stopped; its outcome is unknown. {self.check_hint()} '
                f'Approve to run it again, or reject to end the job',
                if_rejected=done_so_far(context))
        return self.run(context, target, record)

    def check_hint(self):
        return 'Check whether it completed.'

    def run(self, context, target, record):
        raise NotImplementedError

    def failed(self, context, target, error, **details):
        """Mark the step FAILED and wait at the retry gate."""
        target.fail(error, **details)
        record = target.record()
        context.require_approval(
            f'{self.target}:retry-{record.attempts}',
            f'{self.target} failed: {error}. Fix the cause, then approve '
            f'to run it again, or reject to end the job',
            if_rejected=done_so_far(context))


def done_so_far(context):
    done = [t['target'] for t in context.records.get_targets(
        context.job_id, states=[states.DONE])]
    return (f'Done so far: {", ".join(done) or "nothing"}; the other steps '
            f'are left to do by hand (see "octavia-workflow report '
            f'{context.job_id}")')


class CommandStep(Step):
    """Run the step's configured command (see the module docstring)."""

    def run(self, context, target, record):
        settings = cu.Settings(context.conf, context.params)
        try:
            command = cu.command_for(settings, self.action, self.details,
                                     context.job_id)
        except exceptions.ConfigError as exc:
            self.failed(context, target, str(exc))
            return None
        if command is None:
            return target.skip(
                f'no command configured ([cold_upgrade] '
                f'{self.details["service"]}_{self.action}_command is '
                f'empty)')
        extra = self.before(context, settings)
        target.begin(command=command.display, command_started=time.time(),
                     conductor=context.owner, **extra)
        LOG.info('job %s %s: running %s', context.job_id, self.target,
                 command.display)
        try:
            result = commands.run(command, settings.timeout)
        except exceptions.ConfigError as exc:
            self.failed(context, target, str(exc))
            return None
        LOG.info('job %s %s: %s after %.1f s', context.job_id, self.target,
                 result.summary(), result.seconds)
        details = dict(output=result.output, exit_code=result.returncode,
                       seconds=result.seconds)
        if not result.ok:
            if result.returncode is None:
                error = f'timed out after {settings.timeout} s'
            else:
                error = result.summary()
            self.failed(context, target, error, **details)
            return None
        return target.done(after=self.after(extra), **details)

    def before(self, context, settings):
        return {}

    def after(self, extra):
        return None


class ServiceStep(CommandStep):
    """``stop:<service>@<host>`` / ``start:...`` (idempotent commands)."""


class GuardedStep(CommandStep):
    """Backup and database upgrade: never re-run without asking."""

    rerun_safe = False


class BackupStep(GuardedStep):
    def check_hint(self):
        return 'Check the backup file.'

    def before(self, context, settings):
        return {'backup_file': settings.backup_path(context.job_id)}

    def after(self, extra):
        return {'backup_file': extra['backup_file']}


class DbUpgradeStep(GuardedStep):
    def check_hint(self):
        return ('Check the database (octavia-db-manage current); '
                'upgrade head is normally safe to run again.')


class GateStep(Step):
    """``approve:upgrade-packages``: the operator upgrades the packages."""

    def run(self, context, target, record):
        if record.state == states.PENDING:
            target.begin()
        context.require_approval(
            f'{cu.NAME}:{self.target}', self.details.get(
                'message', cu.GATE_MESSAGE) + '; then approve to upgrade the'
            ' database and start the services', if_rejected=(
                'The Octavia services stay stopped: start them by hand '
                '(or submit cold-upgrade again)'))
        return target.done()


class PreflightStep(Step):
    def run(self, context, target, record):
        try:
            counts, pending = cu.count_load_balancers(context.cloud())
        except exceptions.CloudError as exc:
            retry.retry_later_or(context, exc, target.fail)
            raise PreflightRefused(f'pre-flight: {exc}') from exc
        target.begin(counts=counts)
        if pending and not context.params.get('allow_pending'):
            error = (f'{len(pending)} load balancer(s) are PENDING_* '
                     f'({", ".join(pending[:5])}'
                     f'{" ..." if len(pending) > 5 else ""}); nothing was '
                     f'stopped. Submit again once they are settled, or with'
                     f' allow_pending=true')
            target.fail(error, pending=pending)
            raise PreflightRefused(f'pre-flight refused: {error}')
        return target.done(after=counts)


class WaitApiStep(Step):
    """Short checks until the load-balancer API answers."""

    def run(self, context, target, record):
        if not record.running:
            target.begin(since=time.time())
            record = target.record()
        since = float(record.details.get('since') or time.time())
        timeout = float(context.params.get('api_timeout') or 300)
        window = time.monotonic() + retry.CHECK_WINDOW
        while True:
            try:
                if upgrade.api_answers(context.cloud()):
                    return target.done(
                        after={'seconds': round(time.time() - since, 1)})
            except exceptions.CloudError as exc:
                self.failed(context, target,
                            f'the API answers with an error: {exc}')
                return None
            if time.time() - since > timeout:
                target.note(since=time.time())
                self.failed(context, target, f'the API did not answer '
                            f'within {timeout:g} s after the services '
                            f'started')
                return None
            if context.stopping or time.monotonic() > window:
                retry.backoff(context)
                raise retry.NotYet('the API does not answer yet')
            time.sleep(API_POLL)


class ImageStep(Step):
    """Upload and tag the new amphora image (exactly once, by id)."""

    def run(self, context, target, record):
        params = context.params
        cloud = context.cloud()
        image_id = cu.derived_id(context.job_id, 'image')
        tag = params['image_tag']
        try:
            if 'old_images' not in record.details:
                old = [i['id'] for i in cloud.find_images_by_tag(tag)
                       if i['id'] != image_id]
                target.begin(old_images=old, image_id=image_id)
                record = target.record()
            elif not record.running:
                target.begin()
            old = record.details['old_images']
            try:
                image = upgrade.get_image(cloud, image_id)
            except exceptions.CloudNotFound:
                context.fence()
                name = params.get('image_name') or os.path.basename(
                    params['image_file'])
                image = upgrade.create_image(cloud, image_id, name,
                                             params['disk_format'])
            if image.get('status') == 'queued':
                context.fence()
                upgrade.upload_image(cloud, image_id, params['image_file'])
            context.fence()
            upgrade.tag_image(cloud, image_id, tag)
            if params.get('untag_old'):
                for old_id in old:
                    upgrade.untag_image(cloud, old_id, tag)
        except exceptions.InvalidParameter as exc:
            self.failed(context, target, str(exc))
            return None
        except exceptions.CloudError as exc:
            retry.retry_later_or(
                context, exc, lambda e: self.failed(context, target, str(e)))
            return None
        return target.done(
            after={'image': image_id, 'tag': tag,
                   'untagged': old if params.get('untag_old') else []},
            before={'images': old})


class RotateStep(Step):
    """Post one rotate-images job (its id derives from this job's), as
    a follow-up job through the run context."""

    #: The workflow of the follow-up job (found through the registry).
    FOLLOW_UP = 'rotate-images'

    def run(self, context, target, record):
        if not record.running:
            target.begin()
        job_id = cu.derived_id(context.job_id, 'rotate')
        try:
            note = context.post_job(self.FOLLOW_UP, follow_up_params(
                context.job_id, context.params), job_id)
        except exceptions.OctaviaWorkflowsError as exc:
            self.failed(context, target, str(exc))
            return None
        return target.done(after={'job': job_id, 'note': note})


def follow_up_params(job_id, params):
    """The rotate-images job's parameters (validated when posted)."""
    raw = {'concurrency': params.get('rotate_concurrency') or 1}
    if params.get('image_file'):
        raw['image_id'] = cu.derived_id(job_id, 'image')
    else:
        raw['image_tag'] = params['image_tag']
    return raw


TASKS = {
    'preflight': PreflightStep,
    'stop': ServiceStep,
    'start': ServiceStep,
    'backup': BackupStep,
    'approval': GateStep,
    'db-upgrade': DbUpgradeStep,
    'wait-api': WaitApiStep,
    'image': ImageStep,
    'rotate': RotateStep,
}


def cold_upgrade_flow(params, targets):
    """Factory: one retry-controlled subflow per step, in plan order.

    Atom names: ``cold-upgrade:<target>:step`` and
    ``cold-upgrade:<target>:retry`` (stable across releases).
    """
    flow = linear_flow.Flow(cu.NAME)
    for item in targets:
        target = item['target']
        sub = linear_flow.Flow(f'{cu.NAME}:{target}',
                               retry=retry.Again(f'{cu.NAME}:{target}:retry'))
        sub.add(TASKS[item['action']](target, item['action'],
                                      item['details']))
        flow.add(sub)
    return flow
