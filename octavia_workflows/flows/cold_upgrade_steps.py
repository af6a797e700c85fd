"""The steps of ``cold-upgrade`` (see :mod:`.cold_upgrade`).

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

import collections
import logging
import time
import uuid

from taskflow import task

from octavia_workflows import exceptions, states
from octavia_workflows.flows import cold_upgrade as cu
from octavia_workflows.flows import commands, common, gates

LOG = logging.getLogger(__name__)

#: Seconds between looks at the API in ``wait-api``.
API_POLL = 1.0
#: Ids of what the job creates (image, follow-up job) derive from the
#: job id, so a repeated step finds what it made before.
ID_NAMESPACE = uuid.UUID('6f3b1d2e-8c1a-4f0e-9a57-2b9f3c4d5e60')


def derived_id(job_id, what):
    return str(uuid.uuid5(ID_NAMESPACE, f'{job_id}:{what}'))


def count_load_balancers(cloud):
    """``(counts by provisioning status, ids of PENDING_* ones)``."""
    lbs = cloud.list_load_balancers()
    counts = collections.Counter(lb.get('provisioning_status') or 'UNKNOWN'
                                 for lb in lbs)
    pending = sorted(lb['id'] for lb in lbs
                     if (lb.get('provisioning_status') or '').startswith(
                         'PENDING_'))
    return dict(counts), pending


class PreflightRefused(exceptions.OctaviaWorkflowsError):
    """Load balancers are PENDING_*: nothing was stopped."""


class Step(task.Task):
    """One step of the runbook; subclasses implement :meth:`run`."""

    #: Run again without asking when its conductor died during it.
    rerun_safe = True

    def __init__(self, target, action, details):
        super().__init__(name=f'{cu.NAME}:{target}:step',
                         requires=['context'])
        self.target = target
        self.action = action
        self.details = details

    def revert(self, *args, **kwargs):
        # Nothing is undone: a stopped service is not restarted behind
        # the operator's back; the report and the reason say what ran.
        return None

    def execute(self, context):
        row = context.target(self.target)
        if row is None or row['state'] in (states.DONE, states.SKIPPED):
            return row['state'] if row else None
        if row['state'] == states.FAILED:
            gates.require(
                context, f'{self.target}:retry-{row["attempts"]}',
                f'{self.target} failed: {row["error"]}. Fix the cause, '
                f'then approve to run it again, or reject to end the job',
                if_rejected=done_so_far(context))
        elif row['state'] == states.RUNNING and \
                row['details'].get('command_started') and \
                not self.rerun_safe:
            gates.require(
                context, f'{self.target}:unknown-{row["attempts"]}',
                f'{self.target} was running on '
                f'{row["details"].get("conductor")} when that conductor '
                f'stopped; its outcome is unknown. {self.check_hint()} '
                f'Approve to run it again, or reject to end the job',
                if_rejected=done_so_far(context))
        return self.run(context, row)

    def check_hint(self):
        return 'Check whether it completed.'

    def run(self, context, row):
        raise NotImplementedError

    def failed(self, context, error, **details):
        """Mark the step FAILED and wait at the retry gate."""
        context.target_finished(self.target, states.FAILED, error=error,
                                **details)
        row = context.target(self.target)
        gates.require(
            context, f'{self.target}:retry-{row["attempts"]}',
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

    def run(self, context, row):
        settings = cu.Settings(context.conf, context.params)
        try:
            command = cu.command_for(settings, self.action, self.details,
                                     context.job_id)
        except exceptions.ConfigError as exc:
            self.failed(context, str(exc))
            return None
        if command is None:
            context.target_finished(
                self.target, states.SKIPPED,
                error=f'no command configured ([cold_upgrade] '
                f'{self.details["service"]}_{self.action}_command is '
                f'empty)')
            return states.SKIPPED
        extra = self.before(context, settings)
        context.target_started(self.target, command=command.display,
                               command_started=time.time(),
                               conductor=context.owner, **extra)
        LOG.info('job %s %s: running %s', context.job_id, self.target,
                 command.display)
        try:
            result = commands.run(command, settings.timeout)
        except exceptions.ConfigError as exc:
            self.failed(context, str(exc))
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
            self.failed(context, error, **details)
            return None
        context.target_finished(self.target, states.DONE,
                                after=self.after(extra), **details)
        return states.DONE

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

    def run(self, context, row):
        if row['state'] == states.PENDING:
            context.target_started(self.target)
        gates.require(
            context, f'{cu.NAME}:{self.target}', self.details.get(
                'message', cu.GATE_MESSAGE) + '; then approve to upgrade the'
            ' database and start the services', if_rejected=(
                'The Octavia services stay stopped: start them by hand '
                '(or submit cold-upgrade again)'))
        context.target_finished(self.target, states.DONE)
        return states.DONE


class PreflightStep(Step):
    def run(self, context, row):
        try:
            counts, pending = count_load_balancers(context.cloud())
        except exceptions.CloudError as exc:
            if exc.transient:
                common.backoff(context)
                raise common.NotYet(str(exc)) from exc
            context.target_finished(self.target, states.FAILED,
                                    error=str(exc))
            raise PreflightRefused(f'pre-flight: {exc}') from exc
        context.target_started(self.target, counts=counts)
        if pending and not context.params.get('allow_pending'):
            error = (f'{len(pending)} load balancer(s) are PENDING_* '
                     f'({", ".join(pending[:5])}'
                     f'{" ..." if len(pending) > 5 else ""}); nothing was '
                     f'stopped. Submit again once they are settled, or with'
                     f' allow_pending=true')
            context.target_finished(self.target, states.FAILED, error=error,
                                    pending=pending)
            raise PreflightRefused(f'pre-flight refused: {error}')
        context.target_finished(self.target, states.DONE, after=counts)
        return states.DONE


class WaitApiStep(Step):
    """Short checks until the load-balancer API answers."""

    def run(self, context, row):
        from octavia_workflows.cloud import upgrade

        if row['state'] != states.RUNNING:
            context.target_started(self.target, since=time.time())
            row = context.target(self.target)
        since = float(row['details'].get('since') or time.time())
        timeout = float(context.params.get('api_timeout') or 300)
        window = time.monotonic() + common.CHECK_WINDOW
        while True:
            try:
                if upgrade.api_answers(context.cloud()):
                    context.target_finished(
                        self.target, states.DONE,
                        after={'seconds': round(time.time() - since, 1)})
                    return states.DONE
            except exceptions.CloudError as exc:
                self.failed(context, f'the API answers with an error: {exc}')
                return None
            if time.time() - since > timeout:
                context.target_details(self.target, since=time.time())
                self.failed(context, f'the API did not answer within '
                            f'{timeout:g} s after the services started')
                return None
            if context.stopping or time.monotonic() > window:
                common.backoff(context)
                raise common.NotYet('the API does not answer yet')
            time.sleep(API_POLL)


class ImageStep(Step):
    """Upload and tag the new amphora image (exactly once, by id)."""

    def run(self, context, row):
        from octavia_workflows.cloud import upgrade

        params = context.params
        cloud = context.cloud()
        image_id = derived_id(context.job_id, 'image')
        tag = params['image_tag']
        try:
            if 'old_images' not in row['details']:
                old = [i['id'] for i in cloud.find_images_by_tag(tag)
                       if i['id'] != image_id]
                context.target_started(self.target, old_images=old,
                                       image_id=image_id)
                row = context.target(self.target)
            elif row['state'] != states.RUNNING:
                context.target_started(self.target)
            old = row['details']['old_images']
            try:
                image = upgrade.get_image(cloud, image_id)
            except exceptions.CloudNotFound:
                context.fence()
                name = params.get('image_name') or _basename(
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
            self.failed(context, str(exc))
            return None
        except exceptions.CloudError as exc:
            if exc.transient:
                common.backoff(context)
                raise common.NotYet(str(exc)) from exc
            self.failed(context, str(exc))
            return None
        context.target_finished(
            self.target, states.DONE, before={'images': old},
            after={'image': image_id, 'tag': tag,
                   'untagged': old if params.get('untag_old') else []})
        return states.DONE


def _basename(path):
    import os

    return os.path.basename(path)


class RotateStep(Step):
    """Post one rotate-images job (its id derives from this job's)."""

    def run(self, context, row):
        from octavia_workflows.flows import cold_upgrade_rotate

        if row['state'] != states.RUNNING:
            context.target_started(self.target)
        try:
            job_id, note = cold_upgrade_rotate.post(context)
        except exceptions.OctaviaWorkflowsError as exc:
            self.failed(context, str(exc))
            return None
        context.target_finished(self.target, states.DONE,
                                after={'job': job_id, 'note': note})
        return states.DONE


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
