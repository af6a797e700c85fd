"""The steps of ``rotate-certificates``: the shared amphora steps with a
start (:class:`StartCertificateRotation`) that re-checks the
certificate's expiry; and the flow factories.
"""


from octavia_workflows.flows.rotate_certificates import NAME, expiry_reason
from octavia_workflows.machinery import amphora, shape


class StartCertificateRotation(amphora.StartAmphoraFailover):
    """Re-check the amphora; skip it if its certificate was renewed."""

    def wanted(self, amp):
        return expiry_reason(amp, self.details.get('expires_before'))


def rotate_certificates_flow(params, targets):
    """Factory of earlier releases: lanes of start / failover / wait
    atoms per amphora."""
    return amphora.amphora_flow(NAME, params, targets,
                                     StartCertificateRotation)


def rotate_certificates_flow_v3(params, targets):
    """Factory: at most ``concurrency`` lanes of one atom each, however
    many amphorae."""
    return amphora.amphora_lanes(NAME, params, targets,
                                 StartCertificateRotation)


def rotate_certificates_flow_v2(params, targets):
    """Factory of earlier releases: lanes of one start-failover-wait
    atom per amphora."""
    return amphora.amphora_flow(
        NAME, params, targets, StartCertificateRotation,
        target_flow=shape.compact_target_flow)
