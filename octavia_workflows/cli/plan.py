"""Printing a dry-run plan (``submit --dry-run``)."""

import json

from cliff.formatters import table as table_fmt

from octavia_workflows import exceptions, states, windows
from octavia_workflows.cli import base

COLUMNS = ('#', 'target', 'action', 'decision', 'reason', 'details')


def plan_rows(plan):
    rows = []
    for seq, target in enumerate(plan.targets, start=1):
        rows.append((seq, target.target, target.action, 'act', '',
                     _details(target.details)))
    for target in plan.skipped:
        rows.append(('-', target.target, target.action, 'skip',
                     target.reason or '', _details(target.details)))
    return rows


def _details(details):
    return ', '.join(f'{k}={v}' for k, v in sorted(details.items())
                     if v not in (None, '', [], {}))


def recent_pace(manager, name):
    """``(seconds per target, job id)`` of the latest successful job of
    workflow ``name`` (its DONE targets' median duration), or None when
    there is none or the store cannot tell."""
    try:
        records = manager.persistence.records
        for job in records.list_jobs(include_finished=True, limit=50):
            if job['workflow'] != name or job['state'] != states.SUCCESS:
                continue
            took = sorted(
                (t['finished_at'] - t['started_at']).total_seconds()
                for t in records.get_targets(job['id'], [states.DONE])
                if t['started_at'] and t['finished_at'])
            if took:
                return took[len(took) // 2], job['id']
    except exceptions.OctaviaWorkflowsError:
        return None
    return None


def window_note(window, params, planned, pace, now=None):
    """The plan's note on its maintenance window: when it opens, how
    long it lasts, and how many targets it holds at the recent pace."""
    now = now or windows.now()
    opens = window.next_open(now)
    when = ('open now' if opens == now
            else f'opens at {window.describe(opens)}')
    note = (f'maintenance window {window.text}: {when}, '
            f'{window.seconds / 3600:g} h each time; ')
    if pace is None:
        return note + ('no earlier successful job of this workflow to '
                       'estimate how many targets it holds')
    seconds, job_id = pace
    concurrency = max(1, int(params.get('concurrency') or 1))
    holds = window.seconds * concurrency / max(seconds, 0.001)
    interval = float(params.get('interval') or 0)
    if interval:
        holds = min(holds, window.seconds / interval + 1)
    sittings = -(-planned // max(1, int(holds)))
    return note + (
        f'at the recent pace ({seconds:.0f} s per target in job '
        f'{job_id[:8]}, concurrency {concurrency}) it holds about '
        f'{int(holds)} targets: {planned} planned need '
        f'{sittings} window{"s" if sittings != 1 else ""}')


def print_plan(command, parsed_args, workflow, params, cloud):
    """Compute the plan read-only and print it; returns the exit code."""
    from octavia_workflows.engine import context

    if workflow.needs_cloud and not cloud:
        raise exceptions.ConfigError(
            f'workflow {workflow.name} needs a cloud: pass --os-cloud NAME '
            f'or set [cloud] name')
    plan_context = context.PlanContext(params, cloud_name=cloud,
                                       conf=command.app.manager.conf)
    if workflow.preflight is not None:
        workflow.preflight(plan_context, params, True)
    plan = workflow.plan(plan_context, params)
    if params.get('window'):
        plan.notes.append(window_note(
            windows.parse(params['window']), params, len(plan.targets),
            recent_pace(command.app.manager, workflow.name)))
    out = command.app.stdout
    fmt = parsed_args.formatter
    if fmt in ('json', 'yaml'):
        doc = {
            'workflow': workflow.name,
            'parameters': params,
            'targets': [t.as_dict() for t in plan.targets],
            'skipped': [t.as_dict() for t in plan.skipped],
            'notes': plan.notes,
        }
        if fmt == 'json':
            out.write(json.dumps(doc, indent=2, sort_keys=True) + '\n')
        else:
            import yaml

            out.write(yaml.safe_dump(doc, sort_keys=True))
        return base.EXIT_OK
    columns, rows = _select(COLUMNS, plan_rows(plan),
                            getattr(parsed_args, 'columns', None))
    if fmt == 'value':
        for row in rows:
            out.write(' '.join(str(v) for v in row) + '\n')
        return base.EXIT_OK
    if fmt == 'csv':
        import csv

        writer = csv.writer(out)
        writer.writerow(columns)
        writer.writerows(rows)
        return base.EXIT_OK
    out.write(f'Plan for {workflow.name} '
              f'({len(plan.targets)} to act on, {len(plan.skipped)} '
              f'skipped); nothing has been posted or changed.\n')
    if rows:
        table_fmt.TableFormatter().emit_list(columns, rows, out,
                                             parsed_args)
    for note in plan.notes:
        out.write(f'note: {note}\n')
    return base.EXIT_OK


def _select(columns, rows, wanted):
    """Keep the ``-c`` columns (all when none were asked for).

    :raises InvalidParameter: a ``-c`` names no plan column.
    """
    if not wanted:
        return columns, rows
    unknown = [c for c in wanted if c not in columns]
    if unknown:
        raise exceptions.InvalidParameter(
            f'no plan column {unknown[0]!r}; columns: {", ".join(columns)}')
    index = [columns.index(c) for c in wanted]
    return (tuple(wanted),
            [tuple(row[i] for i in index) for row in rows])
