"""A job is resumed by the flow factory that built it."""

import pytest
from taskflow.persistence import models
from taskflow.persistence.backends import impl_memory

from octavia_workflows import exceptions
from octavia_workflows import workflow as base
from octavia_workflows.engine import runner
from octavia_workflows.flows import rotate_images

OLD = 'octavia_workflows.flows.rotate_images:rotate_images_flow'
MID = 'octavia_workflows.flows.rotate_images:rotate_images_flow_v2'
NEW = 'octavia_workflows.flows.rotate_images:rotate_images_flow_v3'


def test_factories_oldest_first_and_unknown_refused():
    workflow = base.get('rotate-images')
    assert workflow.factories == (OLD, MID, NEW)
    assert workflow.load_factory() is rotate_images.rotate_images_flow_v3
    assert workflow.load_factory(MID) is rotate_images.rotate_images_flow_v2
    assert workflow.load_factory(OLD) is rotate_images.rotate_images_flow
    with pytest.raises(exceptions.UnknownWorkflow, match='newer release'):
        workflow.load_factory('octavia_workflows.flows.rotate_images:v9')


@pytest.fixture
def conn():
    return impl_memory.MemoryBackend().get_connection()


def test_a_new_job_records_the_current_factory(conn):
    workflow = base.get('rotate-images')
    _, detail = runner._logbook(conn, 'job-1', workflow)
    assert runner.factory_of(workflow, detail) == NEW
    # Read back as a resumed run sees it.
    _, again = runner._logbook(conn, 'job-1', workflow)
    assert again.meta['factory'] == NEW


def test_a_job_of_an_earlier_release_keeps_the_oldest_factory(conn):
    workflow = base.get('rotate-images')
    book = models.LogBook('job-2', uuid='job-2')
    detail = models.FlowDetail('rotate-images', uuid='job-2')
    detail.meta['workflow'] = 'rotate-images'      # no factory recorded
    book.add(detail)
    conn.save_logbook(book)
    _, found = runner._logbook(conn, 'job-2', workflow)
    assert runner.factory_of(workflow, found) == OLD
