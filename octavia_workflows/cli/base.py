"""Command base classes: one-line errors and exit codes.

Every command derives from :class:`Command`, :class:`Lister` or
:class:`ShowOne`.  They add, on top of cliff:

- argument errors print one line (``octavia-workflow submit: error:
  ...``) and exit 2, without the usage block;
- :class:`~octavia_workflows.exceptions.UserError` prints one line and
  exits 2; other library errors exit 1 with one line (the traceback only
  with ``--debug``).
"""

import argparse
import sys

from cliff import command, lister, show

from octavia_workflows import exceptions

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_TIMEOUT = 3
#: ``wait`` (and a foreground run) stopped because the job waits PAUSED
#: at an approval gate: answer it with ``approve`` or ``reject``.
EXIT_GATE = 4
#: ``wait`` (and a foreground run) stopped because the job paused itself
#: (circuit breaker): resume it, or cancel it.
EXIT_PAUSED = 5


class ArgumentParser(argparse.ArgumentParser):
    """argparse with a one-line error and exit code 2."""

    def error(self, message):
        self.exit(EXIT_BAD_INPUT, f'{self.prog}: error: {message}\n')


class _Parser(command.Command):
    """Builds our parser (sits below cliff's display classes in the MRO)."""

    def get_parser(self, prog_name):
        return ArgumentParser(
            description=self.get_description(), epilog=self.get_epilog(),
            prog=prog_name,
            formatter_class=argparse.RawDescriptionHelpFormatter)

    def get_epilog(self):
        # cliff's own looks up which installed distribution provides the
        # command (to name a plugin; ours are all this package's): a scan
        # of every installed package's metadata, ~0.1 s of each CLI run.
        return self._epilog or ''


class _Errors:
    """Maps library exceptions to one-line messages and exit codes."""

    def run(self, parsed_args):
        try:
            return super().run(parsed_args)
        except exceptions.UserError as exc:
            self._fail(exc)
            return EXIT_BAD_INPUT
        except exceptions.OctaviaWorkflowsError as exc:
            self._fail(exc)
            return EXIT_FAILED

    def _fail(self, exc):
        if getattr(self.app_args, 'debug', False):
            import traceback

            traceback.print_exc()
        message = str(exc).strip().splitlines()[0] if str(exc) else \
            type(exc).__name__
        sys.stderr.write(f'octavia-workflow: error: {message}\n')


class Command(_Errors, _Parser):
    """A command with no formatted output."""


class Lister(_Errors, lister.Lister, _Parser):
    """A command printing rows (``-f table|csv|json|value|yaml``)."""


class ShowOne(_Errors, show.ShowOne, _Parser):
    """A command printing one object (``-f table|json|value|yaml|csv``)."""

    #: cliff's single-object formatters plus csv (cli/formatters.py).
    formatter_namespace = 'octavia_workflows.formatter.show'
