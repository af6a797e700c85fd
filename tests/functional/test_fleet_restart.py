"""The fleet budget across a jobboard backend restart, on real servers.

The server holding the fleet state (a private redis-server or ZooKeeper
on loopback) is SIGKILLed while clients hold budget slots and others race
for the rest, and started again on the same port and data directory.
Throughout, the slots in use -- counted on the backend, and from what the
clients were granted -- never exceed the budget; a holder that stays
alive keeps its slot; a holder SIGKILLed during the outage gives its slot
back within the claim expiry after the restart; and once everyone has
given back, nothing is left in use.

Holders run as the conductor runs a job: a posted and claimed job, a
:class:`~octavia_workflows.engine.claims.BoardClaim` whose keep-alive
renews the claim and the run's
:class:`~octavia_workflows.engine.coordination.Fleet`, and at the end
``give_all()``.  The racers are job runs taking and giving back slots in
a loop, and giving back whatever a failed call may have left.
"""

import contextlib
import signal
import subprocess
import sys
import textwrap
import threading
import time
import urllib.parse

from kazoo import exceptions as kazoo_exc
import pytest

from functional.conftest import board_options
from octavia_workflows import conf as ow_conf
from octavia_workflows import exceptions
from octavia_workflows.engine import claims, coordination, jobboard
from owtools import services

pytestmark = pytest.mark.functional

#: The budget: the holders' slots plus some for the racers.
BUDGET = 4


class Book:
    """What the clients were granted, and the peaks seen.

    Takes go through :meth:`taking`; :meth:`sample` counts the backend's
    slots while no take is under way (on ZooKeeper a taker about to back
    off has a node for a moment) together with the clients' own count.
    """

    def __init__(self, board, drv):
        self.board, self.drv = board, drv
        self.granted = set()
        self.dead = set()           # held by SIGKILLed holders
        #: Takes that failed half-way (the server died under them): on
        #: ZooKeeper their node may stay until it is given back in the
        #: background; it makes others wait, it was granted to no one.
        self.unsure = set()
        self.peak_clients = self.peak_backend = 0
        self.samples = 0
        self._cond = threading.Condition()
        self._taking = 0
        self._sampling = False

    @contextlib.contextmanager
    def taking(self):
        with self._cond:
            self._cond.wait_for(lambda: not self._sampling)
            self._taking += 1
        try:
            yield
        finally:
            with self._cond:
                self._taking -= 1
                self._cond.notify_all()

    def _clients(self):
        """Granted and not given back, plus the dead holders' slots while
        the backend still has them (a dead conductor's action is in
        flight until its slot expires)."""
        count = len(self.granted)
        for member in list(self.dead):
            if present(self.board, self.drv, member):
                count += 1
            else:
                self.dead.discard(member)
        return count

    def grant(self, member):
        with self._cond:
            self.granted.add(member)
        try:
            count = self._clients()
        except exceptions.BackendUnavailable:
            return
        self.peak_clients = max(self.peak_clients, count)

    def ungrant(self, member):
        with self._cond:
            self.granted.discard(member)

    def sample(self):
        with self._cond:
            self._sampling = True
            if not self._cond.wait_for(lambda: not self._taking, 0.5):
                self._sampling = False
                self._cond.notify_all()
                return
        try:
            backend = len(holders(self.board, self.drv) - self.unsure)
            clients = self._clients()
        except exceptions.BackendUnavailable:
            return
        finally:
            with self._cond:
                self._sampling = False
                self._cond.notify_all()
        self.samples += 1
        self.peak_backend = max(self.peak_backend, backend)
        self.peak_clients = max(self.peak_clients, clients)


def present(board, drv, member):
    """Does the backend hold a live budget slot for ``member``?"""
    with drv.translate('reading a fleet slot'):
        if board == 'redis':
            score = drv.client.zscore(drv._fleet_key('budget'), member)
            seconds, micros = drv.client.time()
            return score is not None and score > seconds * 1000 + \
                micros // 1000
        return drv.client.exists(drv._fleet_path('budget', member)) \
            is not None


class Boards:
    """Configuration files (one per claim expiry) for one server."""

    def __init__(self, tmp_path, board, server, namespace):
        self.tmp_path, self.board = tmp_path, board
        self.server, self.namespace = server, namespace
        self.made = []

    def conf_file(self, expiry):
        path = self.tmp_path / f'board-{expiry}.conf'
        opts = board_options(self.board, self.server, self.namespace,
                             expiry)
        path.write_text('[task_flow]\n' + ''.join(
            f'{k} = {v}\n' for k, v in opts.items()))
        return path

    def connect(self, expiry):
        drv = jobboard.fetch(ow_conf.load([str(self.conf_file(expiry))]))
        drv.connect()
        self.made.append(drv)
        return drv

    def close(self):
        for drv in self.made:
            drv.close()


def take_when_granted(fleet, target, keys, timeout=30):
    """The run's take, asked again while refused (a new server grants
    nothing until it has been up one claim expiry)."""
    deadline = time.monotonic() + timeout
    while True:
        grant = fleet.take(target, keys)
        if grant.granted:
            return grant
        assert time.monotonic() < deadline, grant
        time.sleep(0.1)


class Holder:
    """One job run holding one slot, renewed by its claim's keep-alive."""

    def __init__(self, boards, job_id, expiry, book):
        self.drv = boards.connect(expiry)
        self.job_id, self.book = job_id, book
        board_job = self.drv.find(self.drv.post(job_id, 'selftest'))
        assert self.drv.claim(board_job, f'conductor-{job_id}')
        self.fleet = coordination.Fleet(self.drv, job_id, budget=BUDGET)
        self.claim = claims.BoardClaim(job_id, f'conductor-{job_id}',
                                       self.drv, board_job, fleet=self.fleet)
        self.claim.start()
        take_when_granted(self.fleet, 't', [f'lb:{job_id}'])
        self.member = f'{job_id}/t'
        book.grant(self.member)
        self.ended = False

    def end(self):
        """The run ends (as the conductor ends it): stop the keep-alive,
        give everything back."""
        self.book.ungrant(self.member)    # no longer counted once it
        self.claim.stop()                   # starts giving back
        self.fleet.give_all()
        self.ended = True


DEAD = textwrap.dedent('''
    import sys, time
    from octavia_workflows import conf as ow_conf
    from octavia_workflows.engine import claims, coordination, jobboard
    drv = jobboard.fetch(ow_conf.load([sys.argv[1]]))
    drv.connect()
    job = drv.find(drv.post('job-dead', 'selftest'))
    assert drv.claim(job, 'conductor-dead')
    fleet = coordination.Fleet(drv, 'job-dead', budget=int(sys.argv[2]))
    claim = claims.BoardClaim('job-dead', 'conductor-dead', drv, job,
                              fleet=fleet)
    claim.start()
    while not fleet.take('t', ['lb:dead']).granted:
        time.sleep(0.1)
    print('held', flush=True)
    time.sleep(600)
''')


class Racers:
    """Job runs that take a slot, hold it briefly and give it back, in a
    loop, on their own connections; a failed call is answered as a step
    answers it (give back, try again later)."""

    def __init__(self, boards, book, count, expiry):
        self.book = book
        self.stop = threading.Event()
        self.grants = []
        self.errors = []
        self.threads = [
            threading.Thread(target=self._run, daemon=True,
                             args=(boards.connect(expiry), n))
            for n in range(count)]

    def start(self):
        for thread in self.threads:
            thread.start()
        return self

    def _run(self, drv, n):
        try:
            self._race(drv, n)
        except BaseException as exc:  # reported by join()
            self.errors.append(exc)

    def _race(self, drv, n):
        fleet = coordination.Fleet(drv, f'racer-{n}', budget=BUDGET)
        k = 0
        while not self.stop.is_set():
            fleet.give_all()            # whatever a failed call left
            target = f't{k}'
            k += 1
            try:
                with self.book.taking():
                    grant = fleet.take(target, [f'lb:r{n}-{k}'])
            except exceptions.BackendUnavailable:
                self.book.unsure.add(f'racer-{n}/{target}')
                with contextlib.suppress(exceptions.BackendUnavailable):
                    fleet.give(target)
                time.sleep(0.05)
                continue
            if not grant.granted:
                time.sleep(0.02)
                continue
            member = f'racer-{n}/{target}'
            self.grants.append(time.monotonic())
            self.book.grant(member)
            time.sleep(0.1)
            self.book.ungrant(member)
            with contextlib.suppress(exceptions.BackendUnavailable):
                fleet.give(target)
        fleet.give_all()

    def join(self):
        self.stop.set()
        for thread in self.threads:
            thread.join(30)
        assert not self.errors, self.errors


class Sampler(threading.Thread):
    def __init__(self, book):
        super().__init__(daemon=True)
        self.book = book
        self.halt = threading.Event()

    def run(self):
        while not self.halt.wait(0.02):
            self.book.sample()

    def join(self, timeout=10):
        self.halt.set()
        super().join(timeout)


@pytest.fixture
def scene(tmp_path, namespace):
    """Starts a private server, then everything else; stops it all."""
    made = {'procs': [], 'servers': [], 'boards': []}

    def make(board, **kwargs):
        cls = (services.RedisServer if board == 'redis'
               else services.ZooKeeperServer)
        server = cls(tmp_path / board, **kwargs).start()
        made['servers'].append(server)
        boards = Boards(tmp_path, board, server, namespace)
        made['boards'].append(boards)
        return server, boards

    def dead_holder(boards, expiry):
        proc = subprocess.Popen(
            [sys.executable, '-c', DEAD, str(boards.conf_file(expiry)),
             str(BUDGET)], stdout=subprocess.PIPE, text=True)
        made['procs'].append(proc)
        assert proc.stdout.readline().strip() == 'held'
        return proc

    make.dead_holder = dead_holder
    yield make
    for proc in made['procs']:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
    for boards in made['boards']:
        boards.close()
    for server in made['servers']:
        server.stop()


def until(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f'{what}: not within {timeout} s'
        time.sleep(0.1)


def _ours(board, drv, member):
    try:
        return present(board, drv, member)
    except exceptions.BackendUnavailable:
        return None


def _restart(server, proc, outage):
    """SIGKILL the server and the dead holder; start the server again."""
    server.kill()
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    time.sleep(outage)
    server.start()
    return time.monotonic()


def _finish(book, boards, racers, sampler, runs, probe):
    racers.join()
    sampler.join()
    for holder in runs:
        if not holder.ended:
            holder.end()
    assert book.samples >= 5
    assert book.peak_backend <= BUDGET, book.peak_backend
    assert book.peak_clients <= BUDGET, book.peak_clients
    deadline = time.monotonic() + 5     # owed give-backs are retried
    while probe.fleet_in_use() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert probe.fleet_in_use() == 0, holders(book.board, probe)


def holders(board, drv):
    """The members holding a live budget slot, as the backend says."""
    with drv.translate('listing fleet slots'):
        if board == 'redis':
            seconds, micros = drv.client.time()
            now = seconds * 1000 + micros // 1000
            return {m.decode() for m in drv.client.zrangebyscore(
                drv._fleet_key('budget'), f'({now}', '+inf')}
        try:
            return {urllib.parse.unquote(m) for m in drv.client.get_children(
                drv._fleet_path('budget'))}
        except kazoo_exc.NoNodeError:
            return set()


@pytest.mark.parametrize('persistence', ['appendonly', 'none'])
def test_redis_restart_never_exceeds_the_budget(scene, persistence):
    """With an append-only file (as doc/production-redis.md configures
    it) the slots survive the restart and the alive holder's keep-alive
    renews its own after the reconnect.  Without persistence the server
    comes back empty: the claim-backed holder's claim is gone with the
    data (it notices and stops), a holder that keeps renewing re-asserts
    its slot, and until then nobody else is granted one."""
    expiry = 4
    server, boards = scene('redis', appendonly=persistence == 'appendonly')
    probe = boards.connect(expiry)
    book = Book('redis', probe)
    alive = Holder(boards, 'job-alive', expiry, book)
    dead = scene.dead_holder(boards, expiry)
    book.dead.add('job-dead/t')
    keeper = None
    if persistence == 'none':
        # A holder whose renewals go on (the fleet_keep contract: it
        # re-adds what the backend lost).
        keeper = coordination.Fleet(boards.connect(expiry), 'job-keep',
                                    budget=BUDGET)
        take_when_granted(keeper, 't', ['lb:keep'])
        book.grant('job-keep/t')
        kept = threading.Event()

        def keep():
            while not kept.wait(expiry / 3):
                with contextlib.suppress(exceptions.BackendUnavailable):
                    keeper.keep()
        threading.Thread(target=keep, daemon=True).start()
    racers = Racers(boards, book, 3, expiry).start()
    sampler = Sampler(book)
    sampler.start()
    until(lambda: len(racers.grants) >= 3, 10, 'racers granted slots')
    restarted = _restart(server, dead, outage=1.0)
    if persistence == 'appendonly':
        until(lambda: _ours('redis', probe, 'job-dead/t') is False,
              expiry + 2,
              "the dead holder's slot back")
        assert _ours('redis', probe, 'job-alive/t')
        assert not alive.claim.lost
    else:
        until(lambda: alive.claim.lost, expiry, 'the lost claim noticed')
        book.ungrant(alive.member)      # its run stops at the fence
        alive.end()
        until(lambda: _ours('redis', probe, 'job-keep/t'), expiry,
              'the kept slot re-asserted')
        assert _ours('redis', probe, 'job-alive/t') is False
    # slots came back: the racers are granted again after the restart
    until(lambda: sum(t > restarted for t in racers.grants) >= 3,
          expiry + 5, 'racers granted after the restart')
    time.sleep(0.5)
    if keeper is not None:
        kept.set()
        keeper.give_all()
        book.ungrant('job-keep/t')
    _finish(book, boards, racers, sampler, [alive], probe)


def test_zookeeper_restart_never_exceeds_the_budget(scene):
    """A standalone ZooKeeper SIGKILLed and started again on its data:
    the sessions come back with it (the server restores them, each with
    a fresh timeout), and with them their ephemeral slots.  A holder with
    a long claim expiry rides it out; one whose claim expiry is shorter
    than the outage declares its claim lost although the session (and
    its slot) survived, and must still give the slot back when its run
    ends; the dead holder's session expires one session timeout after
    the restart, and its slot with it."""
    short, lost_expiry, long_ = 2, 4, 14
    server, boards = scene('zookeeper')
    probe = boards.connect(long_)
    book = Book('zookeeper', probe)
    alive = Holder(boards, 'job-alive', long_, book)
    lost = Holder(boards, 'job-lost', lost_expiry, book)
    dead = scene.dead_holder(boards, short)
    book.dead.add('job-dead/t')
    racers = Racers(boards, book, 3, short).start()
    sampler = Sampler(book)
    sampler.start()
    until(lambda: len(racers.grants) >= 3, 10, 'racers granted slots')
    restarted = _restart(server, dead, outage=lost_expiry)
    until(lambda: lost.claim.lost, 10, 'the short claim declared lost')
    until(lambda: _ours('zookeeper', probe, 'job-alive/t') is not None, 30,
          'the server answering again')
    until(lambda: _ours('zookeeper', probe, 'job-dead/t') is False,
          short + 4, "the dead holder's slot back")
    assert _ours('zookeeper', probe, 'job-alive/t')
    assert _ours('zookeeper', probe, 'job-lost/t')  # the session lives
    assert not alive.claim.lost
    # the lost run ends and gives back what its session still holds
    lost.end()
    until(lambda: _ours('zookeeper', probe, 'job-lost/t') is False, 5,
          "the lost run's slot back")
    until(lambda: sum(t > restarted for t in racers.grants) >= 3, 10,
          'racers granted after the restart')
    _finish(book, boards, racers, sampler, [alive], probe)
