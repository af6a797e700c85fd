"""``cold-upgrade``: take the Octavia control plane down, upgrade, bring
it back (the Load Balancing Service Upgrade Guide's cold upgrade).

The steps, each a target in the report and a persisted, resumable step:

1. ``preflight``: count the load balancers by provisioning status and
   refuse (the job FAILS, nothing was stopped) if any is ``PENDING_*``,
   unless ``allow_pending=true``;
2. ``stop:<service>@<host>``: housekeeping, health manager, API, worker,
   in that order, each on every controller of ``[cold_upgrade]
   controllers``, through the configured command templates;
3. ``backup`` (``backup=true``, the default): ``[cold_upgrade]
   backup_command`` writes ``backup_file`` (its name is in the report);
4. ``approve:upgrade-packages``: an approval gate.  The job waits PAUSED
   with "upgrade the Octavia packages on all controllers now" until
   ``octavia-workflow approve JOB`` (or ``resume``); ``reject`` ends it
   CANCELLED (the services stay stopped: the reason says so);
5. ``db-upgrade``: ``[cold_upgrade] db_upgrade_command``;
6. ``start:<service>@<host>``: worker, API, health manager,
   housekeeping (the reverse order);
7. ``wait-api``: short checks until the load-balancer API answers
   (``api_timeout``);
8. ``image`` (with ``image_file``): upload the new amphora image, tag it
   ``image_tag`` and untag the images that carried the tag before;
9. ``rotate`` (``rotate=true``): post a ``rotate-images`` job for the
   new image (or for ``image_tag``).

Commands come from the configuration of the conductor that runs the step
(never from code or from the job): every conductor that may claim the
job needs the same ``[cold_upgrade]`` section.  What happens when
something goes wrong (see :mod:`.cold_upgrade_steps`): a step whose
command fails is marked FAILED with the exit code and the output's last
lines, and the job waits PAUSED at a gate saying what failed and what to
do next; ``approve`` runs that command again, ``reject`` ends the job.
The database backup and upgrade are never re-run blindly: if a conductor
died while one of them ran, the next conductor pauses at a gate asking
the operator to check it before running it again.  Service commands
must be idempotent (``systemctl stop`` is) and are simply run again.
"""

import os

from taskflow.patterns import linear_flow

from octavia_workflows import exceptions
from octavia_workflows.conf import opts as conf_opts
from octavia_workflows.flows import base, commands, common

NAME = 'cold-upgrade'
GATE_TARGET = 'approve:upgrade-packages'
GATE_MESSAGE = 'upgrade the Octavia packages on all controllers now'
SERVICES = tuple(s for s, _ in conf_opts.COLD_UPGRADE_SERVICES)
#: Placeholders each kind of template may use.
SERVICE_VALUES = ('host', 'service', 'job_id')
JOB_VALUES = ('job_id',)
BACKUP_VALUES = ('job_id', 'backup_file')


def service_label(service):
    return service.replace('_', '-')


class Settings:
    """The ``[cold_upgrade]`` section, checked.

    :raises ConfigError: a template is malformed or uses an unknown
        placeholder or secret; a service template lacks ``{host}``
        while there are several controllers; ``backup`` is asked for and
        no ``backup_command`` is set.
    """

    def __init__(self, conf, params):
        if conf is None:
            raise exceptions.ConfigError(
                f'{NAME} needs the [cold_upgrade] configuration')
        group = conf.cold_upgrade
        self.controllers = [c for c in group.controllers if c]
        if not self.controllers:
            raise exceptions.ConfigError(
                '[cold_upgrade] controllers is empty')
        if len(set(self.controllers)) != len(self.controllers):
            raise exceptions.ConfigError(
                '[cold_upgrade] controllers lists a host twice')
        self.secrets = dict(group.secrets or {})
        self.timeout = group.command_timeout
        self.templates = {}
        for service in SERVICES:
            for verb in ('stop', 'start'):
                option = f'{service}_{verb}_command'
                template = getattr(group, option)
                if not (template or '').strip():
                    continue
                what = f'[cold_upgrade] {option}'
                commands.check(template, SERVICE_VALUES, self.secrets, what)
                if len(self.controllers) > 1 and not commands.uses(
                        template, 'host'):
                    raise exceptions.ConfigError(
                        f'{what} has no {{host}} but there are '
                        f'{len(self.controllers)} controllers: it would '
                        f'run the same command for each (use e.g. "ssh '
                        f'{{host}} ...")')
                self.templates[(verb, service)] = template
        self.db_upgrade = group.db_upgrade_command
        commands.check(self.db_upgrade, JOB_VALUES, self.secrets,
                       '[cold_upgrade] db_upgrade_command')
        self.backup = group.backup_command
        self.backup_file = group.backup_file
        if params.get('backup'):
            if not (self.backup or '').strip():
                raise exceptions.ConfigError(
                    f'{NAME}: [cold_upgrade] backup_command is not set; '
                    f'set it or submit with backup=false')
            commands.check(self.backup, BACKUP_VALUES, self.secrets,
                           '[cold_upgrade] backup_command')

    def render(self, template, what, **values):
        return commands.render(template, values, self.secrets, what)

    def backup_path(self, job_id):
        return (self.backup_file or '').replace('{job_id}', job_id)


def _check(params):
    path = params.get('image_file')
    if path and not os.path.isfile(path):
        raise exceptions.InvalidParameter(
            f'parameter image_file: {path} is not a file')
    if params.get('image_name') and not path:
        raise exceptions.InvalidParameter(
            'parameter image_name: needs image_file')


def steps(settings, params):
    """The ordered ``(target, action, details)`` of a job."""
    result = [('preflight', 'preflight', {})]
    for service in SERVICES:
        for host in settings.controllers:
            result.append((f'stop:{service_label(service)}@{host}', 'stop',
                           {'service': service, 'host': host}))
    if params.get('backup'):
        result.append(('backup', 'backup', {}))
    result.append((GATE_TARGET, 'approval', {'message': GATE_MESSAGE}))
    result.append(('db-upgrade', 'db-upgrade', {}))
    for service in reversed(SERVICES):
        for host in settings.controllers:
            result.append((f'start:{service_label(service)}@{host}',
                           'start', {'service': service, 'host': host}))
    result.append(('wait-api', 'wait-api', {}))
    if params.get('image_file'):
        result.append(('image', 'image', {}))
    if params.get('rotate'):
        result.append(('rotate', 'rotate', {}))
    return result


def command_for(settings, action, details, job_id):
    """The rendered :class:`~.commands.Command` of a step (None: the
    step runs no command, or its service has no command configured)."""
    if action in ('stop', 'start'):
        template = settings.templates.get((action, details['service']))
        if template is None:
            return None
        return settings.render(
            template, f'[cold_upgrade] {details["service"]}_{action}_command',
            host=details['host'], service=service_label(details['service']),
            job_id=job_id)
    if action == 'backup':
        return settings.render(settings.backup, '[cold_upgrade] '
                               'backup_command', job_id=job_id,
                               backup_file=settings.backup_path(job_id))
    if action == 'db-upgrade':
        return settings.render(settings.db_upgrade, '[cold_upgrade] '
                               'db_upgrade_command', job_id=job_id)
    return None


def preflight(context, params, dry_run):
    """At submit: the configuration must be usable (exit 2 if not)."""
    Settings(context.conf, params)


def plan(context, params):
    """The steps in order, with the commands (secrets shown as ***) and
    the load balancers' provisioning status counts as notes."""
    settings = Settings(context.conf, params)
    job_id = context.job_id or 'JOB'
    targets = []
    for target, action, details in steps(settings, params):
        details = dict(details)
        command = command_for(settings, action, details, job_id)
        if command is not None:
            details['command'] = command.display
        elif action in ('stop', 'start'):
            details['command'] = None
        if action == 'backup':
            details['backup_file'] = settings.backup_path(job_id)
        targets.append(base.Target(target, action, details))
    from octavia_workflows.flows import cold_upgrade_steps as impl

    counts, pending = impl.count_load_balancers(context.cloud())
    notes = ['load balancers by provisioning status: ' + (', '.join(
        f'{k} {v}' for k, v in sorted(counts.items())) or 'none')]
    if pending and not params.get('allow_pending'):
        notes.append(f'{len(pending)} load balancer(s) are PENDING_*: the '
                     f'pre-flight step would refuse (allow_pending=true '
                     f'overrides)')
    notes.append(f'the job pauses at an approval gate after stopping the '
                 f'services: "{GATE_MESSAGE}"')
    return base.Plan(targets=targets, notes=notes)


def cold_upgrade_flow(params, targets):
    """Factory: one retry-controlled subflow per step, in plan order.

    Atom names: ``cold-upgrade:<target>:step`` and
    ``cold-upgrade:<target>:retry`` (stable across releases).
    """
    from octavia_workflows.flows import cold_upgrade_steps as impl

    flow = linear_flow.Flow(NAME)
    for item in targets:
        target = item['target']
        sub = linear_flow.Flow(f'{NAME}:{target}',
                               retry=common.Again(f'{NAME}:{target}:retry'))
        sub.add(impl.TASKS[item['action']](target, item['action'],
                                           item['details']))
        flow.add(sub)
    return flow


WORKFLOW = base.Workflow(
    name=NAME,
    description='Cold upgrade of the Octavia control plane: pre-flight, '
    'stop services, back up, approval gate, db upgrade, start, new image, '
    'rotation.',
    params=(
        base.Param('allow_pending', 'bool',
                   'go on even if load balancers are PENDING_*',
                   default=False),
        base.Param('backup', 'bool',
                   'back up the database first ([cold_upgrade] '
                   'backup_command)', default=True),
        base.Param('api_timeout', 'float',
                   'seconds to wait for the API to answer after the start',
                   default=300.0, min=1, max=86400),
        base.Param('image_file', 'path',
                   'new amphora image file to upload (readable by the '
                   'conductors)'),
        base.Param('image_name', 'str',
                   'name of the uploaded image (default: the file name)'),
        base.Param('image_tag', 'str',
                   'tag of the current amphora image (Octavia '
                   'amp_image_tag)', default='amphora'),
        base.Param('disk_format', 'str', 'disk format of image_file',
                   default='qcow2',
                   choices=('qcow2', 'raw', 'vmdk', 'vhd', 'vhdx', 'vdi',
                            'iso')),
        base.Param('untag_old', 'bool',
                   'remove image_tag from the images that had it',
                   default=True),
        base.Param('rotate', 'bool',
                   'post a rotate-images job for the new image at the end',
                   default=False),
        base.Param('rotate_concurrency', 'int',
                   'concurrency of that rotate-images job', default=1,
                   min=1, max=64),
    ),
    factory='octavia_workflows.flows.cold_upgrade:cold_upgrade_flow',
    plan=plan,
    check=_check,
    preflight=preflight,
)
