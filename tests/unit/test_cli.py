"""The command line in-process: the same ``main()`` the console script
calls, on a real SQLite store, with no process started.

The console script itself, run as a process and sent signals, is tested
in ``tests/functional/test_cli.py``.
"""

import contextlib
import io
import json
import logging
import pathlib
import re
import warnings

import pytest

from octavia_workflows.cli import app, progress

README = pathlib.Path(__file__).resolve().parents[2] / 'README.md'


@pytest.fixture
def conf(tmp_path):
    path = tmp_path / 'ow.conf'
    path.write_text(f'[task_flow]\npersistence_connection = '
                    f'sqlite:///{tmp_path}/p.sqlite\n')
    return str(path)


def cli(conf, *argv):
    """Run the CLI here: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    showwarning = warnings.showwarning
    try:
        with contextlib.redirect_stdout(out), \
                contextlib.redirect_stderr(err):
            try:
                code = app.main((['--config-file', conf] if conf else [])
                                + list(argv))
            except SystemExit as exc:
                code = 0 if exc.code is None else exc.code
    finally:
        # cliff adds a console handler on every run.
        root.handlers[:] = handlers
        root.setLevel(level)
        warnings.showwarning = showwarning
    return code, out.getvalue(), err.getvalue()


def _codes(text):
    return set(re.findall(r'(?:^|[:;] )(\d) ', ' '.join(text.split())))


def test_help_lists_every_exit_code_the_readme_lists():
    readme = README.read_text()
    section = readme.split('### Exit codes', 1)[1].split('\n#', 1)[0]
    documented = _codes(section)
    assert {'0', '1', '2', '3', '4'} <= documented
    code, out, _ = cli(None, '--help')
    assert code == 0
    listed = _codes(out.split('Exit codes:', 1)[1].split('\n\n', 1)[0])
    assert documented | {'5'} <= listed, out
    assert '5 the job paused itself (circuit breaker)' in ' '.join(
        out.split())


@pytest.mark.parametrize('argv, message', [
    (['sumbit', 'selftest'], "unknown command 'sumbit'; did you mean "
                             "submit?"),
    (['lsit'], "unknown command 'lsit'; did you mean list?"),
    (['db'], "unknown command 'db'; did you mean db upgrade?"),
    (['db', 'downgrade'], "unknown command 'db downgrade'; did you mean "
                          "db upgrade?"),
    (['frobnicate'], "unknown command 'frobnicate'"),
])
def test_unknown_command_is_one_line_on_stderr_exit_2(conf, argv, message):
    code, out, err = cli(conf, *argv)
    assert code == 2
    assert out == ''
    assert err.splitlines() == [
        f'octavia-workflow: error: {message} (see "octavia-workflow '
        f'--help")']


def test_list_says_when_no_job_is_unfinished(conf):
    code, out, _ = cli(conf, 'list')
    assert code == 0
    assert out.startswith('no unfinished jobs')
    assert 'list --all' in out and len(out.splitlines()) == 1
    assert cli(conf, 'list', '--all')[1] == 'no jobs\n'
    # machine-readable formats stay so
    assert json.loads(cli(conf, 'list', '-f', 'json')[1]) == []
    assert cli(conf, 'list', '-f', 'value', '-c', 'id')[1] == ''


def test_list_of_a_finished_job_with_all(conf):
    code, out, _ = cli(conf, 'submit', 'selftest', '--param', 'steps=1',
                       '--param', 'step_seconds=0', '-f', 'value', '-c',
                       'id')
    assert code == 0
    job_id = out.strip()
    assert cli(conf, 'list')[1].startswith('no unfinished jobs')
    code, out, _ = cli(conf, 'list', '--all', '-f', 'value', '-c', 'id')
    assert out.split() == [job_id]


def test_a_foreground_run_after_approval_reads_running_then_done(conf):
    code, out, err = cli(conf, 'submit', 'selftest', '--param', 'steps=2',
                         '--param', 'step_seconds=0', '--param',
                         'gate_after=1', '-f', 'value', '-c', 'id')
    assert code == 4, err
    job_id = out.strip()
    code, out, err = cli(conf, 'approve', job_id, '-f', 'value', '-c',
                         'state')
    assert code == 0 and out == 'SUCCESS\n', err
    events = [line for line in err.splitlines()
              if line.startswith('target ')]
    # step-1 finished before the approval: not reported again
    assert events == ['target step-2: RUNNING', 'target step-2: DONE (2/2)']


# -- progress -----------------------------------------------------------------


def _view(state, *targets, gate=None):
    return {'id': 'J', 'state': state, 'owner': 'o', 'reason': None,
            'gate': gate,
            'progress': {'total': len(targets),
                         'done': sum(t == 'DONE' for t in targets),
                         'failed': 0, 'skipped': 0, 'running': 0},
            'targets': [{'target': f't{n}', 'state': s, 'error': None}
                        for n, s in enumerate(targets, 1)]}


def test_a_target_seen_only_done_reads_running_first():
    running = set()
    first = _view('RUNNING', 'PENDING', 'PENDING')
    assert progress.events(None, first, running=running) == [
        'job J: RUNNING on o']
    second = _view('RUNNING', 'DONE', 'RUNNING')
    assert progress.events(first, second, running=running) == [
        'target t1: RUNNING', 'target t1: DONE (1/2)', 'target t2: RUNNING']
    third = _view('SUCCESS', 'DONE', 'DONE')
    assert progress.events(second, third, running=running) == [
        'target t2: DONE (2/2)', 'job J: SUCCESS']


def test_finished_before_the_run_is_not_reported_again():
    before = _view('PAUSED', 'DONE', 'PENDING')
    now = _view('RUNNING', 'DONE', 'DONE')
    assert progress.events(None, now, seen=before, running=set()) == [
        'job J: RUNNING on o', 'target t2: RUNNING', 'target t2: DONE (2/2)']


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def _screen(raw):
    """What a terminal shows: each line as last redrawn."""
    return [line.split('\r')[-1].replace('\033[K', '')
            for line in raw.split('\n')]


@pytest.mark.parametrize('tty', [True, False])
def test_log_records_never_land_inside_a_progress_line(tty):
    stream = _Terminal() if tty else io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter('%(levelname)s %(message)s'))
    log = logging.getLogger('octavia_workflows.test_progress')
    root = logging.getLogger()
    root.addHandler(handler)
    views = iter([_view('RUNNING', 'RUNNING', 'PENDING'),
                  _view('RUNNING', 'DONE', 'RUNNING'),
                  _view('SUCCESS', 'DONE', 'DONE')])

    def get_view():
        view = next(views)
        log.warning('a warning during the run')
        return view

    try:
        view, timed_out = progress.follow(get_view, stream=stream,
                                          interval=0)
    finally:
        root.removeHandler(handler)
    assert view['state'] == 'SUCCESS' and not timed_out
    assert handler.stream is stream
    screen = _screen(stream.getvalue())
    warnings = [line for line in screen if 'a warning' in line]
    assert warnings == ['WARNING a warning during the run'] * 3
    if tty:
        assert screen[-2].startswith('[') and 'SUCCESS' in screen[-2]
    else:
        assert 'target t2: DONE (2/2)' in screen
    assert screen[-1] == ''


def test_the_gate_and_its_answers_are_printed_on_a_terminal():
    stream = _Terminal()
    view, _ = progress.follow(
        lambda: _view('PAUSED', 'DONE', 'PENDING', gate='upgrade now'),
        stream=stream, interval=0)
    screen = _screen(stream.getvalue())
    assert screen[-3:] == [
        'approval needed: upgrade now',
        'answer with "octavia-workflow approve J" or "octavia-workflow '
        'reject J"', '']


def test_a_warning_during_a_command_is_one_log_line_on_stderr(conf,
                                                               monkeypatch):
    from octavia_workflows.cli import jobs

    take_action = jobs.List.take_action

    def warn_then_list(self, parsed_args):
        warnings.warn('the cloud answered slowly', UserWarning,
                      stacklevel=2)
        return take_action(self, parsed_args)

    monkeypatch.setattr(jobs.List, 'take_action', warn_then_list)
    code, out, err = cli(conf, 'list', '-f', 'json')
    assert code == 0 and json.loads(out) == []
    [line] = err.splitlines()
    assert line.endswith(' WARNING py.warnings UserWarning: the cloud '
                         'answered slowly')
