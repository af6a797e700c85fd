"""``schedule create|list|show|delete|pause|resume``: cron-timed jobs.

The conductors post a schedule's jobs (see
:mod:`octavia_workflows.engine.schedules`); these commands only read and
write the schedule's row.  ``schedule create`` validates everything
first, exactly as ``submit`` does (workflow, parameters, cloud, the
runbook's pre-flight check) plus the cron expression: bad input prints
one line, exits 2 and stores nothing.

The engine modules are imported when a command runs, not with this
module, so that "--help" stays fast (they bring in SQLAlchemy).
"""

import json

from octavia_workflows import exceptions, workflow
from octavia_workflows.cli import base

#: As in :mod:`octavia_workflows.engine.schedules` (checked by the tests).
OVERLAPS = ('skip', 'allow')

SHOW_FIELDS = ('name', 'workflow', 'cron', 'timezone', 'parameters',
               'cloud', 'overlap', 'pause_on_failure', 'state',
               'paused_reason', 'next_fire', 'last_fire', 'last_job',
               'last_job_state', 'skipped', 'last_skipped', 'created_at',
               'updated_at')
LIST_COLUMNS = ('name', 'workflow', 'cron', 'state', 'next_fire',
                'last_job', 'skipped')


def _store(app):
    from octavia_workflows.engine import schedules

    return schedules.ScheduleRecords(app.manager.persistence.records.engine)


def _view(store, schedule):
    from octavia_workflows.engine import schedules

    states = store.job_states([schedule['last_job']])
    return schedules.view(schedule, states.get(schedule['last_job']))


def _show(view, structured):
    values = []
    for field in SHOW_FIELDS:
        value = view[field]
        if isinstance(value, dict) and not structured:
            value = json.dumps(value, sort_keys=True)
        values.append(value)
    return SHOW_FIELDS, tuple(values)


def _name_arg(parser):
    parser.add_argument('name', help='schedule name')
    return parser


class _ShowSchedule(base.ShowOne):
    def show(self, parsed_args, schedule):
        store = _store(self.app)
        return _show(_view(store, schedule),
                     parsed_args.formatter in ('json', 'yaml'))


class Create(_ShowSchedule):
    """Create a schedule: the conductors post WORKFLOW at every fire time.

    The cron expression is read in UTC: five fields (minute hour
    day-of-month month day-of-week), six with the seconds first
    ("*/30 * * * * *": every 30 seconds), or an alias such as @daily.
    A job is posted exactly once per fire time however many conductors
    run.  Parameters are validated now, as "submit" does.

    --overlap skip (the default): while the schedule's previous job is
    unfinished (pending, running or paused) nothing is posted and the
    fire time is counted as skipped ("schedule show"); allow: a job per
    fire time regardless.  --pause-on-failure: the schedule pauses when
    one of its jobs ends FAILED or pauses itself (circuit breaker);
    "schedule resume" continues it.  Fire times missed while no
    conductor ran are not made up in a burst: one job is posted for the
    latest missed fire time only.
    """

    def get_parser(self, prog_name):
        parser = _name_arg(super().get_parser(prog_name))
        parser.add_argument('--cron', required=True, metavar='EXPR',
                            help='cron expression, UTC (quote it)')
        parser.add_argument('workflow', help='workflow name (see "flows")')
        parser.add_argument(
            '--param', action='append', default=[], metavar='KEY=VALUE',
            help='workflow parameter (repeatable); "flows" lists them')
        parser.add_argument('--overlap', choices=OVERLAPS,
                            default=OVERLAPS[0],
                            help='while the previous job is unfinished: '
                            'skip the fire time (default) or allow '
                            'another job')
        parser.add_argument('--pause-on-failure', action='store_true',
                            help='pause the schedule when one of its jobs '
                            'fails or pauses itself')
        return parser

    def take_action(self, parsed_args):
        from octavia_workflows.engine import context, schedules
        from octavia_workflows.engine import records as rec

        manager = self.app.manager
        name = schedules.check_name(parsed_args.name)
        cron = schedules.check_cron(parsed_args.cron, rec.utcnow())
        raw = workflow.parse_assignments(parsed_args.param)
        flow = workflow.get(parsed_args.workflow)
        params = flow.validate(raw)
        cloud = manager.cloud_name if flow.needs_cloud else None
        if flow.needs_cloud and not cloud:
            raise exceptions.ConfigError(
                f'workflow {flow.name} needs a cloud: pass --os-cloud '
                f'NAME or set [cloud] name')
        if not manager.conf.task_flow.jobboard_enabled:
            raise exceptions.ConfigError(
                'schedules are posted by conductors: they need [task_flow] '
                'jobboard_enabled = True')
        if flow.preflight is not None:
            flow.preflight(context.PlanContext(
                params, cloud_name=cloud, conf=manager.conf), params, False)
        store = _store(self.app)
        schedule = store.create(
            name, flow.name, cron, params, cloud=cloud,
            overlap=parsed_args.overlap,
            pause_on_failure=parsed_args.pause_on_failure)
        return self.show(parsed_args, schedule)


class List(base.Lister):
    """List the schedules: state (active or paused), next fire time (UTC),
    the job posted last and how many fire times were skipped."""

    def take_action(self, parsed_args):
        from octavia_workflows.engine import schedules

        store = _store(self.app)
        items = store.list()
        last = store.job_states([s['last_job'] for s in items])
        rows = []
        for schedule in items:
            view = schedules.view(schedule, last.get(schedule['last_job']))
            rows.append((view['name'], view['workflow'], view['cron'],
                         view['state'], view['next_fire'] or '',
                         view['last_job'] or '', view['skipped']))
        return LIST_COLUMNS, rows

    def produce_output(self, parsed_args, column_names, data):
        if not data and parsed_args.formatter == 'table':
            self.app.stdout.write('no schedules\n')
            return 0
        return super().produce_output(parsed_args, column_names, data)


class Show(_ShowSchedule):
    """Show a schedule: its workflow, parameters, cron (UTC), state, why
    it paused, next and last fire times, the job posted last (and its
    state) and the fire times skipped because a job was unfinished."""

    def get_parser(self, prog_name):
        return _name_arg(super().get_parser(prog_name))

    def take_action(self, parsed_args):
        return self.show(parsed_args, _store(self.app).get(parsed_args.name))


class Delete(base.Command):
    """Delete a schedule.  Jobs it posted are left as they are."""

    def get_parser(self, prog_name):
        return _name_arg(super().get_parser(prog_name))

    def take_action(self, parsed_args):
        _store(self.app).delete(parsed_args.name)
        self.app.stdout.write(f'schedule {parsed_args.name} deleted\n')
        return base.EXIT_OK


class Pause(_ShowSchedule):
    """Pause a schedule: nothing is posted until "schedule resume".

    Jobs already posted carry on.
    """

    def get_parser(self, prog_name):
        return _name_arg(super().get_parser(prog_name))

    def take_action(self, parsed_args):
        return self.show(parsed_args,
                         _store(self.app).pause(parsed_args.name))


class Resume(_ShowSchedule):
    """Resume a paused schedule from its next fire time after now (fire
    times that passed while it was paused are not posted)."""

    def get_parser(self, prog_name):
        return _name_arg(super().get_parser(prog_name))

    def take_action(self, parsed_args):
        return self.show(parsed_args,
                         _store(self.app).resume(parsed_args.name))
