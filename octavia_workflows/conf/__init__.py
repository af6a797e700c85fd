"""Loading the configuration.

:func:`load` registers every option and parses the configuration files;
an unreadable or invalid file raises :class:`~octavia_workflows.exceptions.
ConfigError` (exit code 2 in the CLI), never a traceback.
"""

import os

from oslo_config import cfg

from octavia_workflows import exceptions
from octavia_workflows.conf import opts

PROJECT = 'octavia-workflows'


def register(conf):
    for group, group_opts in opts.list_opts():
        name = None if group == 'DEFAULT' else group
        conf.register_opts(group_opts, group=name)


def load(config_files=None, conf=None):
    """Return a parsed :class:`oslo_config.cfg.ConfigOpts`.

    :param config_files: explicit files; when empty, oslo.config's default
        search (``~/.octavia-workflows/``, ``/etc/octavia-workflows/``) is
        used and a missing file is fine.
    :raises ConfigError: a given file is missing or unreadable, or a value
        fails validation.
    """
    conf = conf if conf is not None else cfg.ConfigOpts()
    register(conf)
    files = list(config_files or [])
    for path in files:
        if not os.path.isfile(path) or not os.access(path, os.R_OK):
            raise exceptions.ConfigError(f'cannot read config file {path}')
    args = []
    for path in files:
        args += ['--config-file', path]
    try:
        conf(args, project=PROJECT, default_config_files=files or None,
             validate_default_values=True, use_env=False)
        # Touch every option once so invalid values fail here, not later.
        for group, group_opts in opts.list_opts():
            node = conf if group == 'DEFAULT' else conf[group]
            for opt in group_opts:
                getattr(node, opt.dest)
    except (cfg.Error, ValueError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise exceptions.ConfigError(f'invalid configuration: {msg}') from exc
    namespace = conf.task_flow.jobboard_backend_namespace
    if namespace == 'octavia_jobboard':
        raise exceptions.ConfigError(
            '[task_flow] jobboard_backend_namespace must not be '
            '"octavia_jobboard": Octavia\'s own conductors would claim '
            'these jobs')
    return conf


def state_path(conf):
    return os.path.abspath(os.path.expanduser(conf.state_path))


def persistence_url(conf):
    """The persistence URL: configured, or the embedded SQLite file."""
    url = conf.task_flow.persistence_connection
    if url:
        return url
    path = os.path.join(state_path(conf), 'octavia-workflows.sqlite')
    return 'sqlite:///' + path
