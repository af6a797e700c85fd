"""Reading and controlling jobs: list, show, report, pause, cancel, purge."""

import json

from octavia_workflows.cli import base, submit

LIST_COLUMNS = ('id', 'workflow', 'state', 'owner', 'progress', 'created',
                'schedule')
REPORT_COLUMNS = ('target', 'action', 'state', 'before', 'after',
                  'duration', 'attempts', 'error')


def _job_arg(parser):
    parser.add_argument('job', help='job id (or a unique prefix of 6+ '
                        'characters)')
    return parser


class List(base.Lister):
    """List jobs: unfinished ones, or all with --all.

    Progress is done/total targets (failed and skipped count as
    finished); schedule is the schedule that posted the job (empty when
    it was submitted by hand).
    """

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument('--all', action='store_true',
                            help='include finished jobs')
        return parser

    def take_action(self, parsed_args):
        views = self.app.manager.jobs.list(include_finished=parsed_args.all)
        rows = []
        for view in views:
            p = view['progress']
            finished = p['done'] + p['failed'] + p['skipped']
            rows.append((view['id'], view['workflow'], view['state'],
                         view['owner'] or '', f'{finished}/{p["total"]}',
                         view['created_at'], view['schedule'] or ''))
        return LIST_COLUMNS, rows

    def produce_output(self, parsed_args, column_names, data):
        if not data and parsed_args.formatter == 'table':
            # An empty table is a blank line; say so instead (json, csv,
            # value and yaml stay machine-readable: [], a header, nothing).
            self.app.stdout.write(
                'no jobs\n' if parsed_args.all else
                'no unfinished jobs ("octavia-workflow list --all" shows '
                'finished ones too)\n')
            return 0
        return super().produce_output(parsed_args, column_names, data)


class Show(base.ShowOne):
    """Show a job, its parameters and each target's state.

    "-f json" prints one object with id, workflow, state, owner,
    parameters, created_at, updated_at, progress, schedule (the
    schedule that posted the job, else null), gate (the message of
    the approval gate a PAUSED job waits at, else null), approvals and
    targets.
    """

    def get_parser(self, prog_name):
        return _job_arg(super().get_parser(prog_name))

    def take_action(self, parsed_args):
        view = self.app.manager.jobs.get(parsed_args.job)
        if parsed_args.formatter in ('json', 'yaml'):
            return tuple(view), tuple(view.values())
        columns, values = submit.show_columns(view)
        targets = '\n'.join(
            f'{t["target"]}: {t["state"]}'
            + (f' ({t["error"]})' if t['error'] else '')
            + (f' ({t["waiting"]})' if t.get('waiting') else '')
            for t in view['targets'])
        extra = [('gate', view['gate'])] if view['gate'] else []
        if view['schedule']:
            extra.insert(0, ('schedule', view['schedule']))
        if view['approvals']:
            extra.append(('approvals', '\n'.join(
                f'{a["gate"]}: {a["at"]} by {a["by"]}'
                for a in view['approvals'])))
        extra.append(('targets', targets))
        return (columns + tuple(k for k, _ in extra),
                values + tuple(v for _, v in extra))


def _duration(target):
    if target['started_at'] and target['finished_at']:
        seconds = (target['finished_at'] - target['started_at'])
        return round(seconds.total_seconds(), 1)
    return None


def _side(details, key):
    side = details.get(key)
    if side is None:
        return ''
    if isinstance(side, (dict, list)):
        return json.dumps(side, sort_keys=True)
    return str(side)


class Report(base.Lister):
    """Per-target report of a job.

    Columns: target, action, state, before/after (what the runbook
    recorded, e.g. amphora and image ids), duration in seconds, attempts
    and error (or the reason a target was skipped).
    """

    def get_parser(self, prog_name):
        return _job_arg(super().get_parser(prog_name))

    def take_action(self, parsed_args):
        targets = self.app.manager.jobs.report(parsed_args.job)
        structured = parsed_args.formatter in ('json', 'yaml')
        rows = []
        for t in targets:
            details = t['details']
            before = details.get('before')
            after = details.get('after')
            if not structured:
                before, after = _side(details, 'before'), _side(details,
                                                                'after')
            rows.append((t['target'], t['action'], t['state'], before, after,
                         _duration(t), t['attempts'], t['error'] or ''))
        return REPORT_COLUMNS, rows


class Pause(base.ShowOne):
    """Pause a job: no new targets start; in-flight ones finish.

    Continue it with "resume".
    """

    def get_parser(self, prog_name):
        return _job_arg(super().get_parser(prog_name))

    def take_action(self, parsed_args):
        jobs = self.app.manager.jobs
        job = jobs.pause(parsed_args.job)
        return submit.show_columns(jobs.get(job['id']))


class Cancel(base.ShowOne):
    """Cancel a job: no new targets; in-flight ones finish; CANCELLED."""

    def get_parser(self, prog_name):
        return _job_arg(super().get_parser(prog_name))

    def take_action(self, parsed_args):
        jobs = self.app.manager.jobs
        job = jobs.cancel(parsed_args.job)
        return submit.show_columns(jobs.get(job['id']))


class Purge(base.Lister):
    """Delete the records of jobs that ended more than N days ago."""

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument('--older-than', type=float, required=True,
                            metavar='DAYS',
                            help='age in days of the last update (>= 0)')
        return parser

    def take_action(self, parsed_args):
        from octavia_workflows import exceptions

        if parsed_args.older_than < 0:
            raise exceptions.UserError('--older-than must be >= 0')
        ids = self.app.manager.jobs.purge(parsed_args.older_than)
        return ('id',), [(i,) for i in ids]

