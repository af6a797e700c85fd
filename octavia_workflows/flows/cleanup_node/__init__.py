"""``cleanup-node``: delete amphora VMs Octavia no longer uses on a host.

Octavia's "Handling a VM Node Failure" procedure: while a hypervisor is
down, Octavia fails its amphorae over; when the hypervisor comes back it
may start the old amphora VMs again.  This runbook lists the Nova
servers on ``host`` and decides for each, with the evidence shown in the
plan and the report:

- not named like an amphora VM (``name_prefix``, Octavia's
  ``amphora-``): not Octavia's, left alone (SKIPPED);
- its id is the ``compute_id`` of an amphora in use: kept (SKIPPED, with
  the amphora, its status and load balancer);
- its id matches no amphora, or an amphora that is DELETED: deleted.
  The Octavia API does not list DELETED amphorae, so "DELETED" and "no
  such amphora" look the same through it; the evidence says which
  lookups came back empty.  A server named after an amphora that still
  exists (e.g. one being built, whose ``compute_id`` is not recorded
  yet) is kept.

Deleting is opt-in: with ``apply=false`` (the default) the job re-checks
every candidate and reports it as SKIPPED ("would delete"); with
``apply=true`` it deletes them, paced (``concurrency``, ``interval``)
and circuit-broken (``max_failures``) like the other runbooks.

With a jobboard, a job with ``apply=true`` holds the host's fleet lock
(``host:<host>``) from its first deletion to its end, so an
evacuate-host of the same host never acts on it at the same time (one
waits for the other, up to ``[fleet] lock_timeout``, then its targets are
SKIPPED ``in use by job <id>``).  A report (``apply=false``) changes
nothing and takes no lock.

What happens on failure: every candidate is re-checked right before its
deletion (a server that moved, vanished or became an amphora in use is
SKIPPED with the reason); a transient error is retried in short checks;
a refused deletion marks that server FAILED; a server still present
after ``target_timeout`` seconds is FAILED.  Deleting is idempotent: a
conductor that dies around the call re-checks and only waits.
"""

from octavia_workflows import exceptions, workflow
from octavia_workflows.machinery import hosts, runstate
from octavia_workflows.machinery import params as shared

NAME = 'cleanup-node'
ACTION = 'delete-server'
DELETE = 'delete'
KEEP = 'keep'
#: Amphora statuses whose VM Octavia no longer uses.
UNUSED = ('DELETED',)
#: Amphora statuses whose VM Octavia is still setting up (no compute_id
#: recorded yet, or just recorded).
BUILDING = ('PENDING_CREATE', 'BOOTING')


def _check(params):
    if not (params.get('host') or '').strip():
        raise exceptions.InvalidParameter(
            'parameter host: give the compute host to clean up')
    if not (params.get('name_prefix') or '').strip():
        raise exceptions.InvalidParameter(
            'parameter name_prefix: must not be empty (it keeps tenant VMs '
            'out of the cleanup)')


def preflight(context, params, dry_run):
    hosts.host_service(context.cloud(), params['host'])


def evidence(server):
    """What the plan and report show about a server."""
    return {'server': server['id'], 'name': server.get('name'),
            'server_status': server.get('status'),
            'host': server.get('host'), 'az': server.get('availability_zone'),
            'image': server.get('image_id')}


def decide(server, by_compute, by_id, prefix):
    """``(decision, reason, facts)`` for one server (pure).

    ``by_compute``: {compute_id: amphora}; ``by_id``: {amphora id:
    amphora} -- the amphorae the Octavia API lists.
    """
    name = server.get('name') or ''
    if not name.startswith(prefix):
        return KEEP, (f'not an amphora VM (name does not start with '
                      f'{prefix!r}): left alone'), {}
    named = name[len(prefix):]
    amp = by_compute.get(server['id'])
    if amp is not None:
        facts = {'amphora': amp['id'], 'amphora_status': amp.get('status'),
                 'lb': amp.get('loadbalancer_id'), 'role': amp.get('role')}
        if amp.get('status') in UNUSED:
            return DELETE, f'its amphora {amp["id"]} is DELETED', facts
        if amp.get('status') == 'PENDING_DELETE':
            return KEEP, (f'its amphora {amp["id"]} is PENDING_DELETE: '
                          f'Octavia is deleting it'), facts
        lb = amp.get('loadbalancer_id') or 'none (spare)'
        return KEEP, (f'in use by amphora {amp["id"]} ({amp.get("status")}'
                      f', load balancer {lb})'), facts
    facts = {'amphora': None, 'named_amphora': named}
    other = by_id.get(named)
    if other is not None and other.get('status') not in UNUSED:
        facts.update(named_status=other.get('status'),
                     named_compute_id=other.get('compute_id'))
        if other.get('status') in BUILDING or not other.get('compute_id'):
            return KEEP, (f'named after amphora {named}, which is '
                          f'{other.get("status")} (its VM may not be '
                          f'recorded yet)'), facts
        return KEEP, (f'named after amphora {named}, which runs on server '
                      f'{other.get("compute_id")}: left for an operator '
                      f'to check'), facts
    return DELETE, (f'no amphora has compute id {server["id"]}, and amphora '
                    f'{named or "?"} does not exist or is DELETED'), facts


def classify(servers, amphorae, prefix):
    """Split servers into (targets, skipped) :class:`base.Target`s."""
    by_compute = {a['compute_id']: a for a in amphorae
                  if a.get('compute_id')}
    by_id = {a['id']: a for a in amphorae}
    targets, skipped = [], []
    for server in servers:
        decision, reason, facts = decide(server, by_compute, by_id, prefix)
        details = dict(evidence(server), **facts)
        if decision == DELETE:
            details['evidence'] = reason
            targets.append(workflow.Target(server['id'], ACTION, details))
        else:
            skipped.append(workflow.Target(server['id'], ACTION, details,
                                       reason))
    return targets, skipped


def plan(context, params):
    _check(params)
    cloud = context.cloud()
    hosts.host_service(cloud, params['host'])
    servers = cloud.list_servers_on_host(params['host'])
    amphorae = cloud.list_amphorae()
    targets, skipped = classify(servers, amphorae, params['name_prefix'])
    notes = [f'{len(servers)} server(s) on {params["host"]}; '
             f'{len(targets)} no longer used by Octavia, {len(skipped)} '
             f'kept']
    if not params.get('apply'):
        notes.append('apply=false (the default): nothing will be deleted; '
                     'the job only re-checks and reports. Submit with '
                     '--param apply=true to delete')
    notes.append('the Octavia API does not list DELETED amphorae: a '
                 'server of a DELETED amphora and a server of no amphora '
                 'look the same')
    return workflow.Plan(targets=targets, skipped=skipped, notes=notes)


def recheck_server(cloud, host, server_id, prefix):
    """``(reason_to_skip, facts)`` for a candidate as it is now."""
    try:
        server = cloud.get_server(server_id)
    except exceptions.CloudNotFound:
        return 'server no longer exists', None
    if server.get('host') != host:
        return f'server moved to {server.get("host")}', None
    amps = [a for a in cloud.list_amphorae(compute_id=server_id)
            if a.get('compute_id') == server_id]
    named = (server.get('name') or '')[len(prefix):]
    by_id = {}
    if named:
        try:
            by_id[named] = cloud.get_amphora(named)
        except exceptions.CloudNotFound:
            pass
    decision, reason, facts = decide(
        server, {server_id: amps[0]} if amps else {}, by_id, prefix)
    facts = dict(evidence(server), **facts, evidence=reason)
    if decision != DELETE:
        return f'kept after all: {reason}', facts
    return None, facts


WORKFLOW = workflow.Workflow(
    name=NAME,
    description='Delete the amphora VMs on a compute host that Octavia no '
    'longer uses (report only unless apply=true).',
    params=(
        workflow.Param('host', 'str', 'the compute host to clean up',
                       required=True),
        workflow.Param('apply', 'bool', 'delete the unused amphora VMs '
                       '(default: only report them)', default=False),
        workflow.Param('name_prefix', 'str', 'only servers named like '
                       'this are amphora VMs', default='amphora-'),
    ) + shared.COMMON_PARAMS,
    factory='octavia_workflows.flows.cleanup_node:cleanup_node_flow_v2',
    earlier_factories=(
        'octavia_workflows.flows.cleanup_node:cleanup_node_flow',),
    plan=plan,
    engine='parallel',
    check=_check,
    preflight=preflight,
    lanes=shared.lanes,
    run_state=runstate.for_job,
)

#: The steps and flow factories, in :mod:`.flow` (see
#: :func:`octavia_workflows.workflow.flow_names`).
__getattr__ = workflow.flow_names(__name__)
