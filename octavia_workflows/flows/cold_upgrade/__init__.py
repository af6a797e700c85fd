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
something goes wrong (see :mod:`.steps`): a step whose
command fails is marked FAILED with the exit code and the output's last
lines, and the job waits PAUSED at a gate saying what failed and what to
do next; ``approve`` runs that command again, ``reject`` ends the job.
The database backup and upgrade are never re-run blindly: if a conductor
died while one of them ran, the next conductor pauses at a gate asking
the operator to check it before running it again.  Service commands
must be idempotent (``systemctl stop`` is) and are simply run again.
"""

import os

from octavia_workflows import exceptions, workflow
from octavia_workflows.flows.cold_upgrade.procedure import (  # noqa: F401
    GATE_MESSAGE,
    GATE_TARGET,
    NAME,
    SERVICES,
    Settings,
    command_for,
    count_load_balancers,
    service_label,
    steps,
)


def _check(params):
    path = params.get('image_file')
    if path and not os.path.isfile(path):
        raise exceptions.InvalidParameter(
            f'parameter image_file: {path} is not a file')
    if params.get('image_name') and not path:
        raise exceptions.InvalidParameter(
            'parameter image_name: needs image_file')


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
        targets.append(workflow.Target(target, action, details))
    counts, pending = count_load_balancers(context.cloud())
    notes = ['load balancers by provisioning status: ' + (', '.join(
        f'{k} {v}' for k, v in sorted(counts.items())) or 'none')]
    if pending and not params.get('allow_pending'):
        notes.append(f'{len(pending)} load balancer(s) are PENDING_*: the '
                     f'pre-flight step would refuse (allow_pending=true '
                     f'overrides)')
    notes.append(f'the job pauses at an approval gate after stopping the '
                 f'services: "{GATE_MESSAGE}"')
    return workflow.Plan(targets=targets, notes=notes)


WORKFLOW = workflow.Workflow(
    name=NAME,
    description='Cold upgrade of the Octavia control plane: pre-flight, '
    'stop services, back up, approval gate, db upgrade, start, new image, '
    'rotation.',
    params=(
        workflow.Param('allow_pending', 'bool',
                       'go on even if load balancers are PENDING_*',
                       default=False),
        workflow.Param('backup', 'bool',
                       'back up the database first ([cold_upgrade] '
                       'backup_command)', default=True),
        workflow.Param('api_timeout', 'float',
                       'seconds to wait for the API to answer after the start',
                       default=300.0, min=1, max=86400),
        workflow.Param('image_file', 'path',
                       'new amphora image file to upload (readable by the '
                       'conductors)'),
        workflow.Param('image_name', 'str',
                       'name of the uploaded image (default: the file name)'),
        workflow.Param('image_tag', 'str',
                       'tag of the current amphora image (Octavia '
                       'amp_image_tag)', default='amphora'),
        workflow.Param('disk_format', 'str', 'disk format of image_file',
                       default='qcow2',
                       choices=('qcow2', 'raw', 'vmdk', 'vhd', 'vhdx', 'vdi',
                            'iso')),
        workflow.Param('untag_old', 'bool',
                       'remove image_tag from the images that had it',
                       default=True),
        workflow.Param('rotate', 'bool',
                       'post a rotate-images job for the new image at the end',
                       default=False),
        workflow.Param('rotate_concurrency', 'int',
                       'concurrency of that rotate-images job', default=1,
                       min=1, max=64),
    ),
    factory='octavia_workflows.flows.cold_upgrade:cold_upgrade_flow',
    plan=plan,
    check=_check,
    preflight=preflight,
)

#: The steps and the flow factory, in :mod:`.flow` (see
#: :func:`octavia_workflows.workflow.flow_names`).
__getattr__ = workflow.flow_names(__name__)
