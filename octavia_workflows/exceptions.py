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
    """A call to the OpenStack cloud failed."""


class ClaimLost(OctaviaWorkflowsError):
    """This conductor no longer owns the job it is working on.

    Raised by the fencing check before a cloud-changing call; the job's
    new owner carries on, so the stale worker must not touch the cloud
    or the job's records again.
    """


class JobPaused(OctaviaWorkflowsError):
    """Raised inside a flow to stop at an approval gate or breaker."""
