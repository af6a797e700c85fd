"""Redis jobboard driver (standalone, TLS, or Sentinel with fallbacks).

Claims are made with an expiry of ``jobboard_expiration_time`` seconds
and renewed by a Lua script that extends the TTL only while the claim's
owner is still the caller (TaskFlow's ``extend_expiry`` would extend
anyone's claim).  The redis client is built here, so the board never
uses TaskFlow's defaults for timeouts or RESP3 probing.

``jobboard_backend_hosts`` entries may carry their own port
(``host:port``, ``[v6]:port``); without one, ``jobboard_backend_port``.
With Sentinel they are the sentinels: the primary is looked up through
them on every (re)connect, so after a failover the next command reaches
the promoted replica.  Redis replicates asynchronously: a post or a claim
that the primary acknowledged just before it died may be missing on the
replica that replaces it.  With Sentinel the driver therefore waits (up
to half a second, ``WAIT 1``) for one replica to acknowledge each post
and claim, and logs a warning when none does; a claim lost anyway is
noticed by its owner at the next renewal and the job is run again
(see doc/production-redis.md).

A posting is written here, in the format of TaskFlow's ``RedisJobBoard``
(a msgpack dict in the ``<namespace>:listings`` hash under a new uuid,
numbered from ``<namespace>:sequence``), so that ``submit``, which only
posts, never imports TaskFlow's board (a twentieth of a CLI command's
time); claiming, listing and completing go through TaskFlow's board,
built on first use.  tests/functional/test_jobboards.py checks
that TaskFlow's board lists and claims what this module posts.

Failures: connecting raises
:class:`~octavia_workflows.exceptions.BackendUnavailable` with one line
that says which side refused (the sentinels or the data node, wrong
password, unknown master name, TLS verification) and never a secret;
a TLS file that does not exist or a malformed ``host:port`` is a
:class:`~octavia_workflows.exceptions.ConfigError`.  Later errors are
translated by :meth:`JobBoardDriver.translate`.
"""

import datetime
import logging
import os
import re
import threading
import time
import uuid

from oslo_serialization import msgpackutils
import redis
from redis import backoff as redis_backoff
from redis import exceptions as redis_exc
from redis import maint_notifications
from redis import retry as redis_retry
from redis import sentinel as redis_sentinel
from taskflow import exceptions as tf_exc

from octavia_workflows import exceptions
from octavia_workflows.engine.jobboard import base
from octavia_workflows.engine.jobboard.backends import fleet_redis

LOG = logging.getLogger(__name__)

#: How long a post or claim waits for a replica's acknowledgement (ms).
REPLICA_WAIT_MS = 500

# KEYS[1] = owner key; ARGV[1] = owner; ARGV[2] = TTL in ms.
_RENEW_SCRIPT = """
if redis.call("get", KEYS[1]) == ARGV[1] then
    return redis.call("pexpire", KEYS[1], ARGV[2])
end
return 0
"""

#: redis-py's prefix of a connection error (the address is said once).
_CONNECTING = re.compile(r'^Error -?\d+ connecting to \S+?\. ')

_SSL_KEYS = ('ssl_keyfile', 'ssl_certfile', 'ssl_ca_certs', 'ssl_cert_reqs')
_SSL_FILES = ('ssl_keyfile', 'ssl_certfile', 'ssl_ca_certs')


def _ssl_kwargs(options, option_name):
    options = dict(options or {})
    if not _ssl_enabled(options):
        return {}
    kwargs = {'ssl': True}
    for key in _SSL_KEYS:
        value = options.get(key)
        if value not in (None, '', 'None'):
            kwargs[key] = value
    for key in _SSL_FILES:
        path = kwargs.get(key)
        if path and not os.access(path, os.R_OK):
            raise exceptions.ConfigError(
                f'[task_flow] {option_name} {key}: cannot read {path}')
    return kwargs


def _ssl_enabled(options):
    return str(dict(options or {}).get('ssl', False)).lower() in (
        '1', 'true', 'yes')


def endpoint(entry, default_port):
    """``(host, port)`` of a ``jobboard_backend_hosts`` entry."""
    entry = entry.strip()
    if entry.startswith('['):
        host, _, rest = entry[1:].partition(']')
        port = rest[1:] if rest.startswith(':') else rest or None
    elif entry.count(':') == 1:
        host, port = entry.split(':')
    else:
        host, port = entry, None
    if not host or (port is not None and not (
            port.isdigit() and 0 < int(port) < 65536)):
        raise exceptions.ConfigError(
            f'[task_flow] jobboard_backend_hosts: bad entry {entry!r} '
            '(host, host:port or [IPv6]:port)')
    return host, default_port if port is None else int(port)


def _where(host, port):
    return f'[{host}]:{port}' if ':' in host else f'{host}:{port}'


class RedisDriver(fleet_redis.RedisFleet, base.JobBoardDriver):
    """Jobboard on Redis (``redis_taskflow_driver``)."""

    capabilities = frozenset(
        [base.CLAIM_EXPIRY, base.POSTING_WAKEUP, base.FLEET])
    backend_errors = (redis_exc.RedisError,)

    def __init__(self, conf, name='octavia-workflows'):
        self._taskflow_board = None
        self._board_lock = threading.Lock()
        super().__init__(conf, name)
        self.client = None
        self._watcher = None
        self._renew = None
        self._pubsub = None

    @property
    def board(self):
        """TaskFlow's board on this driver's client, connected on first
        use (``submit`` never needs it: see the module docstring)."""
        with self._board_lock:
            if self._taskflow_board is None and self.client is not None:
                # Imported here, not with this module: it costs a CLI
                # command that only posts ~50 ms (oslo_utils.strutils
                # compiles its masking patterns on import).
                from taskflow.jobs.backends import impl_redis as tf_redis

                board = tf_redis.RedisJobBoard(
                    self.name,
                    {'namespace': self.conf.task_flow.
                     jobboard_backend_namespace},
                    client=self.client)
                with self.translate('connecting'):
                    board.connect()
                self._taskflow_board = board
            return self._taskflow_board

    @board.setter
    def board(self, value):
        with self._board_lock:
            self._taskflow_board = value

    def _key(self, piece):
        """A board key as TaskFlow's ``RedisJobBoard.join`` makes it."""
        namespace = self.conf.task_flow.jobboard_backend_namespace
        if namespace is None:
            return piece.encode('utf-8')
        return f'{namespace}:{piece}'.encode()

    @property
    def _channel(self):
        """Where a posting is announced (conductors listen while idle)."""
        return f'{self.conf.task_flow.jobboard_backend_namespace}.posted'

    def post(self, job_id, workflow):
        # What TaskFlow's RedisJobBoard.post writes (see the module
        # docstring): same keys, same fields, same encoding.
        board_uuid = str(uuid.uuid4())
        posting = {
            'uuid': board_uuid,
            'name': f'{workflow}:{job_id}',
            'priority': 'NORMAL',
            'created_on': datetime.datetime.now(
                datetime.timezone.utc).replace(tzinfo=None),
            'details': {'job_id': job_id, 'workflow': workflow},
        }
        with self.translate('posting a job'):
            posting['sequence'] = self.client.incr(self._key('sequence'))
            posted = self.client.hsetnx(
                self._key('listings'), board_uuid.encode('latin-1'),
                msgpackutils.dumps(posting))
        if not posted:
            raise exceptions.BackendUnavailable(
                f'jobboard {self.describe()}: posting job {job_id} failed: '
                f'board job {board_uuid} exists already')
        self._replicated(f'posting of job {job_id}')
        try:
            self.client.publish(self._channel, board_uuid)
        except (redis_exc.RedisError, OSError):
            pass    # only a wake-up: conductors find it at their poll
        return board_uuid

    def idle(self, timeout, stop):
        deadline = time.monotonic() + timeout
        try:
            if self._pubsub is None:
                self._pubsub = self.client.pubsub(
                    ignore_subscribe_messages=True)
                self._pubsub.subscribe(self._channel)
            while not stop.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                if self._pubsub.get_message(timeout=min(left, 0.5)):
                    return
        except (redis_exc.RedisError, OSError):
            self._close_pubsub()
            stop.wait(max(0.0, min(1.0, deadline - time.monotonic())))

    def _close_pubsub(self):
        if self._pubsub is not None:
            try:
                self._pubsub.close()
            except (redis_exc.RedisError, OSError):
                pass
            self._pubsub = None

    def _endpoints(self):
        tf = self.conf.task_flow
        return [endpoint(h, tf.jobboard_backend_port)
                for h in (tf.jobboard_backend_hosts or ['127.0.0.1'])]

    def describe(self):
        tf = self.conf.task_flow
        try:
            where = ','.join(_where(*e) for e in self._endpoints())
        except exceptions.ConfigError:
            where = ','.join(tf.jobboard_backend_hosts)
        tls = _ssl_enabled(tf.jobboard_redis_backend_ssl_options)
        if tf.jobboard_redis_sentinel:
            return (f'redis+sentinel://{tf.jobboard_redis_sentinel}@{where}'
                    f'/{tf.jobboard_redis_backend_db}'
                    f'{" (tls)" if tls else ""}')
        return (f'{"rediss" if tls else "redis"}://{where}'
                f'/{tf.jobboard_redis_backend_db}')

    def _make_client(self):
        tf = self.conf.task_flow
        timeout = max(2.0, tf.jobboard_expiration_time / 3.0)
        kwargs = dict(
            username=tf.jobboard_backend_username,
            password=tf.jobboard_backend_password,
            db=tf.jobboard_redis_backend_db,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            health_check_interval=30,
            # One immediate retry (a pooled connection that died with a
            # Redis restart), no backoff: redis-py's default of three
            # retries with backoff hides an unreachable Redis for ten
            # seconds and more, longer than a claim lives.
            retry=redis_retry.Retry(redis_backoff.NoBackoff(), 1),
            maint_notifications_config=(
                maint_notifications.MaintNotificationsConfig(enabled=False)),
        )
        kwargs.update(_ssl_kwargs(tf.jobboard_redis_backend_ssl_options,
                                  'jobboard_redis_backend_ssl_options'))
        endpoints = self._endpoints()
        if tf.jobboard_redis_sentinel:
            sentinel_kwargs = dict(
                username=tf.jobboard_redis_sentinel_username,
                password=tf.jobboard_redis_sentinel_password,
                socket_timeout=timeout,
                socket_connect_timeout=timeout,
                retry=redis_retry.Retry(redis_backoff.NoBackoff(), 1))
            sentinel_kwargs.update(
                _ssl_kwargs(tf.jobboard_redis_sentinel_ssl_options,
                            'jobboard_redis_sentinel_ssl_options'))
            self._watcher = redis_sentinel.Sentinel(
                endpoints, sentinel_kwargs=sentinel_kwargs, **kwargs)
            return self._watcher.master_for(tf.jobboard_redis_sentinel)
        host, port = endpoints[0]
        return redis.Redis(host=host, port=port, **kwargs)

    def _sentinel_trouble(self):
        """One line: what each sentinel says about our master name."""
        name = self.conf.task_flow.jobboard_redis_sentinel
        reasons = {}
        for sentinel in self._watcher.sentinels:
            kw = sentinel.connection_pool.connection_kwargs
            where = _where(kw.get('host'), kw.get('port'))
            try:
                state = sentinel.sentinel_masters().get(name)
            except redis_exc.AuthenticationError:
                why = ('authentication failed (jobboard_redis_sentinel_'
                       'username/jobboard_redis_sentinel_password)')
            except (redis_exc.RedisError, OSError) as exc:
                # "Error 111 connecting to HOST:PORT. Connection refused."
                why = _CONNECTING.sub('', base._first_line(exc))
            else:
                if state is None:
                    why = f'no master named {name!r}'
                else:
                    why = f'master {name!r} is {state.get("flags", "down")}'
            reasons.setdefault(why, []).append(where)
        return '; '.join(
            f'sentinel{"s" if len(where) > 1 else ""} '
            f'{", ".join(where)}: {why}' for why, where in reasons.items())

    def connect(self):
        self._watcher = None
        try:
            self.client = self._make_client()
            self.client.ping()
            self._renew = self.client.register_script(_RENEW_SCRIPT)
        except redis_sentinel.MasterNotFoundError as exc:
            raise exceptions.BackendUnavailable(
                f'jobboard {self.describe()}: no primary: '
                f'{self._sentinel_trouble()}') from exc
        except redis_exc.AuthenticationError as exc:
            raise exceptions.BackendUnavailable(
                f'jobboard {self.describe()}: authentication failed '
                '(jobboard_backend_username/jobboard_backend_password)'
            ) from exc
        except (redis_exc.RedisError, OSError) as exc:
            reason = base._first_line(exc)
            if '[SSL' in reason:
                reason += ' (check jobboard_redis_backend_ssl_options)'
            raise exceptions.BackendUnavailable(
                f'jobboard {self.describe()} is unreachable: {reason}'
            ) from exc
        self.board = None       # TaskFlow's, built on first use

    def _replicated(self, what):
        """With Sentinel: wait for a replica to have ``what`` (see the
        module docstring); never raises."""
        if self._watcher is None:
            return
        try:
            acked = self.client.wait(1, REPLICA_WAIT_MS)
        except (redis_exc.RedisError, OSError) as exc:
            acked, why = 0, base._first_line(exc)
        else:
            why = f'no replica acknowledged it within {REPLICA_WAIT_MS} ms'
        if not acked:
            LOG.warning('jobboard %s: %s: %s; a failover now could lose '
                        'it', self.describe(), what, why)

    def close(self):
        self._close_pubsub()
        with self._board_lock:
            board, self._taskflow_board = self._taskflow_board, None
        if board is not None:
            try:
                board.close()
            except Exception:       # closing never raises (base.close)
                LOG.debug('closing the TaskFlow board failed',
                          exc_info=True)
        if self.client is not None:
            self.client.close()

    def claim(self, job, owner):
        with self.translate('claiming a job'):
            try:
                self.board.claim(job, owner, expiry=self.expiry)
            except (tf_exc.UnclaimableJob, tf_exc.NotFound):
                return False
        self._replicated(f'claim of job {(job.details or {}).get("job_id")}')
        return True

    def owner(self, job):
        # TaskFlow's find_owner() raises TypeError once the owner key has
        # expired; an expired claim simply has no owner.
        with self.translate('reading a claim'):
            raw = self.client.get(job.owner_key)
        return raw.decode('utf-8') if raw is not None else None

    def renew(self, job, owner):
        with self.translate('renewing a claim'):
            ttl_ms = int(self.expiry * 1000)
            return bool(self._renew(keys=[job.owner_key],
                                    args=[owner.encode('utf-8'), ttl_ms]))
