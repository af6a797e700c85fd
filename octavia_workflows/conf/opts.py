"""Configuration options of octavia-workflows.

The ``[task_flow]`` group reuses Octavia's option names so that an
operator's knowledge and configuration carry over; only the default
namespace differs (Octavia's own conductors would otherwise claim our
jobs).  :func:`list_opts` feeds ``oslo-config-generator``.
"""

import copy
import os

from oslo_config import cfg

_REDIS_SSL_DEFAULTS = {
    'ssl': False,
    'ssl_keyfile': None,
    'ssl_certfile': None,
    'ssl_ca_certs': None,
    'ssl_cert_reqs': 'required',
}

default_opts = [
    cfg.StrOpt(
        'state_path',
        default=os.path.join('~', '.local', 'state', 'octavia-workflows'),
        sample_default='~/.local/state/octavia-workflows',
        help='Directory for local state: the embedded SQLite persistence '
        'file lives here when [task_flow] persistence_connection is '
        'not set.',
    ),
]

task_flow_opts = [
    cfg.StrOpt(
        'persistence_connection',
        secret=True,
        help='SQLAlchemy URL of the persistence database that holds every '
        'job, its parameters and each step\'s state, e.g. '
        'mysql+pymysql://user:pass@host/octavia_persistence or '
        'postgresql+psycopg://user:pass@host/octavia_persistence; a '
        'Galera cluster without a virtual IP: mysql+pymysql://user:pass@'
        '/octavia_persistence?host=db1:3306&host=db2:3306&host=db3:3306 '
        '(the first node that answers is used). Unset: an SQLite file in '
        'state_path (single host only).',
    ),
    cfg.BoolOpt(
        'jobboard_enabled',
        default=False,
        help='Post jobs to a Redis or ZooKeeper jobboard for conductors to '
        'claim. False: "submit" runs the workflow in the foreground and '
        '"resume" continues an interrupted run.',
    ),
    cfg.StrOpt(
        'jobboard_backend_driver',
        default='redis_taskflow_driver',
        choices=[
            ('redis_taskflow_driver', 'Redis (standalone or Sentinel).'),
            ('zookeeper_taskflow_driver', 'ZooKeeper.'),
        ],
        help='Jobboard backend driver.',
    ),
    cfg.ListOpt(
        'jobboard_backend_hosts',
        default=['127.0.0.1'],
        help='Jobboard backend server host(s). An entry may carry its own '
        'port (host:port, [IPv6]:port); without one, jobboard_backend_port. '
        'With Redis Sentinel: the sentinels; the first is tried first, the '
        'others are fallbacks, and the primary is found through them. '
        'With ZooKeeper: every ensemble member.',
    ),
    cfg.PortOpt(
        'jobboard_backend_port', default=6379, help='Jobboard backend port.'
    ),
    cfg.StrOpt(
        'jobboard_backend_username', help='Jobboard backend user name.'
    ),
    cfg.StrOpt(
        'jobboard_backend_password',
        secret=True,
        help='Jobboard backend password (Redis AUTH, ZooKeeper digest).',
    ),
    cfg.StrOpt(
        'jobboard_backend_namespace',
        default='octavia_workflows',
        help='Jobboard namespace (Redis key prefix, ZooKeeper path). Must '
        'NOT be Octavia\'s own "octavia_jobboard": Octavia\'s '
        'conductors would claim these jobs.',
    ),
    cfg.IntOpt(
        'jobboard_redis_backend_db',
        default=0,
        min=0,
        help='Database index in the Redis server.',
    ),
    cfg.StrOpt(
        'jobboard_redis_sentinel',
        help='Redis Sentinel master name (the NAME of the sentinels\' '
        '"sentinel monitor NAME ..."); set it to use Sentinel. Then '
        'jobboard_backend_hosts are the sentinels, '
        'jobboard_backend_username/password are for the data nodes '
        '(their requirepass or ACL user) and '
        'jobboard_redis_sentinel_username/password for the sentinels.',
    ),
    cfg.StrOpt(
        'jobboard_redis_sentinel_username',
        help='Redis Sentinel ACL user name (unset: the default user).',
    ),
    cfg.StrOpt(
        'jobboard_redis_sentinel_password',
        secret=True,
        help='The sentinels\' own password (their requirepass), not the '
        'data nodes\'; unset when the sentinels have none.',
    ),
    cfg.DictOpt(
        'jobboard_redis_backend_ssl_options',
        default=dict(_REDIS_SSL_DEFAULTS),
        help='Redis TLS options: ssl (true: use TLS), ssl_ca_certs (the CA '
        'that signed the server certificate), ssl_certfile and ssl_keyfile '
        '(a client certificate, for a server with tls-auth-clients), '
        'ssl_cert_reqs (required, optional, none). The files must be '
        'readable when the board connects.',
    ),
    cfg.DictOpt(
        'jobboard_redis_sentinel_ssl_options',
        default=dict(_REDIS_SSL_DEFAULTS),
        help='TLS options for connections to the sentinels (same keys as '
        'jobboard_redis_backend_ssl_options; the data nodes use those).',
    ),
    cfg.DictOpt(
        'jobboard_zookeeper_ssl_options',
        default={
            'use_ssl': False,
            'keyfile': None,
            'keyfile_password': None,
            'certfile': None,
            'ca': None,
            'verify_certs': True,
        },
        help='ZooKeeper TLS options: use_ssl, keyfile, keyfile_password, '
        'certfile, ca, verify_certs.',
    ),
    cfg.IntOpt(
        'jobboard_expiration_time',
        default=30,
        min=2,
        help='Seconds a claim lives without being renewed. A running '
        'conductor renews its claims every third of this; a dead '
        'conductor\'s job is taken over after at most this long (for '
        'ZooKeeper it is the session timeout).',
    ),
    cfg.BoolOpt(
        'jobboard_save_logbook',
        default=False,
        help='Keep the TaskFlow logbook (every step\'s saved state) of a '
        'finished job. The job record and per-target report are kept '
        'either way until "purge".',
    ),
    cfg.IntOpt(
        'max_workers',
        default=5,
        min=1,
        help='Jobs one conductor runs at the same time (default of '
        '"conductor --workers").',
    ),
]

conductor_opts = [
    cfg.StrOpt(
        'name',
        help='Conductor name prefix; a unique suffix is added per process '
        'start. Default: the host name.',
    ),
    cfg.FloatOpt(
        'poll_interval',
        default=1.0,
        min=0.05,
        help='Seconds between looks at the jobboard for new jobs.',
    ),
    cfg.IntOpt(
        'max_job_attempts',
        default=3,
        min=1,
        help='Attempts in a row that make no progress before a job is '
        'given up and ends FAILED with the reason. An attempt that '
        'completes a step resets the count.',
    ),
    cfg.FloatOpt(
        'stop_timeout',
        default=60.0,
        min=0,
        help='On SIGTERM, seconds to let in-flight steps finish before the '
        'claims are released anyway.',
    ),
    cfg.PortOpt(
        'metrics_port',
        help='Serve Prometheus metrics (/metrics) and a health check '
        '(/healthz) on this port. Unset: no listener.',
    ),
    cfg.HostAddressOpt(
        'metrics_host',
        default='127.0.0.1',
        help='Address the metrics endpoint binds to. Keep it on loopback '
        'or a management network: it has no authentication.',
    ),
]

cloud_opts = [
    cfg.StrOpt(
        'name',
        help='Name of the clouds.yaml entry (openstacksdk) to use; '
        '--os-cloud overrides it, then OS_CLOUD. Only this name is '
        'ever stored with a job, never credentials.',
    ),
]

fleet_opts = [
    cfg.IntOpt(
        'max_concurrent_failovers',
        default=0,
        min=0,
        help='Most cloud-changing actions (failovers, deletes, resets) in '
        'flight at once across every job and every conductor sharing the '
        'jobboard; held on the jobboard backend. 0: unlimited. A target '
        'that finds the budget spent waits (show: "waiting for the fleet '
        'budget"); a conductor that dies gives its slots back within the '
        'claim expiry.',
    ),
    cfg.IntOpt(
        'lock_timeout',
        default=600,
        min=0,
        help='Seconds a target waits for a load balancer (or host) that '
        'another job is acting on before it is skipped with "in use by '
        'job <id>". 0: skip at once.',
    ),
    cfg.IntOpt(
        'audit_interval',
        default=300,
        min=0,
        help='Seconds between two fleet censuses a conductor exports as '
        'octavia_workflows_fleet_* gauges on its metrics endpoint (needs '
        '[conductor] metrics_port and [cloud] name). One conductor at a '
        'time takes them (a lease on the jobboard). 0: no census.',
    ),
    cfg.StrOpt(
        'image_tag',
        default='amphora',
        help='The image tag Octavia boots amphorae from (its '
        '[controller_worker] amp_image_tag): "audit" and the fleet gauges '
        'count the amphorae not on the newest active image carrying it.',
    ),
]

#: (service, unit) in the order the Upgrade Guide stops them.
COLD_UPGRADE_SERVICES = (
    ('housekeeping', 'octavia-housekeeping'),
    ('health_manager', 'octavia-health-manager'),
    ('api', 'octavia-api'),
    ('worker', 'octavia-worker'),
)


def _service_opts():
    result = []
    for service, unit in COLD_UPGRADE_SERVICES:
        for verb in ('stop', 'start'):
            result.append(cfg.StrOpt(
                f'{service}_{verb}_command',
                default=f'systemctl {verb} {unit}',
                help=f'Command that {verb}s the {unit} service on one '
                f'controller; run once per host in "controllers". '
                f'Placeholders: {{host}}, {{job_id}}, {{secret:NAME}}. It '
                f'must be safe to run twice (systemctl {verb} is): it is '
                f'run again when a conductor died while it ran. Empty: '
                f'this service is not stopped or started (reported as '
                f'skipped).'))
    return result


cold_upgrade_opts = [
    cfg.ListOpt(
        'controllers',
        default=['localhost'],
        help='Controllers whose Octavia services the cold-upgrade runbook '
        'stops and starts. With more than one, every service command '
        'must use {host} (e.g. "ssh {host} sudo systemctl stop '
        'octavia-api").',
    ),
] + _service_opts() + [
    cfg.StrOpt(
        'db_upgrade_command',
        default='octavia-db-manage --config-file /etc/octavia/octavia.conf '
        'upgrade head',
        help='Command that upgrades the Octavia database to the installed '
        'release (run once, after the approval gate). Placeholders: '
        '{job_id}, {secret:NAME}.',
    ),
    cfg.StrOpt(
        'backup_command',
        help='Command that backs up the Octavia database to {backup_file} '
        'before the upgrade, e.g. "shell: mysqldump --single-transaction '
        'octavia > {backup_file}". Unset: submit with backup=false.',
    ),
    cfg.StrOpt(
        'backup_file',
        default='/var/backups/octavia/octavia-{job_id}.sql',
        help='File name given to backup_command as {backup_file} ({job_id} '
        'is replaced); shown in the report.',
    ),
    cfg.IntOpt(
        'command_timeout',
        default=900,
        min=1,
        help='Seconds one command may run before it is killed (and its '
        'step fails).',
    ),
    cfg.DictOpt(
        'secrets',
        default={},
        secret=True,
        help='Values the commands use as {secret:NAME}, e.g. '
        '"db_password:XYZ". They are substituted only when a command '
        'runs: never logged, shown or stored (shown as ***).',
    ),
]

octavia_database_opts = [
    cfg.StrOpt(
        'connection',
        secret=True,
        help='SQLAlchemy URL of Octavia\'s own database (the one in '
        'Octavia\'s [database] connection), e.g. '
        'mysql+pymysql://octavia:pass@host/octavia. The repair-stuck '
        'runbook uses it to move a load balancer stuck in PENDING_* to '
        'ERROR by a compare-and-set on its id, status and updated_at; '
        'reconfigure-amphorae reads amphora_health (read-only) to see each '
        'amphora\'s heartbeats arrive after its configuration push. '
        'Unset: repair-stuck refuses to run, and reconfigure-amphorae '
        'unless heartbeat_timeout=0. Never stored with a job, logged or '
        'shown.',
    ),
]

#: The [task_flow] options mirrored in [octavia_jobboard] (same names, so
#: Octavia's own [task_flow] values can be copied over).
_OCTAVIA_JOBBOARD_MIRRORED = (
    'jobboard_backend_driver', 'jobboard_backend_hosts',
    'jobboard_backend_port', 'jobboard_backend_username',
    'jobboard_backend_password', 'jobboard_redis_backend_db',
    'jobboard_redis_sentinel', 'jobboard_redis_sentinel_username',
    'jobboard_redis_sentinel_password',
    'jobboard_redis_backend_ssl_options',
    'jobboard_redis_sentinel_ssl_options',
    'jobboard_zookeeper_ssl_options',
)


def _octavia_jobboard_opts():
    by_name = {opt.name: opt for opt in task_flow_opts}
    mirrored = []
    for name in _OCTAVIA_JOBBOARD_MIRRORED:
        opt = copy.deepcopy(by_name[name])
        opt.help = f'Octavia\'s jobboard: as its [task_flow] {name}.'
        mirrored.append(opt)
    return [
        cfg.BoolOpt(
            'jobboard_enabled',
            default=False,
            help='Octavia runs its own jobboard (amphorav2 with its '
            '[task_flow] jobboard_enabled = True). Then repair-stuck reads '
            'it (read-only) and leaves alone every load balancer that one '
            'of Octavia\'s jobs is about: Octavia is still working on it '
            'or will take it over. Copy the values of Octavia\'s own '
            '[task_flow] options into this group.',
        ),
    ] + mirrored + [
        cfg.StrOpt(
            'jobboard_backend_namespace',
            default='octavia_jobboard',
            help='Octavia\'s jobboard namespace (its [task_flow] '
            'jobboard_backend_namespace; Octavia\'s default).',
        ),
    ]


octavia_jobboard_opts = _octavia_jobboard_opts()


def list_opts():
    """Option groups for oslo-config-generator."""
    return [
        ('DEFAULT', default_opts),
        ('task_flow', task_flow_opts),
        ('conductor', conductor_opts),
        ('cloud', cloud_opts),
        ('fleet', fleet_opts),
        ('cold_upgrade', cold_upgrade_opts),
        ('octavia_database', octavia_database_opts),
        ('octavia_jobboard', octavia_jobboard_opts),
    ]
