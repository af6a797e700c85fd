"""Printing a dry-run plan (``submit --dry-run``)."""

import json

from cliff.formatters import table as table_fmt

from octavia_workflows import exceptions
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
