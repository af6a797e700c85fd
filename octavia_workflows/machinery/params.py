"""Parameters shared by the runbooks, and the checks they need."""

from octavia_workflows import exceptions, workflow

COMMON_PARAMS = (
    workflow.Param('concurrency', 'int', 'targets in flight at once',
                   default=1, min=1, max=64),
    workflow.Param('interval', 'float',
                   'minimum seconds between two target starts',
                   default=0.0, min=0, max=86400),
    workflow.Param('max_per_az', 'int',
                   'at most this many targets in flight per availability '
                   'zone', min=1, max=1000),
    workflow.Param('max_failures', 'int',
                   'circuit breaker: pause the job after this many failed '
                   'targets (0: never pause)', default=1, min=0,
                   max=100000),
    workflow.Param('max_failure_ratio', 'float',
                   'circuit breaker: also pause the job when at least this '
                   'share (0..1) of the last breaker_window finished '
                   'targets failed (unset: no ratio)', min=0, max=1),
    workflow.Param('breaker_window', 'int',
                   'how many of the most recent finished targets '
                   'max_failure_ratio looks at', default=10, min=1,
                   max=100000),
    workflow.Param('target_timeout', 'float',
                   'seconds one target may take from its start until its '
                   'failover is verified', default=900.0, min=1,
                   max=86400),
    workflow.Param('window', 'window',
                   'maintenance window: targets start only inside it, e.g. '
                   '"Sat-Sun 01:00-05:00" (UTC unless a zone is given, '
                   '"Mon-Fri 22:00-04:00 Europe/Berlin"); outside it the '
                   'job waits and goes on by itself when it opens; targets '
                   'in flight when it closes finish'),
)

FILTER_PARAMS = (
    workflow.Param('loadbalancers', 'uuids',
                   'only these load balancer ids (comma-separated)'),
    workflow.Param('project', 'str',
                   'only load balancers of this project id'),
    workflow.Param('availability_zone', 'str',
                   'only load balancers in this availability zone (Octavia '
                   'zone, or the compute zone of their amphorae)'),
)


def lanes(params):
    """A paced runbook's lanes: one per unit of ``concurrency``."""
    return max(1, int(params.get('concurrency') or 1))


def _given(value):
    # 0 and 0.0 are real values (e.g. older_than_days=0), unlike False.
    return value is not None and value is not False and value not in (
        [], '')


def exactly_one(params, names, what):
    """InvalidParameter unless exactly one of ``names`` is set."""
    given = [n for n in names if _given(params.get(n))]
    if len(given) != 1:
        choices = ', '.join(names)
        if given:
            raise exceptions.InvalidParameter(
                f'{what}: give only one of {choices} (got '
                f'{", ".join(given)})')
        raise exceptions.InvalidParameter(
            f'{what}: give one of {choices}')
    return given[0]
