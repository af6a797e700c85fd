"""Health after a failover: service, not only provisioning.

A failover is verified when the load balancer is ACTIVE again with new
amphorae; that is provisioning.  Whether it serves is what Octavia's
health manager reports in its ``operating_status``.  The failover
runbooks record that status before acting (in the target's "before")
and, once the failover is verified, wait up to ``health_timeout``
seconds for it to be back to at least what it was.  A load balancer that
does not get there FAILS its target (``health regression: ONLINE ->
ERROR after failover``), which counts for the circuit breaker: a bad
amphora image is not rolled over the fleet.  A load balancer that was
not ONLINE before is judged against what it was (staying OFFLINE is not
a regression), and the plan says which ones those are.

``canary=N`` (:class:`~.lanes.Canary`): once the first N targets have
finished, the job waits at an approval gate that shows their health
before, after and now.  Right after a failover Octavia still shows the
load balancer's old operating status until the health manager has heard
from the new amphorae, so the gate waits ``canary_settle`` seconds after
the last canary target finished and reads their health again; a canary
target that FAILED, or whose load balancer regressed since, is named
first and the gate says ``canary FAILED`` (it is never offered as
healthy).
"""

from octavia_workflows import workflow

ONLINE = 'ONLINE'

#: How well an operating status serves (higher is better); a status not
#: listed is not judged.
RANK = {'ONLINE': 3, 'NO_MONITOR': 3, 'DRAINING': 2, 'DEGRADED': 2,
        'OFFLINE': 1, 'ERROR': 0}

#: Seconds between two looks while waiting for the health to come back.
POLL = 2.0

PARAMS = (
    workflow.Param('health_timeout', 'float',
                   'seconds to wait after a verified failover for the load '
                   'balancer\'s operating status to be back to at least '
                   'what it was (0: do not check)', default=120.0, min=0,
                   max=86400),
    workflow.Param('health_settle', 'float',
                   'seconds after a verified failover during which the '
                   'load balancer must stay healthy before its target is '
                   'DONE: Octavia keeps the old operating status until the '
                   'health manager has heard from the new amphorae '
                   '(applies to load balancers with listeners; about 2x '
                   'the health manager\'s heartbeat_interval; 0: judge at '
                   'once)', default=20.0, min=0, max=3600),
    workflow.Param('canary', 'int',
                   'approval gate after the first N targets: once they have '
                   'finished, the job waits for "approve" showing their '
                   'health before and after ("reject" cancels the rest; '
                   '0: no gate)', default=0, min=0, max=100000),
    workflow.Param('canary_settle', 'float',
                   'seconds the canary targets must have been finished '
                   'before the gate reads their health again and asks (the '
                   'health manager reports on new amphorae only after their '
                   'first heartbeats)', default=30.0, min=0, max=3600),
)


def regressed(before, after):
    """True if ``after`` serves worse than ``before`` (operating
    statuses; unknown ones are never a regression)."""
    if before not in RANK or after not in RANK:
        return False
    return RANK[after] < RANK[before]


def plan_note(lbs):
    """The plan's note on load balancers not ONLINE now (None if all
    are), from ``{lb id: operating status}``."""
    others = sorted({s for s in lbs.values() if s != ONLINE and s})
    count = sum(1 for s in lbs.values() if s and s != ONLINE)
    if not count:
        return None
    return (f'{count} load balancer(s) are not ONLINE now '
            f'({", ".join(others)}): their health after the failover is '
            f'judged against that, not against ONLINE')
