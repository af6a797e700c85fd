"""A network namespace that a test can cut off and reconnect.

``Island`` creates (as root, on this machine only) a network namespace
joined to the host by a veth pair on a private /30, and TCP forwarders
on the host end of the pair to services listening on 127.0.0.1, so a
process started with :meth:`Island.popen` reaches them at
``island.host_ip:<same port>``.  :meth:`cut` drops (not rejects) the
island's packets to chosen ports with an nftables rule inside the
namespace -- a partition, as a dead switch port would make it -- and
:meth:`heal` removes the rule.  :meth:`close` removes everything it made.
"""

import contextlib
import random
import select
import socket
import subprocess
import threading

TABLE = 'owpart'


def _sh(*argv, check=True):
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if check and proc.returncode:
        raise RuntimeError(f'{" ".join(argv)}: {proc.stderr.strip()}')
    return proc


class _Forwarder:
    """host_ip:port -> 127.0.0.1:port, one thread per connection."""

    def __init__(self, host_ip, port):
        self.port = port
        self.listener = socket.create_server((host_ip, port))
        self.listener.settimeout(0.5)
        self.closed = threading.Event()
        self.conns = []
        threading.Thread(target=self._accept, daemon=True,
                         name=f'fwd-{port}').start()

    def _accept(self):
        while not self.closed.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                continue
            try:
                upstream = socket.create_connection(('127.0.0.1', self.port),
                                                    timeout=5)
            except OSError:
                client.close()
                continue
            self.conns += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream),
                             daemon=True).start()

    def _pump(self, a, b):
        peers = {a: b, b: a}
        try:
            while not self.closed.is_set():
                ready, _, _ = select.select(list(peers), [], [], 0.5)
                for sock in ready:
                    data = sock.recv(65536)
                    if not data:
                        return
                    peers[sock].sendall(data)
        except OSError:
            return
        finally:
            for sock in (a, b):
                with contextlib.suppress(OSError):
                    sock.close()

    def close(self):
        self.closed.set()
        with contextlib.suppress(OSError):
            self.listener.close()
        for sock in self.conns:
            with contextlib.suppress(OSError):
                sock.close()


class Island:
    """A namespace reachable from the host only through forwarded ports."""

    def __init__(self, ports):
        tag = f'{random.randrange(16**6):06x}'
        self.netns = f'owp{tag}'
        self.host_if, self.ns_if = f'owp{tag}h', f'owp{tag}n'
        subnet = random.randrange(256)
        self.host_ip = f'10.251.{subnet}.1'
        self.ns_ip = f'10.251.{subnet}.2'
        self.forwarders = []
        try:
            self._create()
            self.forwarders = [_Forwarder(self.host_ip, p) for p in ports]
        except Exception:
            self.close()
            raise

    def _create(self):
        _sh('ip', 'netns', 'add', self.netns)
        _sh('ip', 'link', 'add', self.host_if, 'type', 'veth', 'peer',
            'name', self.ns_if)
        _sh('ip', 'link', 'set', self.ns_if, 'netns', self.netns)
        _sh('ip', 'addr', 'add', f'{self.host_ip}/30', 'dev', self.host_if)
        _sh('ip', 'link', 'set', self.host_if, 'up')
        self._in('ip', 'addr', 'add', f'{self.ns_ip}/30', 'dev', self.ns_if)
        self._in('ip', 'link', 'set', self.ns_if, 'up')
        self._in('ip', 'link', 'set', 'lo', 'up')

    def _in(self, *argv, check=True):
        return _sh('ip', 'netns', 'exec', self.netns, *argv, check=check)

    def popen(self, argv, **kwargs):
        """Start ``argv`` inside the namespace."""
        return subprocess.Popen(['ip', 'netns', 'exec', self.netns, *argv],
                                **kwargs)

    def cut(self, ports):
        """Drop every packet from the island to ``ports`` on the host."""
        listed = ', '.join(str(p) for p in ports)
        self._in('nft', 'add', 'table', 'inet', TABLE)
        self._in('nft', 'add', 'chain', 'inet', TABLE, 'out',
                 '{ type filter hook output priority 0 ; policy accept ; }')
        self._in('nft', 'add', 'rule', 'inet', TABLE, 'out', 'ip', 'daddr',
                 self.host_ip, 'tcp', 'dport', f'{{ {listed} }}', 'drop')

    def heal(self):
        self._in('nft', 'delete', 'table', 'inet', TABLE, check=False)

    def close(self):
        for forwarder in self.forwarders:
            forwarder.close()
        _sh('ip', 'link', 'del', self.host_if, check=False)
        _sh('ip', 'netns', 'del', self.netns, check=False)
