"""``failover-amphorae``: replace given amphorae, or restore broken ones.

Targets are amphorae: the ids given in ``amphorae``, or every amphora
whose status is ERROR (``status=ERROR``, Octavia's "restore" procedure),
narrowed by ``loadbalancers``, ``project`` and ``availability_zone``.
The action is an amphora failover.  Octavia refuses an amphora failover
unless the load balancer is ACTIVE; when restoring an ERROR amphora whose
load balancer is itself in ERROR, the load balancer is failed over
instead (repair is the purpose), which replaces its other amphorae too --
their own targets are then SKIPPED as already replaced.  Amphorae of one
load balancer are handled one after the other.

``status=FAILOVER_STOPPED`` is the paced recovery of Octavia's failover
circuit breaker guide.  Octavia's health manager stops failing over
stale amphorae (and marks them FAILOVER_STOPPED) while at least its
``[health_manager] failover_threshold`` of them are stale; once fewer
are, it fails all the rest over by itself, at once.  So the runbook
needs that threshold (``failover_threshold``, or ``octavia_config``:
Octavia's configuration file, read when the job is submitted) and, with
``stop_at_threshold=true`` (the default), plans only the failovers that
bring the stale count below it -- ``stale - threshold + 1`` of them, as
the guide's example does -- and lists the rest as left to the health
manager.  Each target re-checks before it starts: an amphora whose
heartbeats came back (ALLOCATED again) is SKIPPED, and so is every one
once fewer than the threshold are stale (the health manager has
resumed).  ``stop_at_threshold=false`` plans them all, and the plan
says the health manager will race it.

The amphora steps are shared machinery (:mod:`octavia_workflows.
machinery.amphora`).  What happens on failure: as there (a failed
failover FAILS its target and counts for the breaker); an unreadable or
malformed ``octavia_config`` is a one-line error at submit, and nothing
is posted.
"""

import configparser

from octavia_workflows import exceptions, workflow
from octavia_workflows.machinery import amphora_plan, health, runstate
from octavia_workflows.machinery import params as shared

NAME = 'failover-amphorae'
STOPPED = 'FAILOVER_STOPPED'
_STOPPED_ONLY = ('failover_threshold', 'octavia_config')


def read_threshold(path):
    """``[health_manager] failover_threshold`` from Octavia's
    configuration file at ``path`` (None when it is not set: Octavia's
    breaker is off).

    :raises InvalidParameter: unreadable file, not an INI file, or a
        value that is not a positive whole number.
    """
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    try:
        with open(path, encoding='utf-8') as stream:
            parser.read_file(stream)
    except OSError as exc:
        raise exceptions.InvalidParameter(
            f'parameter octavia_config: cannot read {path}: '
            f'{exc.strerror or exc}') from None
    except (configparser.Error, UnicodeDecodeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise exceptions.InvalidParameter(
            f'parameter octavia_config: {path} is not an INI file '
            f'({first})') from None
    raw = parser.get('health_manager', 'failover_threshold', fallback='')
    raw = (raw or '').strip()
    if not raw:
        return None
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise exceptions.InvalidParameter(
            f'parameter octavia_config: [health_manager] failover_threshold '
            f'in {path} is {raw!r}, not a whole number of at least 1')
    return value


def _check(params):
    shared.exactly_one(params, ('amphorae', 'status'), NAME)
    if params.get('status') != STOPPED:
        given = [n for n in _STOPPED_ONLY if params.get(n) is not None]
        if given:
            raise exceptions.InvalidParameter(
                f'{NAME}: {", ".join(given)} applies only to '
                f'status={STOPPED}')
        return
    path = params.get('octavia_config')
    if path:
        found = read_threshold(path)
        given = params.get('failover_threshold')
        if found is not None and given is not None and found != given:
            raise exceptions.InvalidParameter(
                f'{NAME}: failover_threshold={given} but {path} sets '
                f'[health_manager] failover_threshold = {found}; give one')
        if given is None:
            params['failover_threshold'] = found
    if params.get('stop_at_threshold') and \
            params.get('failover_threshold') is None:
        where = (f'{path} sets no [health_manager] failover_threshold (the '
                 f'health manager\'s breaker is off there)' if path else
                 'it is not known')
        raise exceptions.InvalidParameter(
            f'{NAME}: status={STOPPED} with stop_at_threshold=true needs the '
            f'health manager\'s failover_threshold, and {where}: give '
            f'failover_threshold=N or octavia_config=/etc/octavia/'
            f'octavia.conf, or stop_at_threshold=false')


def stale_plan(targets, skipped, stale, threshold, stop, chosen):
    """Cut the planned FAILOVER_STOPPED ``targets`` at the health
    manager's threshold; returns ``(targets, skipped, notes)``.

    ``stale``: how many amphorae are FAILOVER_STOPPED in the whole
    cloud; ``chosen``: whether a filter narrowed the selection.
    """
    notes = []
    if threshold is None:
        notes.append('the health manager\'s failover_threshold is not known '
                     '(give failover_threshold or octavia_config): once '
                     'fewer amphorae than that are stale, it resumes '
                     'automatic failover of all the rest at once')
        return targets, skipped, notes
    room = max(0, stale - threshold + 1)
    where = ' in the whole cloud' if chosen else ''
    notes.append(f'{stale} amphora(e) are {STOPPED}{where}; the health '
                 f'manager\'s failover_threshold is {threshold}: it stays '
                 f'stopped while {threshold} or more are stale, and once '
                 f'fewer are it resumes automatic failover of all the rest '
                 f'at once')
    if not room:
        reason = (f'fewer than failover_threshold={threshold} amphorae are '
                  f'stale ({stale}): the health manager fails them over '
                  f'itself')
        if stop:
            skipped = skipped + [_left(t, reason) for t in targets]
            targets = []
        notes.append(reason)
        return targets, skipped, notes
    if stop:
        left = targets[room:]
        targets = targets[:room]
        reason = (f'left to the health manager: after {room} failover(s) '
                  f'fewer than failover_threshold={threshold} amphorae are '
                  f'stale and it resumes automatic failover of the rest')
        skipped = skipped + [_left(t, reason) for t in left]
        notes.append(f'stop_at_threshold=true: {len(targets)} failover(s) '
                     f'bring the stale count to {stale - len(targets)}, '
                     f'below the threshold; the job stops there and leaves '
                     f'the other {stale - len(targets)} to the health '
                     f'manager (stop_at_threshold=false fails them over '
                     f'paced, racing the health manager)')
    else:
        notes.append(f'stop_at_threshold=false: after the first {room} '
                     f'failover(s) the health manager resumes and fails '
                     f'over the rest itself, at once, unless every health '
                     f'manager is stopped; a target it replaces first is '
                     f'SKIPPED when its turn comes')
    for target in targets:
        if stop:
            target.details['stale_threshold'] = threshold
    return targets, skipped, notes


def _left(target, reason):
    return workflow.Target(target.target, target.action, target.details,
                           reason)


def plan(context, params):
    _check(params)
    cloud = context.cloud()
    repair = params.get('status') == 'ERROR'
    stopped = params.get('status') == STOPPED
    missing = []
    fleet = []
    if stopped:
        fleet = [a for a in cloud.list_amphorae(status=STOPPED)
                 if a.get('status') == STOPPED]
        wanted = set(params.get('loadbalancers') or ())
        amps = [a for a in fleet
                if not wanted or a.get('loadbalancer_id') in wanted]
    elif repair:
        if params.get('loadbalancers'):
            amps = [a for lb_id in params['loadbalancers']
                    for a in cloud.list_amphorae(loadbalancer_id=lb_id,
                                                 status='ERROR')]
        else:
            amps = cloud.list_amphorae(status='ERROR')
        amps = [a for a in amps if a.get('status') == 'ERROR']
    else:
        amps = []
        for amp_id in dict.fromkeys(params['amphorae']):
            try:
                amps.append(cloud.get_amphora(amp_id))
            except exceptions.CloudNotFound:
                missing.append(amp_id)
    lbs, lb_amphorae = amphora_plan.gather(cloud, amps)
    targets, skipped = amphora_plan.select(
        amps, lbs, lb_amphorae, repair=repair, missing=missing,
        project=params.get('project'),
        zone=params.get('availability_zone'),
        loadbalancers=params.get('loadbalancers'))
    notes = []
    if stopped:
        chosen = any(params.get(n) for n in (
            'loadbalancers', 'project', 'availability_zone'))
        targets, skipped, notes = stale_plan(
            targets, skipped, len(fleet), params.get('failover_threshold'),
            params.get('stop_at_threshold'), chosen)
    return workflow.Plan(targets=targets, skipped=skipped,
                         notes=notes + amphora_plan.plan_notes(targets))


WORKFLOW = workflow.Workflow(
    name=NAME,
    description='Fail over given amphorae, restore every amphora in '
    'ERROR, or recover FAILOVER_STOPPED ones after the health manager\'s '
    'breaker tripped (paced, circuit-broken, exactly once).',
    params=(
        workflow.Param('amphorae', 'uuids',
                       'amphora ids (comma-separated)'),
        workflow.Param('status', 'str', 'fail over every amphora in this '
                       'status (FAILOVER_STOPPED: the paced recovery after '
                       'the health manager\'s circuit breaker tripped)',
                       choices=('ERROR', STOPPED)),
        workflow.Param('failover_threshold', 'int', 'status=FAILOVER_STOPPED: '
                       'the health manager\'s [health_manager] '
                       'failover_threshold', min=1, max=1000000),
        workflow.Param('octavia_config', 'path', 'status=FAILOVER_STOPPED: '
                       'Octavia\'s configuration file to read '
                       'failover_threshold from (read at submit)'),
        workflow.Param('stop_at_threshold', 'bool', 'status=FAILOVER_STOPPED: '
                       'plan only the failovers that bring the stale count '
                       'below failover_threshold, and leave the rest to the '
                       'health manager', default=True),
    ) + shared.FILTER_PARAMS + shared.COMMON_PARAMS + health.PARAMS,
    factory='octavia_workflows.flows.failover_amphorae:'
    'failover_amphorae_flow_v3',
    earlier_factories=(
        'octavia_workflows.flows.failover_amphorae:failover_amphorae_flow',
        'octavia_workflows.flows.failover_amphorae:'
        'failover_amphorae_flow_v2'),
    plan=plan,
    engine='parallel',
    check=_check,
    lanes=shared.lanes,
    run_state=runstate.for_job,
)

#: The steps and flow factories, in :mod:`.flow` (see
#: :func:`octavia_workflows.workflow.flow_names`).
__getattr__ = workflow.flow_names(__name__)
