"""Running the real ``octavia-workflow`` console script in tests."""

import os
import shutil
import signal
import subprocess
import sys
import time

BIN = shutil.which('octavia-workflow', path=os.path.dirname(sys.executable))


def write_conf(path, **groups):
    """Write an oslo.config file from ``{group: {key: value}}``."""
    lines = []
    for group, values in groups.items():
        lines.append(f'[{group}]')
        for key, value in values.items():
            lines.append(f'{key} = {value}')
    path.write_text('\n'.join(lines) + '\n')
    return str(path)


def run(conf_path, *args, timeout=120, check=None, env=None):
    """Run the CLI; returns CompletedProcess (text)."""
    cmd = [BIN]
    if conf_path:
        cmd += ['--config-file', conf_path]
    cmd += list(args)
    full_env = dict(os.environ)
    full_env.update(env or {})
    proc = subprocess.run(cmd, capture_output=True, text=True,
                          timeout=timeout, env=full_env)
    if check is not None:
        assert proc.returncode == check, (
            f'{args}: rc={proc.returncode}\nstdout={proc.stdout}\n'
            f'stderr={proc.stderr}')
    return proc


def start(conf_path, *args, log=None, env=None):
    """Start the CLI as a background process (e.g. a conductor)."""
    cmd = [BIN, '--config-file', conf_path] + list(args)
    full_env = dict(os.environ)
    full_env.update(env or {})
    out = open(log, 'ab') if log else subprocess.DEVNULL
    # A shell's background job may ignore SIGINT; tests send real signals.
    return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                            env=full_env, preexec_fn=_default_signals)


def _default_signals():
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def poll_job(show, job_id, predicate, timeout=60, what='condition',
             interval=0.1):
    """``show(job_id)`` until ``predicate(job)``; returns that job.

    Fails the test with the last view after ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    job = None
    while time.monotonic() < deadline:
        job = show(job_id)
        if predicate(job):
            return job
        time.sleep(interval)
    raise AssertionError(f'{what} not reached in {timeout} s: {job}')
