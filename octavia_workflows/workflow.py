"""What a runbook declares, and the registry that finds them.

The neutral ground between the engine (which runs jobs) and the
runbooks (:mod:`octavia_workflows.flows`, which say what a job does):
both import this module, neither imports the other.

A runbook is a package (``flows/<name>/``): its ``__init__`` declares
a module-level :class:`Workflow` named ``WORKFLOW`` (parameters,
checks, the plan) and registers it under the
``octavia_workflows.workflows`` entry point, and imports no TaskFlow;
its ``flow`` module holds the steps and the flow factories.  The
package's ``__getattr__`` (:func:`flow_names`) finds the factories under
their frozen names (``octavia_workflows.flows.<name>:<factory>``) in
``flow``, imported on first use: validating, planning and submitting a
job never load TaskFlow.  :func:`get` loads a declaration through
stevedore, like every other plug point.  The workflow says:

- its parameters (typed, with defaults), validated before anything is
  posted;
- ``plan(ctx, params)``: read-only; returns the ordered targets it will
  act on and the ones it skips with the reason.  The plan is frozen in
  the persistence store when the job first starts and never recomputed;
- ``factory``: dotted name of a module-level function
  ``factory(params, targets)`` returning the TaskFlow flow.  Atom names
  must be stable across releases; a changed graph gets a new factory,
  and the old one moves to ``earlier_factories`` (oldest first): a job
  is always resumed by the factory that built it (recorded with its
  logbook; a job started before factories were recorded was built by
  the oldest one);
- ``lanes(params)``: how many targets its flow may run side by side
  (the engine sizes its thread pool from it);
- ``run_state(context)``: the per-job run state its tasks share
  (pacer, read-ahead, breaker), built once per run by the engine and
  handed to the tasks as ``context.run``.

Parsing errors raise :class:`~octavia_workflows.exceptions.
InvalidParameter` with a one-line message.
"""

import dataclasses
import difflib
import importlib
import typing
import uuid

from octavia_workflows import exceptions, windows

ENTRY_POINT = 'octavia_workflows.workflows'

_TRUE = ('1', 'true', 'yes', 'on')
_FALSE = ('0', 'false', 'no', 'off')


@dataclasses.dataclass(frozen=True)
class Param:
    """A workflow parameter.

    ``type`` is one of ``int``, ``float``, ``bool``, ``str``, ``list``
    (comma-separated strings), ``uuids`` (comma-separated UUIDs, e.g.
    load balancer or amphora ids), ``path`` (a file path string) or
    ``window`` (a maintenance window, :mod:`octavia_workflows.windows`).
    """

    name: str
    type: str
    help: str
    default: typing.Any = None
    required: bool = False
    min: float | None = None
    max: float | None = None
    choices: tuple = ()

    def parse(self, raw):
        """Convert the text ``raw`` (or a JSON value) to this type."""
        value = raw
        try:
            if self.type == 'int':
                if isinstance(raw, bool):
                    raise ValueError
                value = int(raw)
            elif self.type == 'float':
                if isinstance(raw, bool):
                    raise ValueError
                value = float(raw)
                if value != value or value in (float('inf'), float('-inf')):
                    raise ValueError
            elif self.type == 'bool':
                if isinstance(raw, bool):
                    value = raw
                elif str(raw).lower() in _TRUE:
                    value = True
                elif str(raw).lower() in _FALSE:
                    value = False
                else:
                    raise ValueError
            elif self.type in ('list', 'uuids'):
                if isinstance(raw, (list, tuple)):
                    value = [str(v) for v in raw]
                else:
                    value = [v.strip() for v in str(raw).split(',')
                             if v.strip()]
                if self.type == 'uuids':
                    value = [_uuid(self.name, v) for v in value]
            elif self.type == 'window':
                if not isinstance(raw, str):
                    raise ValueError
                value = windows.parse(raw, self.name).text.strip()
            else:
                if not isinstance(raw, str):
                    raise ValueError
                value = raw
        except (TypeError, ValueError):
            raise exceptions.InvalidParameter(
                f'parameter {self.name}: {raw!r} is not a valid {self.type}'
            ) from None
        if self.min is not None and value < self.min:
            raise exceptions.InvalidParameter(
                f'parameter {self.name}: {value} is below the minimum '
                f'{self.min:g}')
        if self.max is not None and value > self.max:
            raise exceptions.InvalidParameter(
                f'parameter {self.name}: {value} is above the maximum '
                f'{self.max:g}')
        if self.choices and value not in self.choices:
            raise exceptions.InvalidParameter(
                f'parameter {self.name}: {value!r} is not one of '
                f'{", ".join(map(str, self.choices))}')
        return value

    def describe(self):
        """``type, default X`` text for help and ``flows``."""
        if self.required:
            extra = 'required'
        elif self.default is None:
            extra = 'optional'
        else:
            extra = f'default {self.default}'
        return f'{self.type}, {extra}'


@dataclasses.dataclass(frozen=True)
class Target:
    """One planned or skipped target of a job (JSON-simple)."""

    target: str
    action: str
    details: dict = dataclasses.field(default_factory=dict)
    reason: str | None = None

    def as_dict(self):
        return dataclasses.asdict(self)


@dataclasses.dataclass
class Plan:
    """What a job will do: ``targets`` in order, ``skipped`` with reasons.

    ``notes`` are operator-facing remarks printed with the dry-run (e.g.
    "standalone load balancers have a short outage").
    """

    targets: list
    skipped: list = dataclasses.field(default_factory=list)
    notes: list = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True)
class Workflow:
    """A runbook's declaration (see the module docstring)."""

    name: str
    description: str
    params: tuple
    factory: str
    plan: typing.Callable
    #: ``serial`` or ``parallel`` TaskFlow engine.
    engine: str = 'serial'
    #: Whether the workflow talks to the cloud (needs ``--os-cloud``).
    needs_cloud: bool = True
    #: Extra cross-parameter validation: ``check(params)`` raises
    #: InvalidParameter.
    check: typing.Callable | None = None
    #: Read-only checks against the cloud before anything is posted:
    #: ``preflight(context, params, dry_run)`` raises a UserError (e.g.
    #: an unknown compute host, or a real run of a guarded runbook that
    #: lacks its confirmation).  ``submit`` runs it with a
    #: :class:`~octavia_workflows.engine.context.PlanContext`, for a dry
    #: run as well (``dry_run`` True).
    preflight: typing.Callable | None = None
    #: Factories of earlier releases, oldest first, kept for the jobs
    #: they built (see the module docstring).
    earlier_factories: tuple = ()
    #: ``lanes(params)``: targets the flow may run side by side.
    lanes: typing.Callable = lambda params: 1
    #: ``run_state(context)``: per-job state shared by the tasks of one
    #: run (``context.run``); None: the tasks share nothing.
    run_state: typing.Callable | None = None

    @property
    def factories(self):
        """Every factory this workflow has had, oldest first."""
        return tuple(self.earlier_factories) + (self.factory,)

    def validate(self, raw):
        """Parse ``{name: text}`` into typed parameters with defaults.

        :raises InvalidParameter: unknown name, bad value, missing
            required parameter (the message names the parameter).
        """
        known = {p.name: p for p in self.params}
        for name in raw:
            if name not in known:
                hint = difflib.get_close_matches(name, list(known), n=1)
                more = f'; did you mean {hint[0]}?' if hint else ''
                valid = ', '.join(sorted(known)) or 'none'
                raise exceptions.InvalidParameter(
                    f'unknown parameter {name!r} for workflow '
                    f'{self.name}{more} (valid: {valid})')
        params = {}
        for param in self.params:
            if param.name in raw:
                params[param.name] = param.parse(raw[param.name])
            elif param.required:
                raise exceptions.InvalidParameter(
                    f'workflow {self.name} needs parameter {param.name} '
                    f'({param.help})')
            else:
                params[param.name] = param.default
        if self.check is not None:
            self.check(params)
        return params

    def load_factory(self, name=None):
        """The factory function called ``name`` (default: the current
        one).

        :raises UnknownWorkflow: ``name`` is not one of
            :attr:`factories` (a job built by a newer release).
        """
        name = name or self.factory
        if name not in self.factories:
            raise exceptions.UnknownWorkflow(
                f'workflow {self.name}: this release does not have the '
                f'flow factory {name} that built the job (a newer release '
                f'started it; run it on an upgraded conductor)')
        module_name, _, attr = name.partition(':')
        module = __import__(module_name, fromlist=[attr])
        return getattr(module, attr)


def parse_assignments(pairs):
    """``['k=v', ...]`` -> ``{'k': 'v'}``; InvalidParameter if malformed."""
    result = {}
    for pair in pairs or []:
        key, sep, value = pair.partition('=')
        key = key.strip()
        if not sep or not key:
            raise exceptions.InvalidParameter(
                f'malformed --param {pair!r}: expected KEY=VALUE')
        if key in result:
            raise exceptions.InvalidParameter(
                f'parameter {key} given more than once')
        result[key] = value
    return result


def _uuid(name, text):
    try:
        return str(uuid.UUID(text))
    except ValueError:
        raise exceptions.InvalidParameter(
            f'parameter {name}: {text!r} is not a UUID') from None


def flow_names(package):
    """The module ``__getattr__`` (PEP 562) of the runbook package
    ``package``: a name its declaration does not define (a flow factory,
    a step) is looked up in ``<package>.flow``, imported on first use
    (see the module docstring).  Dunder names are never forwarded, so
    tools probing the package do not import the flow.

    :raises AttributeError: neither module has the name.
    """
    def __getattr__(name):
        if name.startswith('__'):
            raise AttributeError(
                f'module {package!r} has no attribute {name!r}')
        flow = importlib.import_module(f'{package}.flow')
        try:
            return getattr(flow, name)
        except AttributeError:
            raise AttributeError(
                f'module {package!r} has no attribute {name!r}') from None

    return __getattr__


def names():
    """Installed workflow names, without importing them."""
    from stevedore import named

    manager = named.NamedExtensionManager(
        ENTRY_POINT, names=(), on_missing_entrypoints_callback=None)
    return sorted(set(manager.entry_points_names()))


def get(name):
    """Load the workflow called ``name`` (through stevedore).

    :raises UnknownWorkflow: not installed (suggests the closest name).
    """
    from stevedore import driver

    known = names()
    if name not in known:
        hint = difflib.get_close_matches(name, known, n=1)
        more = f'; did you mean {hint[0]}?' if hint else ''
        raise exceptions.UnknownWorkflow(
            f'unknown workflow {name!r}{more} (see "octavia-workflow '
            f'flows")')
    return driver.DriverManager(ENTRY_POINT, name).driver
