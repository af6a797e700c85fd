"""Running command templates: real processes (exit code, redacted
output tail, the process group killed on timeout, a missing program)."""

import sys

import pytest

from octavia_workflows import exceptions
from octavia_workflows.machinery import commands

pytestmark = pytest.mark.functional

SECRETS = {'db': 's3cr3t-pw'}


def test_run_captures_redacted_tail_and_exit_code():
    script = ('import sys\n'
              'for i in range(50): print("line", i)\n'
              'print("pw is s3cr3t-pw", file=sys.stderr)\n'
              'sys.exit(3)')
    cmd = commands.render(
        f'{sys.executable} -c {{script}} {{secret:db}}', {'script': script},
        SECRETS)
    result = commands.run(cmd, timeout=30)
    assert result.returncode == 3
    assert not result.ok
    lines = result.output.splitlines()
    assert len(lines) == commands.OUTPUT_LINES
    assert lines[-1] == 'pw is ***'
    assert 's3cr3t-pw' not in result.output
    assert result.summary() == 'exit 3: pw is ***'


def test_run_kills_the_process_group_on_timeout(tmp_path):
    cmd = commands.render('shell: sleep 30 & sleep 30; echo never', {}, {})
    result = commands.run(cmd, timeout=0.5)
    assert result.returncode is None
    assert result.seconds < 10
    assert result.summary() == 'timed out'


def test_run_of_a_missing_program_is_a_config_error():
    cmd = commands.render('/nonexistent/octavia-db-manage upgrade', {}, {})
    with pytest.raises(exceptions.ConfigError, match='cannot run'):
        commands.run(cmd, timeout=5)
