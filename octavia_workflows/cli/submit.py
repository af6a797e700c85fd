"""``submit``, ``wait`` and ``resume``: starting and following jobs."""

import json
import signal
import sys
import threading

from octavia_workflows import states, workflow
from octavia_workflows.cli import base, progress

SHOW_FIELDS = ('id', 'workflow', 'state', 'owner', 'mode', 'cloud',
               'parameters', 'progress', 'created_at', 'updated_at',
               'reason')


def show_columns(view):
    values = []
    for field in SHOW_FIELDS:
        value = view.get(field)
        if isinstance(value, dict):
            value = json.dumps(value, sort_keys=True)
        values.append(value)
    return SHOW_FIELDS, tuple(values)


def exit_code(view, timed_out=False):
    """0 success, 1 failed/cancelled (or paused by the operator), 3
    timeout, 4 waiting at an approval gate, 5 the job paused itself."""
    if timed_out:
        return base.EXIT_TIMEOUT
    if view['state'] == states.PAUSED and view.get('gate'):
        return base.EXIT_GATE
    if view.get('paused_by') == states.BY_JOB:
        return base.EXIT_PAUSED
    return (base.EXIT_OK if view['state'] == states.SUCCESS
            else base.EXIT_FAILED)


def run_inline(manager, job_id, stream=None):
    """Run a job in this process (jobboard disabled) while showing progress.

    Ctrl-C or SIGTERM suspends the run after the steps in flight; the job
    is left PAUSED and ``resume JOB`` continues it from any host that
    reaches the same database.
    """
    # Import TaskFlow's engines (and with them eventlet) here, in the
    # main thread: imported first inside the worker thread they leave
    # that thread's join() waiting forever once it ends.
    import taskflow.engines  # noqa: F401

    from octavia_workflows.engine import claims, runner

    jobs = manager.jobs
    conf = manager.conf
    owner = jobs.take_inline(job_id)
    claim = claims.InlineClaim(job_id, owner, manager.persistence.records,
                               conf.task_flow.jobboard_expiration_time)
    claim.start()
    stop = threading.Event()
    result = {}

    def work():
        try:
            result['outcome'] = runner.run_job(
                manager.persistence, job_id, claim, stop_event=stop,
                save_logbook=conf.task_flow.jobboard_save_logbook,
                conf=conf)
        finally:
            claim.stop()

    worker = threading.Thread(target=work, name='inline-run')

    def on_signal(signum, frame):
        if not stop.is_set():
            sys.stderr.write('\ninterrupted: finishing the steps in flight, '
                             'then pausing the job\n')
        stop.set()

    # What had finished before this run (resumed, approved) is not
    # printed again; what this run finishes reads RUNNING, then DONE.
    initial = jobs.get(job_id)
    previous = {sig: signal.signal(sig, on_signal)
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        worker.start()
        progress.follow(lambda: jobs.get(job_id), stream=stream,
                        until=lambda: not worker.is_alive(),
                        initial=initial)
        worker.join()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    outcome = result.get('outcome')
    if outcome is not None and outcome.release:
        jobs.interrupted(job_id, outcome.reason)
    return jobs.get(job_id)


class Submit(base.ShowOne):
    """Validate parameters and submit a workflow job.

    With --dry-run, print the plan (every target in order, what is
    skipped and why) and post nothing.  Otherwise post the job to the
    jobboard and print it, or run it in the foreground when the jobboard
    is disabled.  "-f value -c id" prints the new job's id alone.
    """

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument('workflow', help='workflow name (see "flows")')
        parser.add_argument(
            '--param', action='append', default=[], metavar='KEY=VALUE',
            help='workflow parameter (repeatable); "flows" lists them')
        parser.add_argument('--dry-run', action='store_true',
                            help='print the plan; post and change nothing')
        parser.add_argument('--wait', action='store_true',
                            help='follow the job until it ends (exit 0 '
                            'success, 1 failed/cancelled, 4 waiting at an '
                            'approval gate, 5 the job paused itself)')
        parser.add_argument('--timeout', type=float, default=None,
                            help='with --wait: give up waiting after this '
                            'many seconds (exit 3)')
        return parser

    def take_action(self, parsed_args):
        manager = self.app.manager
        raw = workflow.parse_assignments(parsed_args.param)
        # Validation needs no database: a dry-run never opens one.
        flow = workflow.get(parsed_args.workflow)
        params = flow.validate(raw)
        cloud = manager.cloud_name if flow.needs_cloud else None
        if parsed_args.dry_run:
            from octavia_workflows.cli import plan

            self._exit = plan.print_plan(self, parsed_args, flow, params,
                                         cloud)
            return (), ()
        if flow.needs_cloud and not cloud:
            from octavia_workflows import exceptions

            raise exceptions.ConfigError(
                f'workflow {flow.name} needs a cloud: pass --os-cloud '
                f'NAME or set [cloud] name')
        if flow.preflight is not None:
            from octavia_workflows.engine import context

            flow.preflight(context.PlanContext(
                params, cloud_name=cloud, conf=manager.conf), params, False)
        job_id = manager.jobs.create(flow, params, cloud=cloud)
        timed_out = False
        if not manager.jobs.board_enabled:
            view = run_inline(manager, job_id)
        elif parsed_args.wait:
            view, timed_out = progress.follow(
                lambda: manager.jobs.get(job_id), timeout=parsed_args.timeout)
        else:
            view = manager.jobs.get(job_id)
        waited = parsed_args.wait or not manager.jobs.board_enabled
        self._exit = exit_code(view, timed_out) if waited else base.EXIT_OK
        return show_columns(view)

    def produce_output(self, parsed_args, column_names, data):
        if parsed_args.dry_run:
            return self._exit
        super().produce_output(parsed_args, column_names, data)
        return self._exit

    def run(self, parsed_args):
        self._exit = base.EXIT_OK
        result = super().run(parsed_args)
        return result if result else self._exit


class Wait(base.Command):
    """Follow a job until it ends.

    A progress bar with ETA on a terminal, plain lines otherwise.  Exit
    0 when the job succeeded, 1 when it failed or was cancelled, 3 on
    timeout, 4 when it waits PAUSED at an approval gate (the gate's
    message is printed; answer with "approve" or "reject"), 5 when the
    job paused itself, e.g. its circuit breaker tripped (the reason is
    printed; continue with "resume", end it with "cancel").  Ctrl-C
    stops waiting, never the job.
    """

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument('job', help='job id (or a unique prefix)')
        parser.add_argument('--timeout', type=float, default=None,
                            help='seconds to wait before giving up (exit 3)')
        return parser

    def take_action(self, parsed_args):
        jobs = self.app.manager.jobs
        job_id = jobs.resolve(parsed_args.job)
        view, timed_out = progress.follow(lambda: jobs.get(job_id),
                                          timeout=parsed_args.timeout)
        return exit_code(view, timed_out)


class Resume(base.ShowOne):
    """Continue a PAUSED job, or an interrupted foreground run.

    Jobboard mode: the job is posted again and a conductor continues it
    from its last saved step.  Jobboard disabled: the run continues here,
    in the foreground.
    """

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument('job', help='job id (or a unique prefix)')
        return parser

    def take_action(self, parsed_args):
        manager = self.app.manager
        job = manager.jobs.resume(parsed_args.job)
        if job['mode'] == 'inline' or not manager.jobs.board_enabled:
            view = run_inline(manager, job['id'])
            self._exit = exit_code(view)
        else:
            view = manager.jobs.get(job['id'])
            self._exit = base.EXIT_OK
        return show_columns(view)

    def run(self, parsed_args):
        self._exit = base.EXIT_OK
        result = super().run(parsed_args)
        return result if result else self._exit
