"""Compute hosts: what the host runbooks share.

``evacuate-host`` and ``cleanup-node`` both start from a Nova compute
host: its nova-compute service must exist (an unknown host is bad
input), and the amphorae on it are found by joining the host's servers
to the amphorae's ``compute_id``.
"""

from octavia_workflows import exceptions
from octavia_workflows.machinery import inventory


def host_service(cloud, host):
    """The host's nova-compute service; InvalidParameter if unknown."""
    try:
        return cloud.get_compute_service(host)
    except exceptions.CloudNotFound:
        raise exceptions.InvalidParameter(
            f'parameter host: no compute host {host!r} (Nova has no '
            f'nova-compute service on it)') from None


def on_host(servers, amphorae):
    """``[(amphora, server)]`` for the live amphorae whose VM is one of
    ``servers``, in server order."""
    by_compute = {}
    for amp in inventory.live(amphorae):
        if amp.get('compute_id'):
            by_compute[amp['compute_id']] = amp
    return [(by_compute[s['id']], s) for s in servers
            if s['id'] in by_compute]
