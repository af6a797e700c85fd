"""A read-only look at Octavia's own jobboard (amphorav2).

Where Octavia runs its worker with ``[task_flow] jobboard_enabled``,
every flow it runs is a TaskFlow job on a Redis or ZooKeeper board;
Octavia's controller worker posts it with the flow's store as the job's
details (``{'store': {'loadbalancer_id': ..., ...}}``,
``octavia.common.base_taskflow.TaskFlowServiceController.run_poster``).
A job that is there -- claimed by a conductor, or unclaimed and about
to be taken over after its conductor died -- means Octavia is still
working on that load balancer: ``repair-stuck`` must leave it alone.

:func:`busy_load_balancers` reads the board through TaskFlow's own
board classes, configured the way Octavia's jobboard drivers configure
them (``octavia.controller.worker.v2.taskflow_jobboard_driver``), and
never claims, posts or changes anything.  ``settings`` are the values of
the ``[octavia_jobboard]`` group (Octavia's ``[task_flow]`` names) as a
plain mapping; passwords in them never reach a message.

Failures: a board that cannot be reached or read raises
:class:`~octavia_workflows.exceptions.CloudUnreachable` (transient: the
step asks again later; a dry run exits 2), with a one-line reason that
names the board without credentials.
"""

import contextlib

from oslo_utils import strutils
from taskflow.jobs import backends

from octavia_workflows import exceptions

#: Keys of a job's store that name the load balancer it is about.
LB_KEYS = ('loadbalancer_id', 'load_balancer_id')
REDIS = 'redis_taskflow_driver'
ZOOKEEPER = 'zookeeper_taskflow_driver'


def describe(settings):
    """The board, for messages (no credentials)."""
    hosts = ','.join(settings.get('jobboard_backend_hosts') or [])
    kind = ('zookeeper' if settings.get('jobboard_backend_driver')
            == ZOOKEEPER else 'redis')
    return (f'{kind}://{hosts}:{settings.get("jobboard_backend_port")}/'
            f'{settings.get("jobboard_backend_namespace")}')


def _clean(options):
    return {k: v for k, v in dict(options or {}).items()
            if v not in (None, '', 'None')}


def board_conf(settings):
    """TaskFlow's board configuration, as Octavia builds it."""
    namespace = settings['jobboard_backend_namespace']
    hosts = list(settings.get('jobboard_backend_hosts') or ['127.0.0.1'])
    port = settings.get('jobboard_backend_port')
    if settings.get('jobboard_backend_driver') == ZOOKEEPER:
        conf = {'board': 'zookeeper', 'path': '/' + namespace,
                'hosts': ','.join(h if ':' in h else f'{h}:{port}'
                                  for h in hosts)}
        ssl = _clean(settings.get('jobboard_zookeeper_ssl_options'))
        if strutils.bool_from_string(ssl.pop('use_ssl', False)):
            conf['use_ssl'] = True
            conf.update(ssl)
        return conf
    conf = {'board': 'redis', 'host': hosts[0], 'port': port,
            'db': settings.get('jobboard_redis_backend_db') or 0,
            'namespace': namespace,
            'sentinel': settings.get('jobboard_redis_sentinel'),
            'sentinel_fallbacks': [f'{h}:{port}' for h in hosts[1:]],
            'socket_timeout': 10.0, 'socket_connect_timeout': 10.0}
    for key in ('username', 'password'):
        value = settings.get(f'jobboard_backend_{key}')
        if value is not None:
            conf[key] = value
    conf.update(_clean(settings.get('jobboard_redis_backend_ssl_options')))
    sentinel = _clean(settings.get('jobboard_redis_sentinel_ssl_options'))
    for key in ('username', 'password'):
        value = settings.get(f'jobboard_redis_sentinel_{key}')
        if value is not None:
            sentinel[key] = value
    conf['sentinel_kwargs'] = sentinel
    return conf


def load_balancers_of(details):
    """The load balancer ids a job's details name (anywhere in its
    store: the flow's own ``loadbalancer_id``, a load balancer's or an
    amphora's dict)."""
    found = set()

    def walk(value):
        if isinstance(value, dict):
            for key, item in value.items():
                if key in LB_KEYS and isinstance(item, str) and item:
                    found.add(item)
                else:
                    walk(item)
        elif isinstance(value, (list, tuple)):
            for item in value:
                walk(item)

    walk((details or {}).get('store') if isinstance(details, dict)
         else None)
    return found


def busy_load_balancers(settings):
    """``{load balancer id: why}`` for every load balancer a job on
    Octavia's board is about (``why``: "claimed by <owner>" or "waiting
    on the board, unclaimed"); ``{}`` when Octavia runs no jobboard
    (``jobboard_enabled`` false).

    :raises CloudUnreachable: the board cannot be read.
    """
    if not settings or not settings.get('jobboard_enabled'):
        return {}
    where = describe(settings)
    conf = board_conf(settings)
    busy = {}
    try:
        board = backends.fetch(settings['jobboard_backend_namespace'], conf)
        with contextlib.closing(board):
            board.connect()
            for job in board.iterjobs(ensure_fresh=True):
                lbs = load_balancers_of(job.details)
                if not lbs:
                    continue
                try:
                    owner = board.find_owner(job)
                except Exception:       # gone meanwhile, or unowned
                    owner = None
                why = (f'Octavia job {job.name} is claimed by {owner}'
                       if owner else f'Octavia job {job.name} is waiting '
                       f'on its jobboard (unclaimed)')
                for lb_id in lbs:
                    busy.setdefault(lb_id, why)
    except exceptions.OctaviaWorkflowsError:
        raise
    except Exception as exc:
        text = str(exc).strip().splitlines()
        raise exceptions.CloudUnreachable(
            f'Octavia\'s jobboard {where}: cannot list its jobs: '
            f'{text[0][:300] if text else type(exc).__name__}') from exc
    return busy
