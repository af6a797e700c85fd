"""Fuzzing the command line and the job parameters (hypothesis).

Every malformed input must give exit code 2, exactly one line on stderr,
no traceback, and no job in the store.  The CLI runs in-process (the same
``main()`` the console script calls) against a real SQLite store.
"""

import contextlib
import io
import string

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
import pytest

from octavia_workflows import workflow as flows_base
from octavia_workflows.cli import app

SELFTEST = {'steps', 'step_seconds', 'record_to', 'gate_after'}
WORKFLOWS = set(flows_base.names())

text = st.text(alphabet=string.printable.replace('\x0b', '').replace(
    '\x0c', ''), max_size=20)


@pytest.fixture(scope='module')
def conf(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('fuzz')
    path = tmp / 'ow.conf'
    path.write_text(f'[task_flow]\npersistence_connection = '
                    f'sqlite:///{tmp}/p.sqlite\n')
    return str(path)


def _run(conf, *argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = app.main(['--config-file', conf, *argv])
        except SystemExit as exc:
            code = exc.code
    return code, out.getvalue(), err.getvalue()


def _assert_rejected(conf, argv):
    code, _out, err = _run(conf, *argv)
    assert code == 2, (argv, code, err)
    assert 'Traceback' not in err, (argv, err)
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, (argv, err)
    code, out, _ = _run(conf, 'list', '--all', '-f', 'value', '-c', 'id')
    assert code == 0 and out.strip() == '', 'a job was posted'


fuzz = settings(max_examples=60, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


@fuzz
@given(name=text.filter(lambda n: n.strip() and n not in WORKFLOWS
                        and not n.startswith('-')))
def test_unknown_workflow_names(conf, name):
    _assert_rejected(conf, ['submit', name])


@fuzz
@given(key=st.text(alphabet=string.ascii_letters + '_', min_size=1,
                   max_size=12).filter(lambda k: k not in SELFTEST),
       value=text)
def test_unknown_parameters(conf, key, value):
    _assert_rejected(conf, ['submit', 'selftest', '--param',
                            f'{key}={value}'])


@fuzz
@given(key=st.sampled_from(['steps', 'step_seconds']),
       value=text.filter(lambda v: not _number(v)))
@example(key='step_seconds', value='nan')
@example(key='step_seconds', value='inf')
@example(key='step_seconds', value='1e309')
@example(key='steps', value='0')
@example(key='steps', value='99999999')
@example(key='steps', value='1e3')
def test_malformed_values(conf, key, value):
    _assert_rejected(conf, ['submit', 'selftest', '--param',
                            f'{key}={value}'])


@fuzz
@given(pair=text.filter(lambda p: '=' not in p or p.strip().startswith(
    '=')))
def test_malformed_assignments(conf, pair):
    _assert_rejected(conf, ['submit', 'selftest', '--param', pair])


@fuzz
@given(job=text.filter(lambda j: j.strip() and not j.startswith('-')),
       command=st.sampled_from(['show', 'wait', 'pause', 'resume',
                                'cancel', 'report']))
def test_unknown_job_ids(conf, job, command):
    _assert_rejected(conf, [command, job])


def _number(value):
    try:
        return float(value) >= 0
    except ValueError:
        return False
