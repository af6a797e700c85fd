"""The worked example of doc/writing-a-runbook.md: registered through a
real entry point, planned, crashed mid-run and resumed, exactly once."""

import pathlib
import re

import pytest
from stevedore import extension

from octavia_workflows import states, workflow
from unit import example_runbook, fakecloud

DOC = pathlib.Path(__file__).resolve().parents[2] / 'doc' / \
    'writing-a-runbook.md'


def test_the_guide_shows_the_example_as_it_is():
    blocks = re.findall(r'```python\n(.*?)```', DOC.read_text(), re.S)
    source = pathlib.Path(example_runbook.__file__).read_text()
    assert source in blocks, 'doc/writing-a-runbook.md shows another ' \
        'version of tests/unit/example_runbook.py'


@pytest.fixture
def registered(tmp_path, monkeypatch):
    """One entry point line, as the guide says (a dist-info on the path
    stands for the installed package)."""
    info = tmp_path / 'example_runbook-1.0.dist-info'
    info.mkdir()
    (info / 'METADATA').write_text('Metadata-Version: 2.1\n'
                                   'Name: example-runbook\nVersion: 1.0\n')
    (info / 'entry_points.txt').write_text(
        '[octavia_workflows.workflows]\n'
        'failover-loadbalancers = unit.example_runbook:WORKFLOW\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    extension.ExtensionManager.ENTRY_POINT_CACHE.clear()
    yield
    extension.ExtensionManager.ENTRY_POINT_CACHE.clear()


def test_plan_crash_and_resume_fail_over_each_exactly_once(
        registered, tmp_path, monkeypatch):
    fakecloud.fast(monkeypatch)
    assert 'failover-loadbalancers' in workflow.names()
    flow = workflow.get('failover-loadbalancers')
    assert flow is example_runbook.WORKFLOW
    cloud = fakecloud.Cloud()
    lbs = [cloud.add_lb('SINGLE'), cloud.add_lb('ACTIVE_STANDBY')]
    gone = fakecloud.new_id('lb')
    job = fakecloud.Harness(fakecloud.store(tmp_path), cloud, flow,
                            {'loadbalancers': ','.join(lbs + [gone]),
                             'concurrency': 2})
    plan = job.plan()
    assert [t.target for t in plan.targets] == lbs
    assert [(t.target, t.reason) for t in plan.skipped] == [
        (gone, 'load balancer not found')]
    # the process dies right after the first failover call, before it
    # was recorded; a fresh one continues from the records
    cloud.crash_point = 4
    crashes = sum(job.drive(item) for item in job.items())
    assert crashes == 1 and job.processes == 3
    assert dict(cloud.calls) == {lb: 1 for lb in lbs}
    for lb_id in lbs:
        row = job.records.get_target(job.job_id, lb_id)
        assert row['state'] == states.DONE
        before = set(row['details']['before']['amphorae'])
        after = set(row['details']['after']['amphorae'])
        assert before and after and not before & after
