"""What ``cold-upgrade`` does, as data: its steps in order, the commands
they run, and the ``[cold_upgrade]`` settings those come from.

Pure (no TaskFlow): the plan (:mod:`.`) and the steps (:mod:`.steps`)
both read it.  Settings are checked when they are read: a malformed
template, an unknown placeholder or secret, or a missing
``backup_command`` raise :class:`~octavia_workflows.exceptions.
ConfigError` (exit code 2 at submit; the step's gate in a running job).
"""

import collections
import uuid

from octavia_workflows import exceptions
from octavia_workflows.conf import opts as conf_opts
from octavia_workflows.machinery import commands

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
