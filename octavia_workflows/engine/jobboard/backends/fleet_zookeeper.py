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
is nothing to renew.  Taking a slot creates the node and then counts
the holders; above the budget it deletes its node again and is refused,
so the budget is never exceeded (two racing takers may both back off;
they try again).  A lock left by our own job's earlier session (a
takeover) is replaced by one of this session.  The nodes carry the
board's ACL.

Round trips per target: taking is one create per key, one create and
one listing for a slot, one read of the release marks; giving back one
transaction.  Failures: kazoo errors are translated by the driver's
``translate()``.
"""

import time
import urllib.parse

from kazoo import exceptions as kazoo_exc

from octavia_workflows.engine.jobboard import base


def _quote(text):
    return urllib.parse.quote(text, safe='')


class ZookeeperFleet:
    """Mixin for the ZooKeeper driver: needs ``client``, ``board``,
    ``translate()`` and ``_acl()``."""

    def _fleet_path(self, *parts):
        root = self.board.path.rstrip('/') + '.fleet'
        return '/'.join([root] + [_quote(p) for p in parts])

    def _create(self, path, data, ephemeral):
        return self.client.create(path, data.encode('utf-8'),
                                  acl=self._acl(), ephemeral=ephemeral,
                                  makepath=True)

    def _hold(self, path, job_id):
        """Make ``path`` an ephemeral node of this session holding
        ``job_id``: None once it is, else the job id another holds it
        for (a node of our job from a dead session is replaced)."""
        for _ in range(3):
            try:
                self._create(path, job_id, ephemeral=True)
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
        with self.translate('taking a fleet slot'):
            taken = []
            for key in keys:
                holder = self._hold(self._fleet_path('locks', key), job_id)
                if holder is not None and holder != job_id:
                    self._unlock(job_id, taken)
                    return base.Grant(False, refused=base.LOCKED,
                                      holder=holder, key=key)
                taken.append(key)
            if budget and budget > 0:
                path = self._fleet_path('budget', member)
                fresh = not self.client.exists(path)
                self._hold(path, job_id)
                if fresh:
                    used = len(self.client.get_children(
                        self._fleet_path('budget')))
                    if used > budget and not force:
                        self.client.delete(path)
                        self._unlock(job_id, taken)
                        return base.Grant(False, refused=base.BUDGET,
                                          holder=str(used - 1))
            released = None
            for key in keys:
                try:
                    data, _ = self.client.get(
                        self._fleet_path('released', key))
                except kazoo_exc.NoNodeError:
                    continue
                mark = int(data.decode('utf-8')) / 1000.0
                released = mark if released is None else max(released, mark)
        return base.Grant(True, released_at=released)

    def _unlock(self, job_id, keys):
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
            transaction.commit()

    def fleet_give(self, member, job_id, keys):
        with self.translate('giving back a fleet slot'):
            path = self._fleet_path('budget', member)
            try:
                _, stat = self.client.get(path)
                if stat.ephemeralOwner == self.client.client_id[0]:
                    self.client.delete(path, version=stat.version)
            except (kazoo_exc.NoNodeError, kazoo_exc.BadVersionError):
                pass
            self.client.ensure_path(self._fleet_path('released'),
                                    acl=self._acl())
            self._unlock(job_id, list(keys))

    def fleet_keep(self, held):
        # Ephemeral nodes live as long as the session: nothing to renew.
        return None

    def fleet_in_use(self):
        with self.translate('counting fleet slots'):
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
