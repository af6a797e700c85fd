"""``flows``, ``db upgrade`` and ``conductor``."""

import logging
import signal

from octavia_workflows.cli import base

LOG = logging.getLogger(__name__)


class Flows(base.Lister):
    """List the installed workflows and their parameters.

    Each parameter is shown as name (type, default) and what it means;
    pass them to "submit WORKFLOW --param name=value".
    """

    def take_action(self, parsed_args):
        from octavia_workflows import workflow

        rows = []
        for name in workflow.names():
            flow = workflow.get(name)
            if parsed_args.formatter in ('json', 'yaml'):
                params = [{'name': p.name, 'type': p.type,
                           'default': p.default, 'required': p.required,
                           'help': p.help} for p in flow.params]
            else:
                params = '\n'.join(f'{p.name} ({p.describe()}): {p.help}'
                                   for p in flow.params)
            rows.append((flow.name, flow.description, params))
        return ('name', 'description', 'parameters'), rows


class DbUpgrade(base.Command):
    """Create or upgrade the persistence schema (safe to run again).

    Concurrent runs wait for each other (a database lock), so it can be
    part of every controller's deployment.
    """

    def take_action(self, parsed_args):
        from octavia_workflows import conf
        from octavia_workflows.cli import app
        from octavia_workflows.engine import persistence

        app.quiet_imports()
        url = conf.persistence_url(self.app.manager.conf)
        store = persistence.Persistence(url)
        try:
            store.upgrade()
        finally:
            store.close()
        self.app.stdout.write(
            f'persistence schema is current in '
            f'{persistence.redact_url(url)}\n')
        return base.EXIT_OK


class Conductor(base.Command):
    """Run the conductor daemon: claim and run jobs until SIGTERM.

    Its name is NAME plus a unique suffix per process start; "show"
    reports it as the job's owner.  On SIGTERM (or Ctrl-C) it stops
    claiming, lets in-flight steps finish, releases its claims and exits
    0.  Needs [task_flow] jobboard_enabled = True.  With [conductor]
    metrics_port set it serves /metrics and /healthz, and, with a cloud
    configured, the fleet census as octavia_workflows_fleet_* gauges
    every [fleet] audit_interval seconds (one conductor at a time).
    """

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument('--workers', type=int, default=None,
                            metavar='N',
                            help='jobs run at the same time (default: '
                            '[task_flow] max_workers)')
        parser.add_argument('--name', default=None,
                            help='name prefix (default: [conductor] name, '
                            'else the host name)')
        return parser

    def take_action(self, parsed_args):
        from octavia_workflows import exceptions
        from octavia_workflows.engine import conductor, fleet_census, metrics

        manager = self.app.manager
        conf = manager.conf
        if not conf.task_flow.jobboard_enabled:
            raise exceptions.ConfigError(
                'the conductor needs [task_flow] jobboard_enabled = True '
                '(with the jobboard disabled, "submit" runs jobs itself)')
        workers = parsed_args.workers or conf.task_flow.max_workers
        if workers < 1:
            raise exceptions.UserError('--workers must be at least 1')
        store = manager.persistence
        name = parsed_args.name or conf.conductor.name
        driver = manager.board(name=name or 'conductor')
        stats = metrics.Metrics(
            stale_after=max(30.0, 10 * conf.conductor.poll_interval))
        worker = conductor.Conductor(conf, store, driver, name=name,
                                     workers=workers, listener=stats)
        stats.info.info({'name': worker.name})
        audit = None
        if conf.conductor.metrics_port is not None:
            stats.serve(conf.conductor.metrics_host,
                        conf.conductor.metrics_port)
            audit = fleet_census.start(
                conf, fleet_census.FleetGauges(stats.registry), driver,
                worker.name, manager.cloud_name)

        def on_signal(signum, frame):
            LOG.info('conductor %s: signal %d', worker.name, signum)
            worker.stop()

        if self.app.options.verbose_level == 0:
            for handler in logging.getLogger().handlers:
                handler.setLevel(logging.INFO)
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        self.app.stdout.write(f'conductor {worker.name} running\n')
        self.app.stdout.flush()
        try:
            worker.run()
        finally:
            if audit is not None:
                audit.stop()
            stats.close()
            driver.close()
        return base.EXIT_OK
