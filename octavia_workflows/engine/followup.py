"""Follow-up jobs: a running job posts another one, exactly once.

What :meth:`~octavia_workflows.engine.context.RunContext.post_job`
does.  The follow-up's id is chosen by the caller (derived from its own
job id), so a step run again finds the job it posted instead of posting
a second one; a record left behind without its board posting (a crash
between the two) is posted then.  With the jobboard disabled the job is
created PENDING and the operator runs it with ``octavia-workflow resume
ID``.

Failures: an unknown workflow, invalid parameters or an unreachable
jobboard raise :class:`~octavia_workflows.exceptions.
OctaviaWorkflowsError` subclasses, before anything is written where
they can be detected first.
"""

from octavia_workflows import states, workflow
from octavia_workflows.engine import jobboard, jobs


def post(context, workflow_name, params, job_id):
    """Post (once) ``workflow_name`` with ``params`` as ``job_id``;
    returns a note for the report."""
    flow = workflow.get(workflow_name)
    params = flow.validate(params)
    conf = context.conf
    boards = []

    def board_factory():
        driver = jobboard.fetch(conf, name=context.owner)
        driver.connect()
        boards.append(driver)
        return driver

    service = jobs.JobService(conf, context.persistence,
                              board_factory=board_factory)
    try:
        existing = context.records.get_job(job_id)
        context.fence()
        if existing is None:
            service.create(flow, params, cloud=context.cloud_name,
                           job_id=job_id)
        elif existing['mode'] == 'board' and not existing['board_job'] \
                and existing['state'] == states.PENDING:
            board_uuid = service.board().post(job_id, workflow_name)
            context.records.update_job(job_id, board_job=board_uuid)
    finally:
        for driver in boards:
            driver.close()
    if service.board_enabled:
        return f'posted {workflow_name} job {job_id}'
    return (f'created {workflow_name} job {job_id}; run it with '
            f'"octavia-workflow resume {job_id}"')
