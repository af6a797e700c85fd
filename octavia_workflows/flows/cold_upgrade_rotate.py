"""cold-upgrade's last step: post the follow-up ``rotate-images`` job.

The follow-up job's id derives from the cold-upgrade job's id, so a
repeated step finds the job it posted instead of posting a second one;
a record left behind without its board posting (a crash between the
two) is posted then.  With the jobboard disabled the job is created
PENDING and the operator runs it with ``octavia-workflow resume ID``.

Failures: an invalid parameter set or an unreachable jobboard raise
:class:`~octavia_workflows.exceptions.OctaviaWorkflowsError` subclasses
(the step then waits at a gate).
"""

from octavia_workflows.engine import jobs
from octavia_workflows.flows import base
from octavia_workflows.flows import cold_upgrade_steps as steps

WORKFLOW = 'rotate-images'


def parameters(context):
    """The follow-up job's parameters (validated by its workflow)."""
    params = context.params
    raw = {'concurrency': params.get('rotate_concurrency') or 1}
    if params.get('image_file'):
        raw['image_id'] = steps.derived_id(context.job_id, 'image')
    else:
        raw['image_tag'] = params['image_tag']
    return base.get(WORKFLOW).validate(raw)


def post(context):
    """Post (once) the rotate-images job; returns ``(job_id, note)``."""
    from octavia_workflows.engine import jobboard

    conf = context.conf
    workflow = base.get(WORKFLOW)
    params = parameters(context)
    job_id = steps.derived_id(context.job_id, 'rotate')
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
            service.create(workflow, params, cloud=context.cloud_name,
                           job_id=job_id)
        elif existing['mode'] == 'board' and not existing['board_job'] \
                and existing['state'] == 'PENDING':
            board_uuid = service.board().post(job_id, WORKFLOW)
            context.records.update_job(job_id, board_job=board_uuid)
    finally:
        for driver in boards:
            driver.close()
    if service.board_enabled:
        note = f'posted {WORKFLOW} job {job_id}'
    else:
        note = (f'created {WORKFLOW} job {job_id}; run it with '
                f'"octavia-workflow resume {job_id}"')
    return job_id, note
