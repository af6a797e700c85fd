"""Fleet coordination on ZooKeeper: ephemeral nodes of the session.

Nodes, beside the board's own path ``/NS``, under ``/NS.fleet``:

``budget/<member>``
    One ephemeral node per slot holder (``<job id>/<target>``, quoted).
``locks/<key>``
    Ephemeral, its data the job id holding the lock.
``released/<key>``
    Persistent, its data when the lock was last released (epoch ms).
``leases/<name>``
    Ephemeral, its data the lease holder.

Everything a conductor holds vanishes with its session, that is within
the claim expiry (the session timeout), exactly like its claims: there
is nothing to renew.  A ZooKeeper server restarted on its data restores
the sessions, each with a fresh timeout, so the slots of a conductor
that reconnects in time survive the restart however long it took, and
a dead conductor's go one session timeout after it.

Taking a slot creates the node and then counts the holders; above the
budget it deletes its node again and is refused, so the budget is never
exceeded (two racing takers may both back off; they try again); a
refused take releases only the locks it created itself.  A lock left by
our own job's earlier session (a takeover) is replaced by one of this
session.  The nodes carry the board's ACL.

Giving back removes only nodes of this client's session
(:attr:`ZookeeperFleet.fleet_session_fenced`): a run that declared its
claim lost while its session lived on (an outage longer than the claim
expiry) still gives its slots back, as no other conductor's run shares
its session.  A give-back that fails (the server is away) is retried
in the background until it is made, and so are the nodes a failed take
had created; a session that is gone meanwhile took its nodes with it,
so nothing is retried for it.

Round trips per target: taking is one create per key, one create and
one listing for a slot, one read of the release marks; giving back one
transaction.  Failures: kazoo errors are translated by the driver's
``translate()``.
"""

import logging
import threading
import time
import urllib.parse

from kazoo import exceptions as kazoo_exc
from kazoo.protocol.states import KeeperState

from octavia_workflows.engine.jobboard import base

LOG = logging.getLogger(__name__)


def _quote(text):
    return urllib.parse.quote(text, safe='')


_SETUP = threading.Lock()


class ZookeeperFleet:
    """Mixin for the ZooKeeper driver: needs ``client``, ``board``,
    ``translate()`` and ``_acl()``."""

    #: :meth:`fleet_give` removes only what this client's session holds.
    fleet_session_fenced = True

    _gives = None       # member -> (job id, keys, slot?, session id)
    _retrying = False
    _last_session = None

    def _pending(self):
        """Give-backs still to make (see the module docstring), under
        ``self._gives_lock``; retried first."""
        if self._gives is None:
            with _SETUP:
                if self._gives is None:
                    self._gives_lock = threading.RLock()
                    self._gives = {}
        self._session()         # the session what we are about to do is in
        self._retry_gives()
        return self._gives

    def _session(self):
        """This client's session: the live one, else the last one (a
        suspended session may come back with its nodes)."""
        client_id = self.client.client_id
        if client_id:
            self._last_session = client_id[0]
        return self._last_session

    def _retry_gives(self):
        """Make the give-backs still owed; those of a session that is
        gone are dropped (its nodes went with it)."""
        if not self._gives or not self.client.connected:
            return
        with self._gives_lock:
            for member, (job_id, keys, slot, session) in list(
                    self._gives.items()):
                if session == self._session():
                    try:
                        self._give(member, job_id, keys, slot)
                    except (kazoo_exc.KazooException, OSError):
                        return          # still away: the next time
                self._gives.pop(member, None)

    def _retrier(self):
        """While give-backs are owed: retry them twice a second (the
        session comes back, or is gone and they are dropped)."""
        while True:
            time.sleep(0.5)
            with self._gives_lock:
                if self.client.client_state == KeeperState.CLOSED:
                    self._gives.clear()     # closed: the session is gone
                if not self._gives:
                    self._retrying = False
                    return
            self._retry_gives()

    def _owe(self, member, job_id, keys, slot):
        with self._gives_lock:
            _, owed, owed_slot, _ = self._gives.get(
                member, (job_id, (), False, None))
            self._gives[member] = (job_id, tuple(set(owed) | set(keys)),
                                   owed_slot or slot, self._session())
            if not self._retrying:
                self._retrying = True
                threading.Thread(target=self._retrier, daemon=True,
                                 name='fleet-give-back').start()

    def _forgive(self, member, job_id, keys):
        """A take is made again: nothing of it is to be given back."""
        with self._gives_lock:
            self._gives.pop(member, None)
            for other, (job, owed, slot, session) in list(
                    self._gives.items()):
                if job == job_id and set(owed) & set(keys):
                    self._gives[other] = (job, tuple(
                        k for k in owed if k not in keys), slot, session)

    def _fleet_path(self, *parts):
        root = self.board.path.rstrip('/') + '.fleet'
        return '/'.join([root] + [_quote(p) for p in parts])

    def _create(self, path, data, ephemeral):
        return self.client.create(path, data.encode('utf-8'),
                                  acl=self._acl(), ephemeral=ephemeral,
                                  makepath=True)

    def _hold(self, path, job_id, made=None):
        """Make ``path`` an ephemeral node of this session holding
        ``job_id``: None once it is, else the job id another holds it
        for (a node of our job from a dead session is replaced).  A node
        created here is added to ``made``."""
        for _ in range(3):
            try:
                self._create(path, job_id, ephemeral=True)
                if made is not None:
                    made.append(path)
                return None
            except kazoo_exc.NodeExistsError:
                pass
            try:
                data, stat = self.client.get(path)
            except kazoo_exc.NoNodeError:
                continue
            holder = data.decode('utf-8')
            if holder != job_id:
                return holder
            if stat.ephemeralOwner == self.client.client_id[0]:
                return None
            try:
                self.client.delete(path, version=stat.version)
            except (kazoo_exc.NoNodeError, kazoo_exc.BadVersionError):
                pass
        return job_id

    def fleet_take(self, member, job_id, keys, budget, force=False):
        keys = list(keys)
        slot = bool(budget and budget > 0)
        made = []           # paths this take is answerable for
        with self.translate('taking a fleet slot'):
            self._pending()
            with self._gives_lock:
                self._forgive(member, job_id, keys)
            try:
                return self._take(member, job_id, keys, budget, force, made)
            except (kazoo_exc.KazooException, OSError):
                # What this take created is given back once the server
                # answers again (the slot once it found none: whether or
                # not its create went through).
                self._owe(member, job_id,
                          [k for k in keys
                           if self._fleet_path('locks', k) in made],
                          slot and self._fleet_path('budget', member) in made)
                raise

    def _take(self, member, job_id, keys, budget, force, made):
        taken = []
        for key in keys:
            holder = self._hold(self._fleet_path('locks', key), job_id, made)
            if holder is not None and holder != job_id:
                self._unlock(job_id, [k for k in taken
                                      if self._fleet_path('locks', k)
                                      in made])
                return base.Grant(False, refused=base.LOCKED,
                                  holder=holder, key=key)
            taken.append(key)
        if budget and budget > 0:
            path = self._fleet_path('budget', member)
            fresh = not self.client.exists(path)
            if fresh:
                made.append(path)
            self._hold(path, job_id)
            if fresh:
                used = len(self.client.get_children(
                    self._fleet_path('budget')))
                if used > budget and not force:
                    self.client.delete(path)
                    self._unlock(job_id, [k for k in taken
                                          if self._fleet_path('locks', k)
                                          in made])
                    return base.Grant(False, refused=base.BUDGET,
                                      holder=str(used - 1))
        released = None
        for key in keys:
            try:
                data, _ = self.client.get(self._fleet_path('released', key))
            except kazoo_exc.NoNodeError:
                continue
            mark = int(data.decode('utf-8')) / 1000.0
            released = mark if released is None else max(released, mark)
        return base.Grant(True, released_at=released)

    def _unlock(self, job_id, keys):
        if not keys:
            return
        # the marks' folder first: a transaction creating a mark under a
        # folder that is not there fails whole, and the lock stays
        self.client.ensure_path(self._fleet_path('released'),
                                acl=self._acl())
        now = str(int(time.time() * 1000))
        for key in keys:
            path = self._fleet_path('locks', key)
            try:
                data, stat = self.client.get(path)
            except kazoo_exc.NoNodeError:
                continue
            if (data.decode('utf-8') != job_id
                    or stat.ephemeralOwner != self.client.client_id[0]):
                continue  # not ours (a new owner's after a takeover)
            mark = self._fleet_path('released', key)
            transaction = self.client.transaction()
            transaction.delete(path, version=stat.version)
            if self.client.exists(mark):
                transaction.set_data(mark, now.encode('utf-8'))
            else:
                transaction.create(mark, now.encode('utf-8'),
                                   acl=self._acl())
            failed = [r for r in transaction.commit()
                      if isinstance(r, Exception)
                      and not isinstance(r, kazoo_exc.RolledBackError)]
            if failed:
                # commit() reports, it does not raise: a lock changed
                # under us (a new owner's) is not ours to delete
                LOG.debug('lock %s not released: %r', key, failed[0])

    def fleet_give(self, member, job_id, keys):
        keys = list(keys)
        with self.translate('giving back a fleet slot'):
            self._pending()
            with self._gives_lock:
                self._gives.pop(member, None)
            try:
                self._give(member, job_id, keys, True)
            except (kazoo_exc.KazooException, OSError):
                self._owe(member, job_id, keys, True)
                raise

    def _give(self, member, job_id, keys, slot):
        if slot:
            path = self._fleet_path('budget', member)
            try:
                _, stat = self.client.get(path)
                if stat.ephemeralOwner == self.client.client_id[0]:
                    self.client.delete(path, version=stat.version)
            except (kazoo_exc.NoNodeError, kazoo_exc.BadVersionError):
                pass
        self._unlock(job_id, list(keys))

    def fleet_keep(self, held):
        # Ephemeral nodes live as long as the session: nothing to renew.
        return None

    def fleet_in_use(self):
        with self.translate('counting fleet slots'):
            self._pending()
            try:
                return len(self.client.get_children(
                    self._fleet_path('budget')))
            except kazoo_exc.NoNodeError:
                return 0

    def try_lease(self, name, holder, ttl):
        path = self._fleet_path('leases', name)
        with self.translate('taking a lease'):
            try:
                self._create(path, holder, ephemeral=True)
                return True
            except kazoo_exc.NodeExistsError:
                data, stat = self.client.get(path)
                return (data.decode('utf-8') == holder
                        and stat.ephemeralOwner == self.client.client_id[0])

    def release_lease(self, name, holder):
        path = self._fleet_path('leases', name)
        with self.translate('releasing a lease'):
            try:
                data, stat = self.client.get(path)
            except kazoo_exc.NoNodeError:
                return
            if data.decode('utf-8') == holder:
                self.client.delete(path, version=stat.version)
