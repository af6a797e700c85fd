"""Redis jobboard driver (standalone, TLS, or Sentinel with fallbacks).

Claims are made with an expiry of ``jobboard_expiration_time`` seconds
and renewed by a Lua script that extends the TTL only while the claim's
owner is still the caller (TaskFlow's ``extend_expiry`` would extend
anyone's claim).  The redis client is built here, so the board never
uses TaskFlow's defaults for timeouts or RESP3 probing.
"""

import time

import redis
from redis import backoff as redis_backoff
from redis import exceptions as redis_exc
from redis import maint_notifications
from redis import retry as redis_retry
from redis import sentinel as redis_sentinel
from taskflow import exceptions as tf_exc
from taskflow.jobs.backends import impl_redis as tf_redis

from octavia_workflows import exceptions
from octavia_workflows.engine.jobboard import base
from octavia_workflows.engine.jobboard.backends import fleet_redis

# KEYS[1] = owner key; ARGV[1] = owner; ARGV[2] = TTL in ms.
_RENEW_SCRIPT = """
if redis.call("get", KEYS[1]) == ARGV[1] then
    return redis.call("pexpire", KEYS[1], ARGV[2])
end
return 0
"""

_SSL_KEYS = ('ssl_keyfile', 'ssl_certfile', 'ssl_ca_certs', 'ssl_cert_reqs')


def _ssl_kwargs(options):
    options = dict(options or {})
    enabled = str(options.get('ssl', False)).lower() in ('1', 'true', 'yes')
    if not enabled:
        return {}
    kwargs = {'ssl': True}
    for key in _SSL_KEYS:
        value = options.get(key)
        if value not in (None, '', 'None'):
            kwargs[key] = value
    return kwargs


class RedisDriver(fleet_redis.RedisFleet, base.JobBoardDriver):
    """Jobboard on Redis (``redis_taskflow_driver``)."""

    capabilities = frozenset(
        [base.CLAIM_EXPIRY, base.POSTING_WAKEUP, base.FLEET])
    backend_errors = (redis_exc.RedisError,)

    def __init__(self, conf, name='octavia-workflows'):
        super().__init__(conf, name)
        self.client = None
        self._renew = None
        self._pubsub = None

    @property
    def _channel(self):
        """Where a posting is announced (conductors listen while idle)."""
        return f'{self.conf.task_flow.jobboard_backend_namespace}.posted'

    def post(self, job_id, workflow):
        board_uuid = super().post(job_id, workflow)
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

    def describe(self):
        tf = self.conf.task_flow
        hosts = ','.join(tf.jobboard_backend_hosts)
        where = (f'sentinel {tf.jobboard_redis_sentinel}@{hosts}'
                 if tf.jobboard_redis_sentinel else f'{hosts}')
        return (f'redis://{where}:{tf.jobboard_backend_port}'
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
        kwargs.update(_ssl_kwargs(tf.jobboard_redis_backend_ssl_options))
        hosts = tf.jobboard_backend_hosts or ['127.0.0.1']
        if tf.jobboard_redis_sentinel:
            sentinel_kwargs = dict(
                username=tf.jobboard_redis_sentinel_username,
                password=tf.jobboard_redis_sentinel_password,
                socket_timeout=timeout,
                socket_connect_timeout=timeout)
            sentinel_kwargs.update(
                _ssl_kwargs(tf.jobboard_redis_sentinel_ssl_options))
            sentinels = [(h, tf.jobboard_backend_port) for h in hosts]
            watcher = redis_sentinel.Sentinel(
                sentinels, sentinel_kwargs=sentinel_kwargs, **kwargs)
            return watcher.master_for(tf.jobboard_redis_sentinel)
        return redis.Redis(host=hosts[0], port=tf.jobboard_backend_port,
                           **kwargs)

    def connect(self):
        tf = self.conf.task_flow
        try:
            self.client = self._make_client()
            self.client.ping()
            self._renew = self.client.register_script(_RENEW_SCRIPT)
        except redis_exc.AuthenticationError as exc:
            raise exceptions.BackendUnavailable(
                f'jobboard {self.describe()}: authentication failed') from exc
        except (redis_exc.RedisError, OSError) as exc:
            raise exceptions.BackendUnavailable(
                f'jobboard {self.describe()} is unreachable: '
                f'{base._first_line(exc)}') from exc
        self.board = tf_redis.RedisJobBoard(
            self.name, {'namespace': tf.jobboard_backend_namespace},
            client=self.client)
        with self.translate('connecting'):
            self.board.connect()

    def close(self):
        self._close_pubsub()
        super().close()
        if self.client is not None:
            self.client.close()

    def claim(self, job, owner):
        with self.translate('claiming a job'):
            try:
                self.board.claim(job, owner, expiry=self.expiry)
            except (tf_exc.UnclaimableJob, tf_exc.NotFound):
                return False
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
