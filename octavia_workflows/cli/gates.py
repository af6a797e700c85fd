"""``approve`` and ``reject``: answering a runbook's approval gate.

A job waiting at a gate is PAUSED and ``show``/``wait`` print the gate's
message.  ``approve JOB`` records the answer and continues the job like
``resume`` (re-posted to the jobboard, or run here in the foreground
when the jobboard is disabled).  ``reject JOB`` ends it CANCELLED with
the reason "rejected at gate ...".  Both refuse, with exit code 2 and
nothing changed, a job that is not waiting at a gate.
"""

from octavia_workflows.cli import base, submit


class Approve(submit.Resume):
    """Approve the gate a PAUSED job waits at, and continue the job.

    Jobboard mode: the job is posted again and a conductor continues it
    past the gate.  Jobboard disabled: it continues here, in the
    foreground (exit codes as for "wait").  Exit 2 if the job is not
    waiting at a gate.
    """

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument(
            '--gate', metavar='KEY', default=None,
            help='approve only if the job waits at this gate ("show -f '
            'json" lists it); protects against approving a newer question')
        return parser

    def take_action(self, parsed_args):
        manager = self.app.manager
        job = manager.jobs.approve(parsed_args.job, gate=parsed_args.gate)
        if job['mode'] == 'inline' or not manager.jobs.board_enabled:
            view = submit.run_inline(manager, job['id'])
            self._exit = submit.exit_code(view)
        else:
            view = manager.jobs.get(job['id'])
            self._exit = base.EXIT_OK
        return submit.show_columns(view)


class Reject(base.ShowOne):
    """Reject the gate a PAUSED job waits at: the job ends CANCELLED.

    Its reason reads "rejected at gate KEY by USER@HOST (REASON):
    MESSAGE" plus what the runbook says is left to do by hand.  Exit 2
    if the job is not waiting at a gate (use "cancel").
    """

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument('job', help='job id (or a unique prefix)')
        parser.add_argument('--reason', default=None,
                            help='why (recorded in the job\'s reason)')
        return parser

    def take_action(self, parsed_args):
        jobs = self.app.manager.jobs
        job = jobs.reject(parsed_args.job, reason=parsed_args.reason)
        return submit.show_columns(jobs.get(job['id']))
