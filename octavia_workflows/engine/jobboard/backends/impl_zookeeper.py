"""ZooKeeper jobboard driver (TLS and digest auth).

With digest auth configured (``jobboard_backend_username`` /
``_password``) every node the board creates -- the namespace, each
job, each claim -- carries an ACL for that identity alone, so an
anonymous client can neither read a job nor delete it; a namespace
left with the open ACL by an earlier release is restricted on connect.

A claim is an ephemeral znode: it lives exactly as long as the claiming
client's session.  The session timeout is ``jobboard_expiration_time``
(the server clamps it to 2x..20x its tickTime), so a dead conductor's
job is free again after that long.  Ownership also requires our own
session to be connected: while it is suspended or lost, :meth:`owns`
cannot confirm the claim, so the fencing check blocks every change until
the session is back (and the claim still ours) or would have expired,
which fences a partitioned conductor.  The client reconnects for as long
as it takes, so a restarted ZooKeeper never leaves a conductor behind.

An ensemble is several ``jobboard_backend_hosts`` (``host`` or
``host:port``); the client moves to another member when its server dies,
and the session (and so every claim) survives if a quorum answers within
the session timeout.  TLS (``jobboard_zookeeper_ssl_options``) goes to
the servers' ``secureClientPort``.

Failures at connect are one line (``BackendUnavailable``, exit 2 from the
CLI): a TLS file that does not exist is reported before connecting; a
TLS handshake refused by every host (wrong CA, no or untrusted client
certificate, a TLS client on a plain port) is reported at once with the
handshake's reason instead of retrying until the timeout; a digest
identity the namespace's ACL does not admit (wrong user name or
password) is reported as not authorised.
"""

import contextlib
import logging
import os
import threading
import time

from kazoo import client as kazoo_client
from kazoo import exceptions as kazoo_exc
from kazoo import handlers
from kazoo import security as kazoo_security
from kazoo.protocol import states as kazoo_states
from taskflow import exceptions as tf_exc
from taskflow.jobs.backends import impl_zookeeper as tf_zk

from octavia_workflows import exceptions
from octavia_workflows.engine.jobboard import base
from octavia_workflows.engine.jobboard.backends import fleet_zookeeper

LOG = logging.getLogger(__name__)


def _as_bool(value):
    return str(value).lower() in ('1', 'true', 'yes', 'on')


def _caused_by(exc, kind):
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, kind):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


class _ConnectionLog(logging.LoggerAdapter):
    """kazoo's logger for one client: remembers why connection attempts
    failed (kazoo only logs it, then retries).  Until the first connection
    (``quiet``) its warnings go to DEBUG: connect() reports the failure in
    one line; afterwards they are passed on as they are."""

    def __init__(self, logger):
        super().__init__(logger, {})
        self.last_error = None
        self.tls_failures = 0
        self.quiet = True

    def log(self, level, msg, *args, **kwargs):
        if level >= logging.WARNING and isinstance(msg, str):
            if msg.startswith('Connection dropped'):
                try:
                    text = msg % args if args else msg
                except (TypeError, ValueError):
                    text = msg
                self.last_error = text.split(': ', 1)[-1]
                if '[SSL' in text:
                    self.tls_failures += 1
            if self.quiet:
                level = logging.DEBUG
        super().log(level, msg, *args, **kwargs)


class ZookeeperDriver(fleet_zookeeper.ZookeeperFleet,
                      base.JobBoardDriver):
    """Jobboard on ZooKeeper (``zookeeper_taskflow_driver``)."""

    capabilities = frozenset(
        [base.SESSION_CLAIMS, base.POSTING_WAKEUP, base.FLEET])
    backend_errors = (kazoo_exc.KazooException,)

    def __init__(self, conf, name='octavia-workflows'):
        super().__init__(conf, name)
        self.client = None
        self._session_ok = threading.Event()
        self._changed = None
        self._log = _ConnectionLog(logging.getLogger('kazoo.client'))

    def describe(self):
        tf = self.conf.task_flow
        return (f'zookeeper://{self._hosts()}/'
                f'{tf.jobboard_backend_namespace}')

    def _hosts(self):
        tf = self.conf.task_flow
        hosts = []
        for host in tf.jobboard_backend_hosts or ['127.0.0.1']:
            hosts.append(host if ':' in host
                         else f'{host}:{tf.jobboard_backend_port}')
        return ','.join(hosts)

    def _ssl_kwargs(self):
        tf = self.conf.task_flow
        ssl = dict(tf.jobboard_zookeeper_ssl_options or {})
        kwargs = {}
        if not _as_bool(ssl.get('use_ssl', False)):
            return kwargs
        kwargs['use_ssl'] = True
        kwargs['verify_certs'] = _as_bool(ssl.get('verify_certs', True))
        for key in ('keyfile', 'keyfile_password', 'certfile', 'ca'):
            if ssl.get(key) not in (None, '', 'None'):
                kwargs[key] = ssl[key]
        for key in ('keyfile', 'certfile', 'ca'):
            if key in kwargs and not os.path.isfile(kwargs[key]):
                raise exceptions.ConfigError(
                    f'[task_flow] jobboard_zookeeper_ssl_options {key}: '
                    f'{kwargs[key]} is not a readable file')
        return kwargs

    def _make_client(self):
        tf = self.conf.task_flow
        kwargs = self._ssl_kwargs()
        auth = None
        acl = self._acl()
        if acl:
            auth = [('digest', f'{tf.jobboard_backend_username or ""}:'
                               f'{tf.jobboard_backend_password or ""}')]
        return kazoo_client.KazooClient(
            hosts=self._hosts(), timeout=float(self.expiry),
            auth_data=auth, default_acl=acl,
            handler=handlers.threading.SequentialThreadingHandler(),
            logger=self._log,
            # Reconnect for as long as it takes (a restarted ZooKeeper must
            # not leave a conductor disconnected for good; a bounded retry
            # closes the client for ever).  Commands still fail fast, and
            # start() is bounded by its own timeout.
            connection_retry={'max_tries': -1, 'delay': 0.2, 'max_delay': 2},
            command_retry={'max_tries': 3, 'delay': 0.2, 'max_delay': 2},
            **kwargs)

    @contextlib.contextmanager
    def translate(self, what):
        """As the base's, and a NoAuth says what to check."""
        try:
            with super().translate(what):
                yield
        except exceptions.BackendUnavailable as exc:
            if not _caused_by(exc, kazoo_exc.NoAuthError):
                raise
            raise exceptions.BackendUnavailable(
                f'jobboard {self.describe()}: {what} failed: not '
                'authorised (check jobboard_backend_username and '
                'jobboard_backend_password)') from exc

    def _acl(self):
        """With digest auth configured, every node the board creates is
        readable and writable by that identity alone (None: open ACL)."""
        tf = self.conf.task_flow
        if not (tf.jobboard_backend_username or tf.jobboard_backend_password):
            return None
        return [kazoo_security.make_digest_acl(
            tf.jobboard_backend_username or '',
            tf.jobboard_backend_password or '', all=True)]

    def _protect_root(self):
        # A namespace made before this release (or by hand) may carry the
        # open ACL, which lets anyone delete the jobs under it: take it
        # over (the open ACL grants us that), best effort.
        acl = self._acl()
        if not acl:
            return
        try:
            current, _ = self.client.get_acls(self.board.path)
            if list(current) != acl:
                self.client.set_acls(self.board.path, acl)
        except kazoo_exc.NoAuthError:
            raise                       # not ours: connect() says so
        except kazoo_exc.KazooException as exc:
            LOG.warning('jobboard %s: cannot restrict the ACL of %s: %s',
                        self.describe(), self.board.path, exc)

    def _listener(self, state):
        if state == kazoo_states.KazooState.CONNECTED:
            self._session_ok.set()
        else:
            self._session_ok.clear()

    def _start(self):
        """Start the client: a quorum within the timeout, or one line
        saying why not (every host refusing TLS fails at once)."""
        hosts = len(self._hosts().split(','))
        started = self.client.start_async()
        deadline = time.monotonic() + max(5.0, float(self.expiry))
        while not started.wait(0.05):
            if self._log.tls_failures >= hosts:
                return (f'TLS handshake failed: {self._log.last_error} '
                        '(check jobboard_zookeeper_ssl_options)')
            if time.monotonic() >= deadline:
                break
        if self.client.connected:
            self._log.quiet = False
            return None
        return self._log.last_error or 'timed out'

    def connect(self):
        tf = self.conf.task_flow
        self.client = self._make_client()
        self.client.add_listener(self._listener)
        try:
            failure = self._start()
        except (kazoo_exc.KazooException, OSError) as exc:
            failure = base._first_line(exc)
        if failure:
            self.close()
            raise exceptions.BackendUnavailable(
                f'jobboard {self.describe()} is unreachable: {failure}')
        self._session_ok.set()
        self.board = tf_zk.ZookeeperJobBoard(
            self.name,
            {'path': '/' + tf.jobboard_backend_namespace.strip('/'),
             'check_compatible': False},
            client=self.client)
        # ZooKeeper accepts any digest identity: a wrong user name or
        # password shows only as NoAuth on the namespace.
        try:
            with self.translate('connecting'):
                self.board.connect()
                self._protect_root()
                self.client.get_children(self.board.path)
        except exceptions.BackendUnavailable as exc:
            self.close()
            if _caused_by(exc, kazoo_exc.NoAuthError):
                raise exceptions.BackendUnavailable(
                    f'jobboard {self.describe()}: not authorised to read '
                    f'{self.board.path} (check jobboard_backend_username '
                    'and jobboard_backend_password)') from exc
            raise

    def idle(self, timeout, stop):
        # A watch on the board's children wakes us when a job is posted
        # (also when one is claimed or completed: one look too many).
        deadline = time.monotonic() + timeout
        try:
            if self._changed is None:
                self._changed = threading.Event()
                self.client.ChildrenWatch(
                    self.board.path, lambda children: self._changed.set())
                self._changed.clear()
        except (kazoo_exc.KazooException, OSError):
            self._changed = None
        while not stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            if self._changed is None:
                stop.wait(left)
                return
            if self._changed.wait(min(left, 0.5)):
                self._changed.clear()
                return

    def close(self):
        super().close()
        if self.client is not None:
            try:
                # a stop on purpose is no "connection lost" to warn about
                self.client.state_listeners.clear()
                self.client.stop()
                self.client.close()
            except Exception:  # noqa: S110 - closing must never raise
                pass

    def claim(self, job, owner):
        with self.translate('claiming a job'):
            try:
                self.board.claim(job, owner)
            except (tf_exc.UnclaimableJob, tf_exc.NotFound):
                return False
        return True

    def renew(self, job, owner):
        # The session heartbeat keeps the ephemeral claim alive; renewing
        # is confirming that it still exists and is ours.
        return self.owns(job, owner)

    def owns(self, job, owner):
        # While the session is suspended the ephemeral claim may still be
        # ours: say "cannot confirm" (the claim's check() then waits, and
        # gives up once the session would have expired), never "yes".
        if not self._session_ok.is_set():
            raise exceptions.BackendUnavailable(
                f'jobboard {self.describe()}: session not connected')
        return self.owner(job) == owner

    def owner(self, job):
        with self.translate('reading a claim'):
            try:
                return self.board.find_owner(job)
            except (tf_exc.NotFound, kazoo_exc.NoNodeError):
                return None
