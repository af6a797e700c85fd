"""The ``octavia-workflow`` application (cliff).

Global options: ``--config-file`` (repeatable), ``--os-cloud``,
``--debug``.  Nothing heavy is imported here: TaskFlow, openstacksdk and
the backends load only when a command needs them, so ``--help`` is fast.
"""

import logging
import os
import sys
import warnings

from cliff import app, commandmanager

COMMANDS = 'octavia_workflows.cli'

DESCRIPTION = """Durable, resumable operator runbooks for OpenStack Octavia.

A job is submitted here, claimed by a conductor from the Redis or
ZooKeeper jobboard (or run in the foreground when the jobboard is
disabled), and every step is saved in the persistence database so any
controller can resume it.

Exit codes: 0 ok; 1 the job failed or was cancelled; 2 bad input
(nothing was posted or changed); 3 "wait" timed out; 4 the job waits at
an approval gate (answer with "approve" or "reject"); 5 the job paused
itself (circuit breaker)."""


def quiet_imports():
    """Silence deprecation noise that TaskFlow's imports (and the SDK's
    calls) print: it is for their developers, not for operators."""
    warnings.filterwarnings('ignore', category=DeprecationWarning)
    warnings.filterwarnings('ignore', category=PendingDeprecationWarning)
    warnings.filterwarnings('ignore', message=r'(?s).*eventlet')


class Manager:
    """Lazily built configuration, persistence and job service."""

    def __init__(self, options):
        self.options = options
        self._conf = None
        self._persistence = None
        self._jobs = None

    @property
    def conf(self):
        if self._conf is None:
            from octavia_workflows import conf

            self._conf = conf.load(self.options.config_file)
        return self._conf

    @property
    def cloud_name(self):
        return (self.options.os_cloud or self.conf.cloud.name
                or os.environ.get('OS_CLOUD'))

    @property
    def persistence(self):
        if self._persistence is None:
            quiet_imports()
            from octavia_workflows import conf
            from octavia_workflows.engine import persistence

            store = persistence.Persistence(conf.persistence_url(self.conf))
            store.check()
            self._persistence = store
        return self._persistence

    def board(self, name='octavia-workflow'):
        """A connected jobboard driver (BackendUnavailable if not)."""
        from octavia_workflows.engine import jobboard

        driver = jobboard.fetch(self.conf, name=name)
        driver.connect()
        return driver

    @property
    def jobs(self):
        if self._jobs is None:
            from octavia_workflows.engine import jobs

            self._jobs = jobs.JobService(self.conf, self.persistence,
                                         board_factory=self.board)
        return self._jobs

    def close(self):
        if self._jobs is not None:
            self._jobs.close()


class OctaviaWorkflowApp(app.App):
    # The same name in usage lines however we are started (console script,
    # ``python -m octavia_workflows.cmd.cli``, a wrapper).
    NAME = 'octavia-workflow'
    # Console logs at WARNING unless -v; the conductor raises it to INFO.
    DEFAULT_VERBOSE_LEVEL = 0
    CONSOLE_MESSAGE_FORMAT = '%(asctime)s %(levelname)s %(name)s %(message)s'

    def __init__(self):
        from octavia_workflows import version

        super().__init__(
            description=DESCRIPTION,
            version=version.version_string(),
            command_manager=commandmanager.CommandManager(COMMANDS),
            deferred_help=True)
        self.manager = None

    def build_option_parser(self, description, version,
                            argparse_kwargs=None):
        import argparse

        kwargs = dict(argparse_kwargs or {})
        kwargs['formatter_class'] = argparse.RawDescriptionHelpFormatter
        kwargs.setdefault('prog', self.NAME)
        parser = super().build_option_parser(description, version, kwargs)
        for action in parser._actions:
            # cliff names the program after the base class, not ours.
            if isinstance(action, argparse._VersionAction):
                action.version = f'{self.NAME} {version}'
        parser.add_argument(
            '--config-file', action='append', default=[], metavar='PATH',
            help='Configuration file (repeatable). Default: oslo.config '
            'search, /etc/octavia-workflows/octavia-workflows.conf.')
        parser.add_argument(
            '--os-cloud', metavar='NAME', default=None,
            help='clouds.yaml entry to use (overrides [cloud] name and '
            'OS_CLOUD).')
        return parser

    def configure_logging(self):
        super().configure_logging()
        # Python warnings (a library's, during a run) are log records
        # too: one readable line on stderr, never inside a progress line.
        warnings.showwarning = self._log_warning
        # Libraries are chatty at INFO; keep the console to our own logs.
        for noisy in ('stevedore', 'kazoo', 'taskflow', 'urllib3', 'alembic',
                      'keystoneauth', 'openstack', 'oslo_config'):
            logging.getLogger(noisy).setLevel(
                logging.DEBUG if self.options.debug else logging.WARNING)

    def _log_warning(self, message, category, filename, lineno, file=None,
                     line=None):
        where = f' ({filename}:{lineno})' if self.options.debug else ''
        logging.getLogger('py.warnings').warning(
            '%s: %s%s', category.__name__, message, where)

    def run_subcommand(self, argv):
        try:
            self.command_manager.find_command(argv)
        except ValueError:
            # One line on stderr, like every other bad input (cliff
            # prints several on stdout).
            names = [name for name, _ in self.command_manager]
            self.stderr.write(f'{self.NAME}: error: '
                              f'{unknown_command(names, argv)} (see '
                              f'"{self.NAME} --help")\n')
            return 2
        return super().run_subcommand(argv)

    def initialize_app(self, argv):
        quiet_imports()
        self.manager = Manager(self.options)

    def clean_up(self, cmd, result, err):
        if self.manager is not None:
            self.manager.close()


def unknown_command(names, argv):
    """Why ``argv`` names no command, with the closest command name."""
    import difflib

    names = sorted(names)
    if len(argv) > 1 and any(n.startswith(argv[0] + ' ') for n in names):
        typed = f'{argv[0]} {argv[1]}'          # e.g. "db upgrad"
        group = [n for n in names if n.startswith(argv[0] + ' ')]
        hint = difflib.get_close_matches(typed, group, n=1, cutoff=0)
    else:
        typed = argv[0]
        hint = ([n for n in names if n.startswith(typed)][:1]
                or difflib.get_close_matches(typed, names, n=1))
    more = f'; did you mean {hint[0]}?' if hint else ''
    return f'unknown command {typed!r}{more}'


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        argv = ['--help']
    return OctaviaWorkflowApp().run(argv)
