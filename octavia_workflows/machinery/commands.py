"""Operator-configured commands: templates, redaction, running them.

A runbook that has to act on the control plane itself (stop a service,
back up a database) runs commands the operator configured, never
commands written in code.  A template is one line:

- by default it is split like a shell would (``shlex``) and run without
  a shell: ``ssh {host} sudo systemctl stop octavia-api``.  Values are
  substituted inside single arguments, so a value can never add an
  argument or a shell construct;
- prefixed with ``shell:`` it runs through ``/bin/sh -c`` (needed for
  redirections and pipes: ``shell: mysqldump octavia > {backup_file}``);
  every substituted value is then quoted with ``shlex.quote``.

Placeholders are ``{name}`` for the names the caller allows (e.g.
``host``, ``job_id``, ``backup_file``) and ``{secret:NAME}`` for a value
from a secret option (``[cold_upgrade] secrets``).  Other braces are
left alone (``awk '{print $1}'`` works).  An unknown placeholder or
secret, or unbalanced quotes, raise
:class:`~octavia_workflows.exceptions.ConfigError` before anything runs.

Nothing secret is shown: :attr:`Command.display` has every secret
replaced with ``***``, and :func:`redact` removes the secrets' values and
usual password spellings (``--password=X``, ``password=X``,
``://user:X@``) from any text, such as a command's output, before it is
logged or stored.
"""

import dataclasses
import os
import re
import shlex
import signal
import subprocess
import time

from octavia_workflows import exceptions

SHELL_PREFIX = 'shell:'
MASK = '***'
#: Lines and characters of a command's output kept for the report.
OUTPUT_LINES = 20
OUTPUT_CHARS = 2000

_PLACEHOLDER = re.compile(r'\{([a-z_]+)(?::([A-Za-z0-9_.-]+))?\}')
_PATTERNS = (
    (re.compile(r'(--?(?:password|passwd|pass)[= ])(\S+)', re.I),
     r'\1' + MASK),
    (re.compile(r'\b((?:[A-Za-z_]*password|passwd|pwd|secret|token)=)'
                r'([^\s&;]+)', re.I), r'\1' + MASK),
    (re.compile(r'(://[^:/@\s]+:)([^@\s]+)(@)'), r'\1' + MASK + r'\3'),
    (re.compile(r'(identified by\s+)(\'[^\']*\'|"[^"]*"|\S+)', re.I),
     r'\1' + MASK),
)


def redact(text, secrets=()):
    """``text`` with every secret value and password-looking value
    replaced by ``***``."""
    if not text:
        return text
    for value in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(value, MASK)
    for pattern, repl in _PATTERNS:
        text = pattern.sub(repl, text)
    return text


@dataclasses.dataclass(frozen=True)
class Command:
    """A rendered command: ``argv`` to run, ``display`` to show."""

    argv: tuple
    display: str
    shell: bool
    secrets: tuple = ()

    def __repr__(self):
        return f'<Command {self.display}>'


def check(template, allowed, secrets, what='command'):
    """Validate a template without rendering it.

    :raises ConfigError: unknown placeholder or secret, bad quoting.
    """
    render(template, {name: 'x' for name in allowed}, secrets, what)


def uses(template, name):
    """True if ``template`` has the placeholder ``{name}``."""
    return any(m.group(1) == name and m.group(2) is None
               for m in _PLACEHOLDER.finditer(template or ''))


def render(template, values, secrets, what='command'):
    """Render ``template`` with ``values`` and ``secrets`` (dicts).

    :raises ConfigError: empty template, unknown placeholder or secret,
        unbalanced quotes.
    """
    text = (template or '').strip()
    shell = text.startswith(SHELL_PREFIX)
    if shell:
        text = text[len(SHELL_PREFIX):].strip()
    if not text:
        raise exceptions.ConfigError(f'{what}: the command is empty')
    secrets = dict(secrets or {})
    used = []

    def sub(match, masked, quote):
        name, key = match.group(1), match.group(2)
        if name == 'secret' and key is not None:
            if key not in secrets:
                raise exceptions.ConfigError(
                    f'{what}: {{secret:{key}}} is not defined in '
                    f'[cold_upgrade] secrets')
            used.append(secrets[key])
            value = MASK if masked else str(secrets[key])
        elif key is None and name in values:
            value = str(values[name])
        else:
            raise exceptions.ConfigError(
                f'{what}: unknown placeholder {match.group(0)} (known: '
                f'{", ".join("{" + n + "}" for n in sorted(values))}, '
                f'{{secret:NAME}})')
        return shlex.quote(value) if quote and not masked else value

    def fill(part, masked, quote=False):
        return _PLACEHOLDER.sub(lambda m: sub(m, masked, quote), part)

    if shell:
        real = fill(text, False, quote=True)
        display = SHELL_PREFIX + ' ' + fill(text, True)
        argv = ('/bin/sh', '-c', real)
    else:
        try:
            tokens = shlex.split(text)
        except ValueError as exc:
            raise exceptions.ConfigError(f'{what}: {exc}') from None
        argv = tuple(fill(t, False) for t in tokens)
        display = ' '.join(_quote(fill(t, True)) for t in tokens)
    return Command(argv, redact(display, used), shell, tuple(used))


def _quote(token):
    # Like shlex.quote, but the mask (***) needs no quotes for reading.
    if token and _SAFE.fullmatch(token):
        return token
    return shlex.quote(token)


_SAFE = re.compile(r'[\w@%+=:,./*-]+')


@dataclasses.dataclass
class Result:
    """What a command did: exit code (None: timed out), output tail."""

    returncode: int | None
    output: str
    seconds: float

    @property
    def ok(self):
        return self.returncode == 0

    def summary(self):
        """One line: ``exit 3: <last output line>`` or ``timed out``."""
        last = next((line for line in reversed(self.output.splitlines())
                     if line.strip()), '')
        head = ('timed out' if self.returncode is None
                else f'exit {self.returncode}')
        return f'{head}: {last}' if last else head


def run(command, timeout, cwd=None):
    """Run ``command``; never raises for the command's own failure.

    The command runs in its own process group with stdin closed and
    stdout+stderr captured; after ``timeout`` seconds the whole group is
    killed (SIGTERM, then SIGKILL) and the result has ``returncode``
    None.  The output is redacted and cut to its last lines.

    :raises ConfigError: the program does not exist or cannot be run.
    """
    started = time.monotonic()
    try:
        proc = subprocess.Popen(
            command.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, start_new_session=True, cwd=cwd)
    except OSError as exc:
        raise exceptions.ConfigError(
            f'cannot run {command.display}: {exc.strerror or exc}') from None
    try:
        out, _ = proc.communicate(timeout=timeout)
        code = proc.returncode
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        out, _ = proc.communicate()
        code = None
    return Result(code, tail(redact(out.decode(errors='replace'),
                                    command.secrets)),
                  round(time.monotonic() - started, 2))


def _kill_group(proc):
    for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


def tail(text, lines=OUTPUT_LINES, chars=OUTPUT_CHARS):
    """The last ``lines`` lines of ``text``, at most ``chars`` long."""
    kept = '\n'.join(text.rstrip().splitlines()[-lines:])
    return kept[-chars:]
