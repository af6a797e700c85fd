"""The CLI contract on the embedded defaults (SQLite, jobboard disabled).

These run the real console script as a subprocess, against a real
SQLite persistence file, and send it real signals: no services needed,
but processes, so this is the functional tier (the in-process checks of
the same commands are in ``tests/unit/test_cli.py``).
"""

import json
import signal
import subprocess
import sys
import time

from clihelp import run, start, write_conf
import pytest

pytestmark = pytest.mark.functional


@pytest.fixture
def conf(tmp_path):
    return write_conf(tmp_path / 'ow.conf', task_flow={
        'persistence_connection': f'sqlite:///{tmp_path}/p.sqlite',
        'jobboard_expiration_time': 2})


def test_help_does_not_import_heavy_libraries():
    code = ('import sys\n'
            'from octavia_workflows.cli import app\n'
            'try:\n    app.main(["--help"])\nexcept SystemExit:\n    pass\n'
            'heavy = [m for m in ("taskflow", "openstack", "redis", "kazoo",'
            ' "sqlalchemy") if m in sys.modules]\n'
            'print("HEAVY", heavy)\n')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True,
                         text=True, check=True).stdout
    assert 'HEAVY []' in out
    assert 'submit' in out and 'conductor' in out


def test_subcommand_help_explains_parameters(conf):
    proc = run(conf, 'help', 'submit', check=0)
    assert '--dry-run' in proc.stdout and 'KEY=VALUE' in proc.stdout


def test_flows_lists_parameters_with_types_and_defaults(conf):
    proc = run(conf, 'flows', '-f', 'json', check=0)
    flows = {f['name']: f for f in json.loads(proc.stdout)}
    params = {p['name']: p for p in flows['selftest']['parameters']}
    assert params['steps']['type'] == 'int'
    assert params['steps']['default'] == 5


def test_submit_runs_inline_and_show_has_documented_fields(conf, tmp_path):
    record = tmp_path / 'steps.txt'
    proc = run(conf, 'submit', 'selftest', '--param', 'steps=3',
               '--param', 'step_seconds=0', '--param',
               f'record_to={record}', '-f', 'value', '-c', 'id', check=0)
    job_id = proc.stdout.strip()
    assert len(job_id) == 36
    lines = record.read_text().splitlines()
    assert lines == [f'{job_id} {n}' for n in (1, 2, 3)]
    show = json.loads(run(conf, 'show', job_id, '-f', 'json',
                          check=0).stdout)
    for field in ('id', 'workflow', 'state', 'owner', 'parameters',
                  'created_at', 'updated_at', 'progress', 'targets'):
        assert field in show
    assert show['state'] == 'SUCCESS'
    assert show['progress'] == {'total': 3, 'done': 3, 'failed': 0,
                                'skipped': 0, 'running': 0}
    assert [t['state'] for t in show['targets']] == ['DONE'] * 3
    for target in show['targets']:
        assert set(target) >= {'target', 'state', 'attempts', 'started_at',
                               'finished_at', 'error'}
    listed = json.loads(run(conf, 'list', '--all', '-f', 'json',
                            check=0).stdout)
    assert [j['id'] for j in listed] == [job_id]
    assert listed[0]['progress'] == '3/3'
    assert json.loads(run(conf, 'list', '-f', 'json', check=0).stdout) == []
    report = run(conf, 'report', job_id, '-f', 'csv', check=0).stdout
    assert report.splitlines()[0].startswith('"target","action","state"')


def test_dry_run_posts_nothing(conf):
    proc = run(conf, 'submit', 'selftest', '--dry-run', '--param', 'steps=4',
               '-f', 'json', check=0)
    plan = json.loads(proc.stdout)
    assert [t['target'] for t in plan['targets']] == [
        'step-1', 'step-2', 'step-3', 'step-4']
    assert json.loads(run(conf, 'list', '--all', '-f', 'json',
                          check=0).stdout) == []


def test_interrupted_inline_run_resumes_exactly_once(conf, tmp_path):
    record = tmp_path / 'steps.txt'
    proc = start(conf, 'submit', 'selftest', '--param', 'steps=6',
                 '--param', 'step_seconds=0.5', '--param',
                 f'record_to={record}', log=str(tmp_path / 'submit.log'))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if record.exists() and len(record.read_text().splitlines()) >= 2:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    job_id = record.read_text().split()[0]
    # The dead run's heartbeat is still fresh: resume refuses at first
    # (unless the machine was slow enough for it to go stale already:
    # then that first resume ran the job to its end).
    early = run(conf, 'resume', job_id)
    if early.returncode == 2:
        assert 'is running on' in early.stderr
        time.sleep(2.5)
        run(conf, 'resume', job_id, check=0)
    else:
        assert early.returncode == 0, early.stderr
    steps = [int(line.split()[1]) for line in
             record.read_text().splitlines()]
    assert sorted(set(steps)) == [1, 2, 3, 4, 5, 6]
    duplicates = [s for s in set(steps) if steps.count(s) > 1]
    assert len(duplicates) <= 1
    show = json.loads(run(conf, 'show', job_id, '-f', 'json',
                          check=0).stdout)
    assert show['state'] == 'SUCCESS'


def test_sigint_pauses_an_inline_run(conf, tmp_path):
    proc = start(conf, 'submit', 'selftest', '--param', 'steps=20',
                 '--param', 'step_seconds=0.3')
    time.sleep(3)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=20) == 1
    jobs = json.loads(run(conf, 'list', '-f', 'json', check=0).stdout)
    assert len(jobs) == 1 and jobs[0]['state'] == 'PAUSED'
    show = json.loads(run(conf, 'show', jobs[0]['id'], '-f', 'json',
                          check=0).stdout)
    assert 'resume' in show['reason']
    assert show['progress']['done'] < 20


@pytest.mark.parametrize('args, message', [
    (['submit', 'nosuch'], 'unknown workflow'),
    (['submit', 'selftset'], 'did you mean selftest'),
    (['submit', 'selftest', '--param', 'steps'], 'expected KEY=VALUE'),
    (['submit', 'selftest', '--param', 'steps=two'], 'not a valid int'),
    (['submit', 'selftest', '--param', 'bogus=1'], 'unknown parameter'),
    (['submit', 'selftest', '--bogus-flag'], 'unrecognized arguments'),
    (['submit'], 'required'),
    (['show', 'no-such-job'], 'no job with id'),
    (['report', 'no-such-job'], 'no job with id'),
    (['wait', 'no-such-job'], 'no job with id'),
    (['pause', 'no-such-job'], 'no job with id'),
    (['resume', 'no-such-job'], 'no job with id'),
    (['cancel', 'no-such-job'], 'no job with id'),
    (['purge'], 'required'),
    (['purge', '--older-than', 'x'], 'invalid float'),
    (['purge', '--older-than', '-1'], '>= 0'),
    (['wait', 'x', '--timeout', 'soon'], 'invalid float'),
    (['conductor'], 'jobboard_enabled'),
    (['conductor', '--workers', 'many'], 'invalid int'),
])
def test_bad_input_is_one_line_exit_2_and_posts_nothing(conf, args,
                                                        message):
    proc = run(conf, *args)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert message in lines[0]
    assert 'Traceback' not in proc.stderr
    listed = json.loads(run(conf, 'list', '--all', '-f', 'json',
                            check=0).stdout)
    assert listed == []


@pytest.mark.parametrize('text, message', [
    ('[task_flow]\njobboard_backend_port = 99999\n', 'invalid configuration'),
    ('[task_flow]\npersistence_connection = nosuchdb://x\n', 'persistence'),
])
def test_bad_config_exit_2(tmp_path, text, message):
    path = tmp_path / 'bad.conf'
    path.write_text(text)
    proc = run(str(path), 'list')
    assert proc.returncode == 2
    assert message in proc.stderr and 'Traceback' not in proc.stderr


def test_missing_config_file_exit_2(tmp_path):
    proc = run(str(tmp_path / 'nope.conf'), 'list')
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        f'octavia-workflow: error: cannot read config file '
        f'{tmp_path}/nope.conf')


def test_unreachable_jobboard_posts_nothing(tmp_path):
    conf = write_conf(tmp_path / 'ow.conf', task_flow={
        'persistence_connection': f'sqlite:///{tmp_path}/p.sqlite',
        'jobboard_enabled': True, 'jobboard_backend_port': 1})
    proc = run(conf, 'submit', 'selftest')
    assert proc.returncode == 2
    assert 'unreachable' in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert json.loads(run(conf, 'list', '--all', '-f', 'json',
                          check=0).stdout) == []


def test_unreachable_database_exit_2(tmp_path):
    conf = write_conf(tmp_path / 'ow.conf', task_flow={
        'persistence_connection':
            'mysql+pymysql://ow:secretpw@127.0.0.1:1/octavia_persistence'})
    proc = run(conf, 'list')
    assert proc.returncode == 2
    assert 'unreachable' in proc.stderr
    assert 'secretpw' not in proc.stderr


def test_db_upgrade_is_idempotent(conf):
    first = run(conf, 'db', 'upgrade', check=0)
    second = run(conf, 'db', 'upgrade', check=0)
    assert 'current' in first.stdout and first.stdout == second.stdout


def test_purge_removes_finished_jobs(conf):
    run(conf, 'submit', 'selftest', '--param', 'steps=1', '--param',
        'step_seconds=0', check=0)
    kept = run(conf, 'purge', '--older-than', '1', '-f', 'value', check=0)
    assert kept.stdout.strip() == ''
    gone = run(conf, 'purge', '--older-than', '0', '-f', 'value', check=0)
    assert len(gone.stdout.split()) == 1
    assert json.loads(run(conf, 'list', '--all', '-f', 'json',
                          check=0).stdout) == []


def test_no_args_prints_help():
    proc = subprocess.run([sys.executable, '-m', 'octavia_workflows.cmd.cli'],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.lower().startswith('usage: octavia-workflow')
    assert 'submit' in proc.stdout


def test_output_formats_compose_like_openstackclient(conf, tmp_path):
    job_id = run(conf, 'submit', 'selftest', '--param', 'steps=2',
                 '--param', 'step_seconds=0', '-f', 'value', '-c', 'id',
                 check=0).stdout.strip()
    assert run(conf, 'show', job_id, '-f', 'value', '-c', 'state',
               check=0).stdout == 'SUCCESS\n'
    csv_out = run(conf, 'show', job_id, '-f', 'csv', '-c', 'id', '-c',
                  'state', check=0).stdout.splitlines()
    assert csv_out == ['"id","state"', f'"{job_id}","SUCCESS"']
    shown = json.loads(run(conf, 'show', job_id, '-f', 'json',
                           check=0).stdout)
    assert shown['progress']['done'] == 2
    assert 'state: SUCCESS' in run(conf, 'show', job_id, '-f', 'yaml',
                                   check=0).stdout
    ids = run(conf, 'list', '--all', '-f', 'value', '-c', 'id',
              check=0).stdout.split()
    assert ids == [job_id]
    rows = run(conf, 'report', job_id, '-f', 'csv', '-c', 'target', '-c',
               'state', check=0).stdout.splitlines()
    assert rows == ['"target","state"', '"step-1","DONE"', '"step-2","DONE"']
    report = json.loads(run(conf, 'report', job_id, '-f', 'json',
                            check=0).stdout)
    assert [r['attempts'] for r in report] == [1, 1]
    proc = run(conf, 'show', job_id, '-f', 'xml')
    assert proc.returncode == 2 and len(proc.stderr.splitlines()) == 1


def test_non_tty_progress_is_one_line_per_event(conf):
    proc = run(conf, 'submit', 'selftest', '--param', 'steps=2',
               '--param', 'step_seconds=0', '--wait', check=0)
    events = proc.stderr.splitlines()
    assert events[0].startswith('job ') and ': RUNNING on ' in events[0]
    assert 'target step-1: DONE (1/2)' in events
    assert 'target step-2: DONE (2/2)' in events
    assert events[-1].endswith(': SUCCESS')
    assert not any('\r' in line or '\x1b' in line for line in events)


def test_dry_run_honours_columns(conf):
    proc = run(conf, 'submit', 'selftest', '--param', 'steps=2',
               '--dry-run', '-f', 'value', '-c', 'target', check=0)
    assert proc.stdout.split() == ['step-1', 'step-2']
    proc = run(conf, 'submit', 'selftest', '--dry-run', '-c', 'nope')
    assert proc.returncode == 2 and "no plan column 'nope'" in proc.stderr


def test_version_names_the_program():
    proc = subprocess.run([sys.executable, '-m', 'octavia_workflows.cmd.cli',
                           '--version'], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith('octavia-workflow ')
