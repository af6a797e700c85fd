"""No-op amphora driver with injection and a record of configure calls."""

import json
import os
import time

from octavia.amphorae.drivers.noop_driver import driver as noop

from ow_sandbox_drivers import agentconf, knobs

CONFIGURE_LOG = "configure-calls.jsonl"


def record_configure(amphora):
    """Append one line for an amphora agent configuration push."""
    base = knobs.sandbox_dir()
    if base is None:
        return
    line = json.dumps({
        "time": time.time(),
        "amphora_id": getattr(amphora, "id", None),
        "compute_id": getattr(amphora, "compute_id", None),
        "load_balancer_id": getattr(amphora, "load_balancer_id", None),
        "pid": os.getpid(),
    }) + "\n"
    # One O_APPEND write per record: lines from several processes and
    # threads never interleave.
    fd = os.open(base / CONFIGURE_LOG, os.O_WRONLY | os.O_CREAT | os.O_APPEND,
                 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


@knobs.hooked("amphora", noop.NoopAmphoraLoadBalancerDriver)
class SandboxAmphoraDriver(noop.NoopAmphoraLoadBalancerDriver):
    """``amphora_noop_driver`` whose calls pass through the sandbox hooks."""

    def update_amphora_agent_config(self, amphora, agent_config):
        knobs.hook("amphora.update_amphora_agent_config")
        super().update_amphora_agent_config(amphora, agent_config)
        record_configure(amphora)
        section = knobs.current().get("heartbeats") or {}
        if getattr(amphora, "image_id", None) in set(
                section.get("no_reload_images") or ()):
            # An amphora image older than the fix for Octavia bug
            # 2121691: the agent stores the file, its health sender keeps
            # sending to the list it started with.
            return
        agentconf.record(getattr(amphora, "compute_id", None), agent_config,
                         "push")
