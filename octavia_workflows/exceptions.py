"""The single exception hierarchy of octavia-workflows.

Every error the library raises on purpose derives from
:class:`OctaviaWorkflowsError`.  Errors coming from TaskFlow, redis-py,
kazoo, SQLAlchemy or openstacksdk are translated once, at the boundary
where they are caught, with ``raise ... from``.

The CLI maps :class:`UserError` (and its subclasses) to exit code 2 with
a one-line message; anything else is a failure (exit code 1).
"""


class OctaviaWorkflowsError(Exception):
    """Root of every exception raised by octavia-workflows."""


class UserError(OctaviaWorkflowsError):
    """Bad input from the operator: nothing was posted or changed."""


class ConfigError(UserError):
    """The configuration is unreadable or invalid."""


class UnknownWorkflow(UserError):
    """No workflow with that name is installed."""


class InvalidParameter(UserError):
    """A workflow parameter is unknown, malformed or out of range."""


class JobNotFound(UserError):
    """No job with that id exists in the persistence store."""


class InvalidJobState(UserError):
    """The job is not in a state that allows the requested operation."""


class BackendUnavailable(UserError):
    """The jobboard or the persistence database cannot be reached.

    Raised before anything is posted, so it is reported as bad input
    (exit code 2): the operator has to fix the configuration or the
    service first.
    """


class SchemaMissing(UserError):
    """The persistence schema does not exist or is out of date."""


class CloudError(OctaviaWorkflowsError):
    """A call to the OpenStack cloud failed.

    Raised only by :mod:`octavia_workflows.cloud`, which translates every
    openstacksdk/keystoneauth error into one of the subclasses below.
    ``status`` is the HTTP status code when there was an answer.
    """

    #: True for errors worth retrying later (5xx, timeouts, refused
    #: connections); False for errors that will not go away by waiting.
    transient = False

    def __init__(self, message, status=None):
        super().__init__(message)
        self.status = status


class CloudNotFound(CloudError):
    """The resource does not exist (HTTP 404)."""


class CloudConflict(CloudError):
    """The resource is busy or immutable right now (HTTP 409)."""


class CloudRequestError(CloudError):
    """The cloud refused the request (other 4xx); retrying will not help."""


class CloudTransient(CloudError):
    """The cloud answered 5xx or the request timed out; retry later."""

    transient = True


class CloudUnreachable(CloudTransient, BackendUnavailable):
    """The cloud's API cannot be reached at all (connection refused...).

    Also a :class:`BackendUnavailable`, so a job whose plan cannot be
    computed is retried later instead of failing, and ``submit
    --dry-run`` exits 2 with the reason.
    """


class CloudConfigError(ConfigError):
    """The cloud name is unknown or its clouds.yaml entry is unusable."""


class ClaimLost(OctaviaWorkflowsError):
    """This conductor no longer owns the job it is working on.

    Raised by the fencing check before a cloud-changing call; the job's
    new owner carries on, so the stale worker must not touch the cloud
    or the job's records again.
    """


class JobPaused(OctaviaWorkflowsError):
    """Raised inside a flow to stop at an approval gate or breaker."""


class NotYet(OctaviaWorkflowsError):
    """A short check found its target not ready; check again later.

    Raised inside a retry-controlled subflow; the retry controller
    (:class:`octavia_workflows.machinery.retry.Again`) answers RETRY, so
    it never fails the job.
    """


class GateWaiting(NotYet):
    """An approval gate is not approved yet; the job pauses there (the
    step runs again once the gate is answered)."""
