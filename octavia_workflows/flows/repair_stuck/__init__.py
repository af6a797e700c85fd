"""``repair-stuck``: load balancers stuck in PENDING_*, repaired safely.

A worker killed in the middle of a flow (or a database outage) leaves a
load balancer PENDING_CREATE, PENDING_UPDATE or PENDING_DELETE for good:
every API call on it answers 409.  Operators repair it by hand in
Octavia's database; this runbook does the same, made safe:

1. Targets are the load balancers in PENDING_* whose ``updated_at`` (or
   ``created_at``, never updated) is older than ``older_than_minutes``,
   read from Octavia's database (``[octavia_database] connection``),
   narrowed by ``loadbalancers`` and ``project``; younger ones are
   skipped with their age.  A load balancer that a job on Octavia's own
   jobboard is about (``[octavia_jobboard]``, amphorav2) is skipped:
   Octavia is still working on it.
2. With ``apply=false`` (the default) nothing changes: each target is
   re-checked and SKIPPED with what would be done.
3. With ``apply=true``: a compare-and-set on the row as planned (id,
   status, ``updated_at``) moves it to ERROR -- never a blind UPDATE; a
   row that changed since planning is refused and the target FAILS with
   the reason.  Then a PENDING_CREATE/UPDATE one gets a load-balancer
   failover through the API, verified as every failover (ACTIVE again,
   no amphora from before, health back); a PENDING_DELETE one is deleted
   through the API (cascade) instead, never failed over.

Exactly once across a crash at any point: the reset's ``updated_at``
stamp is recorded before the UPDATE runs, so a resumed step recognises
its own reset (the row is ERROR with that stamp) and goes on; the API
call's intent is recorded before it is made (as in every runbook), and
the row still ERROR with our stamp means it was not.  A transient error
(the API or the database unreachable) is tried again later; anything
else fails the target, and the circuit breaker pauses the job after
``max_failures`` of them.  The database URL is a secret: it is read
from the configuration when needed and never stored with the job.
"""

import contextlib
import datetime

from octavia_workflows import exceptions, workflow
from octavia_workflows.cloud import octavia_db, octavia_jobs
from octavia_workflows.machinery import health, inventory, runstate
from octavia_workflows.machinery import params as shared

NAME = 'repair-stuck'
FAILOVER = 'reset-failover'
DELETE = 'reset-delete'
DELETING = 'PENDING_DELETE'


# -- configuration -----------------------------------------------------------


def _url(context):
    conf = getattr(context, 'conf', None)
    url = conf.octavia_database.connection if conf is not None else None
    if not url:
        raise exceptions.ConfigError(
            f'{NAME} needs Octavia\'s database: set [octavia_database] '
            f'connection')
    return url


@contextlib.contextmanager
def database(context):
    """Octavia's database for one step (closed after it)."""
    db = octavia_db.OctaviaDatabase(_url(context))
    try:
        yield db
    finally:
        db.close()


def busy(context):
    """``{lb id: why}`` from Octavia's jobboard ({} without one)."""
    conf = getattr(context, 'conf', None)
    if conf is None:
        return {}
    group = conf.octavia_jobboard
    return octavia_jobs.busy_load_balancers(dict(group.items()))


def preflight(context, params, dry_run):
    """No Octavia database configured: refuse before anything is posted."""
    _url(context)


# -- planning (pure) ---------------------------------------------------------


def age_text(seconds):
    """``45 s``, ``12 min``, ``3 h 5 min``, ``2 d 4 h``."""
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f'{seconds} s'
    minutes = seconds // 60
    if minutes < 120:
        return f'{minutes} min'
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f'{hours} h {minutes} min'
    days, hours = divmod(hours, 24)
    return f'{days} d {hours} h'


def last_change(row):
    """When Octavia last wrote the row (``updated_at``, else
    ``created_at``)."""
    return row.get('updated_at') or row.get('created_at')


def action_of(status):
    return DELETE if status == DELETING else FAILOVER


def select(rows, now, older_than_minutes, busy_lbs=None):
    """``(targets, skipped)`` from Octavia's rows of PENDING_* load
    balancers (dicts with ``id``, ``provisioning_status``,
    ``updated_at``, ``created_at``...), oldest first."""
    busy_lbs = busy_lbs or {}
    threshold = datetime.timedelta(minutes=older_than_minutes)
    order = sorted(rows, key=lambda r: (last_change(r) or now, r['id']))
    targets, skipped = [], []
    for row in order:
        status = row['provisioning_status']
        changed = last_change(row)
        age = (now - changed) if changed is not None else None
        details = {
            'lb': row['id'], 'name': row.get('name') or '',
            'project': row.get('project_id'), 'status': status,
            'operating_status': row.get('operating_status'),
            'seen_updated_at': octavia_db.isoformat(row.get('updated_at')),
            'age': age_text(age.total_seconds()) if age is not None
            else None,
        }
        target = row['id']
        action = action_of(status)
        if row['id'] in busy_lbs:
            skipped.append(workflow.Target(target, action, details,
                                           busy_lbs[row['id']]))
        elif age is not None and age < threshold:
            skipped.append(workflow.Target(
                target, action, details,
                f'{status} for {details["age"]} only (younger than '
                f'older_than_minutes={older_than_minutes:g}): Octavia may '
                f'still be working on it'))
        else:
            targets.append(workflow.Target(target, action, details))
    return targets, skipped


def not_stuck(wanted, rows, found):
    """Skipped targets for the ``loadbalancers`` asked for that are not
    PENDING_* (``found``: {id: row or None} of those)."""
    pending = {r['id'] for r in rows}
    skipped = []
    for lb_id in dict.fromkeys(wanted or []):
        if lb_id in pending:
            continue
        row = found.get(lb_id)
        reason = ('load balancer not found' if row is None else
                  f'load balancer is {row["provisioning_status"]}, not '
                  f'stuck in PENDING_*')
        skipped.append(workflow.Target(lb_id, FAILOVER, {'lb': lb_id},
                                       reason))
    return skipped


def plan(context, params):
    """The stuck load balancers, oldest first, and the skipped ones."""
    wanted = params.get('loadbalancers')
    now = octavia_db.utcnow()
    with database(context) as db:
        rows = db.pending_load_balancers(params.get('project'), wanted)
        others = {lb_id: db.get_load_balancer(lb_id) for lb_id in
                  dict.fromkeys(wanted or [])
                  if lb_id not in {r['id'] for r in rows}}
    targets, skipped = select(rows, now, params['older_than_minutes'],
                              busy(context))
    cloud = context.cloud()
    for target in targets:
        amps = inventory.live(cloud.list_amphorae(
            loadbalancer_id=target.target))
        target.details['amphorae'] = [a['id'] for a in amps]
        target.details['topology'] = inventory.topology(amps)
    skipped.extend(not_stuck(wanted, rows, others))
    notes = []
    if not params.get('apply'):
        notes.append('apply=false (the default): nothing will be changed; '
                     'each target is re-checked and reported. Submit with '
                     '--param apply=true to repair')
    deleting = sum(1 for t in targets if t.action == DELETE)
    if deleting:
        notes.append(f'{deleting} load balancer(s) stuck in PENDING_DELETE '
                     f'will be deleted (cascade), not failed over')
    if targets:
        notes.append('each repair: a compare-and-set to ERROR on the row '
                     'as planned (id, status, updated_at), refused if it '
                     'changed since')
    return workflow.Plan(targets=targets, skipped=skipped, notes=notes)


WORKFLOW = workflow.Workflow(
    name=NAME,
    description='Repair load balancers stuck in PENDING_*: compare-and-set '
    'to ERROR in Octavia\'s database, then fail over (or delete) through '
    'the API (report only unless apply=true).',
    params=(
        workflow.Param('older_than_minutes', 'float',
                       'only load balancers PENDING_* since more than this '
                       'many minutes (fractions allowed)', default=60.0,
                       min=0, max=525600),
        workflow.Param('apply', 'bool', 'repair them (default: report '
                       'only)', default=False),
    ) + tuple(p for p in shared.FILTER_PARAMS
              if p.name != 'availability_zone')
    + shared.COMMON_PARAMS + health.PARAMS,
    factory='octavia_workflows.flows.repair_stuck:repair_stuck_flow',
    plan=plan,
    engine='parallel',
    preflight=preflight,
    lanes=shared.lanes,
    run_state=runstate.for_job,
)

#: The steps and flow factories, in :mod:`.flow` (see
#: :func:`octavia_workflows.workflow.flow_names`).
__getattr__ = workflow.flow_names(__name__)
