"""The conductor's preload imports the SDK and every installed workflow
(its flow factory too), and names a workflow that cannot be imported
(in a real interpreter, with a real broken entry point installed next
to ours).

A fresh interpreter per test: the functional tier."""

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.functional

SCRIPT = """
import logging, sys
logging.basicConfig(level=logging.WARNING, format='%(message)s')
from octavia_workflows.engine import conductor
assert 'openstack' not in sys.modules
conductor._preload()
print('openstack' in sys.modules,
      'octavia_workflows.flows.rotate_images' in sys.modules,
      'octavia_workflows.flows.rotate_images.flow' in sys.modules)
"""


def test_preload_imports_workflows_and_names_a_broken_one(tmp_path):
    dist = tmp_path / 'brokenwf-0.1.dist-info'
    dist.mkdir()
    (dist / 'METADATA').write_text(
        'Metadata-Version: 2.1\nName: brokenwf\nVersion: 0.1\n')
    (dist / 'entry_points.txt').write_text(
        '[octavia_workflows.workflows]\n'
        'broken-runbook = no_such_module_for_tests:WORKFLOW\n')
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    proc = subprocess.run([sys.executable, '-c', SCRIPT], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ['True', 'True', 'True']
    warnings = [line for line in proc.stderr.splitlines()
                if 'cannot be loaded' in line]
    assert len(warnings) == 1
    assert warnings[0].startswith('workflow broken-runbook cannot be loaded')
    assert 'no_such_module_for_tests' in warnings[0]
