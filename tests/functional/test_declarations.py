"""A runbook's declaration (its package) loads no TaskFlow engine parts.

Validating, planning and submitting a job do without TaskFlow's tasks,
flows and engines (a tenth of a second of every CLI command that loads a
runbook); only building a job's flow imports them (see
:func:`octavia_workflows.workflow.flow_names`).  Checked in a fresh
interpreter, where nothing else has imported them yet.
"""

import ast
import subprocess
import sys

import pytest

pytestmark = pytest.mark.functional

#: What the declarations must not load: TaskFlow's tasks, flows and
#: engines (and networkx, which its flows bring).
ENGINE_PARTS = ('taskflow.task', 'taskflow.atom', 'taskflow.patterns',
                'taskflow.engines', 'networkx')


def _loaded_after(code):
    """The engine parts loaded by a fresh interpreter after ``code``."""
    script = '\n'.join([
        'import sys',
        'from octavia_workflows import workflow',
        code,
        f'print(sorted(m for m in sys.modules if m.startswith('
        f'{ENGINE_PARTS!r})))'])
    out = subprocess.run([sys.executable, '-c', script], capture_output=True,
                         text=True, check=True).stdout
    return ast.literal_eval(out.strip().splitlines()[-1])


def test_runbook_declarations_load_no_taskflow_engine():
    load_all = ('names = workflow.names()\n'
                'assert len(names) >= 9, names\n'
                'for name in names:\n'
                '    workflow.get(name)')
    assert _loaded_after(load_all) == []
    # ...while building a flow does load them (so the check can fail)
    assert 'taskflow.task' in _loaded_after(
        load_all + '\nworkflow.get("selftest").load_factory()')
