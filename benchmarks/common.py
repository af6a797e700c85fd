"""What the benchmark scripts share: a private sandbox, figures, JSON.

Each benchmark prints a table and writes its figures as JSON into
``benchmarks/results/<name>.json`` (with the machine they came from).
They measure; they do not pass or fail.
"""

import contextlib
import json
import os
import pathlib
import platform
import subprocess
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / 'tools'))

from owtools import services  # noqa: E402
from owtools.sandbox import Sandbox  # noqa: E402

BIN = str(pathlib.Path(sys.executable).parent / 'octavia-workflow')


def machine():
    """The facts that make figures comparable."""
    mem = 0
    with contextlib.suppress(OSError):
        with open('/proc/meminfo', encoding='ascii') as handle:
            mem = int(handle.readline().split()[1]) // 1024
    model = ''
    with contextlib.suppress(OSError):
        with open('/proc/cpuinfo', encoding='ascii') as handle:
            for line in handle:
                if line.startswith('model name'):
                    model = line.split(':', 1)[1].strip()
                    break
    return {'cpus': os.cpu_count(), 'cpu_model': model, 'mem_mib': mem,
            'python': platform.python_version(),
            'system': platform.platform()}


def write_results(name, figures):
    out = HERE / 'results'
    out.mkdir(exist_ok=True)
    path = out / f'{name}.json'
    path.write_text(json.dumps({'benchmark': name, 'machine': machine(),
                                'when': time.strftime('%Y-%m-%dT%H:%M:%SZ',
                                                      time.gmtime()),
                                'figures': figures}, indent=2))
    print(f'\nfigures written to {path}')
    return path


def table(rows, headers):
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows))
              for i, h in enumerate(headers)]
    line = '  '.join(f'{{:>{w}}}' for w in widths)
    print(line.format(*headers))
    for row in rows:
        print(line.format(*row))


@contextlib.contextmanager
def sandbox(name='bench'):
    """A private sandbox (own MariaDB and RabbitMQ) in a temporary dir."""
    with tempfile.TemporaryDirectory(prefix=f'ow-{name}-') as tmp:
        tmp = pathlib.Path(tmp)
        db = services.MariaDBServer(tmp / 'mariadb').start()
        box = Sandbox(name, directory=tmp / 'sandbox')
        try:
            box.start(db_url=db.create_database('octavia'),
                      user_clouds=False)
            yield box, db, tmp
        finally:
            box.stop(quiet=True)
            db.stop()


def write_conf(path, **groups):
    lines = []
    for group, values in groups.items():
        lines.append(f'[{group}]')
        lines += [f'{k} = {v}' for k, v in values.items()]
    path.write_text('\n'.join(lines) + '\n')
    return str(path)


def board_conf(path, redis, persistence):
    """The configuration the sandbox benchmarks run a conductor with: a
    Redis jobboard (claim expiry 10 s, logbooks kept for counting),
    ``persistence`` as the store, a 0.5 s poll."""
    return write_conf(path, task_flow={
        'persistence_connection': persistence,
        'jobboard_enabled': True,
        'jobboard_backend_driver': 'redis_taskflow_driver',
        'jobboard_backend_hosts': '127.0.0.1',
        'jobboard_backend_port': redis.port,
        'jobboard_backend_password': redis.password,
        'jobboard_expiration_time': 10,
        'jobboard_save_logbook': True},
        conductor={'poll_interval': 0.5})


def cli(conf, *args, env=None, timeout=3600):
    """Run the CLI; returns (CompletedProcess, seconds, peak RSS MiB)."""
    cmd = ['/usr/bin/time', '-f', '%M', BIN, '--config-file', conf, *args]
    started = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True,
                          timeout=timeout, env=dict(os.environ, **(env or {})))
    seconds = time.monotonic() - started
    lines = proc.stderr.strip().splitlines()
    rss = int(lines[-1]) / 1024 if lines and lines[-1].isdigit() else None
    if lines and lines[-1].isdigit():
        proc.stderr = '\n'.join(lines[:-1])
    return proc, seconds, rss
