"""A throw-away stock Octavia control plane (no-op drivers) on loopback.

Command line: ``tools/sandbox start|stop|status|seed|seed-db|inject|
accounting|heartbeats|health`` (``python -m owtools.sandbox --help``). Python::

    from owtools.sandbox import Sandbox
    sb = Sandbox("sandbox").start()
    conn = sb.connect()                       # openstacksdk Connection
    sb.inject(delays={"compute.build": 3.0}, fail={"compute.build": 0.2})
    sb.accounting().amphorae_by_lb()          # {lb_id: {status: count}}
    sb.heartbeat_knobs(bad_images=[image_id])  # see sandbox.heartbeats
    sb.health().restart(failover_threshold=2)  # see sandbox.health
    sb.stop()
"""

from owtools.sandbox.config import SandboxError
from owtools.sandbox.core import Sandbox

__all__ = ["Sandbox", "SandboxError"]
