"""No-op network driver with injection and a per-sandbox SQLite file."""

from octavia.network.drivers.noop_driver import driver as noop

from ow_sandbox_drivers import knobs, noopdb


@knobs.hooked("network", noop.NoopNetworkDriver)
class SandboxNetworkDriver(noop.NoopNetworkDriver):
    """``network_noop_driver`` whose calls pass through the sandbox hooks."""

    def __init__(self):
        super().__init__()
        noopdb.redirect(self.driver, exclusive_begin=True)
