"""Child processes of a sandbox: start with a PID file, stop by PID.

Every process is started in its own session (so its process group id is
its PID). The sandbox records each PID with the process's start time;
``stop`` only signals a PID whose start time still matches, so a PID that
was reused by an unrelated process after a crash is never touched.
"""

import contextlib
import os
from pathlib import Path
import signal
import subprocess
import time

ENV_DIR = "OW_SANDBOX_DIR"  # set for every child: the sandbox directory


def _state(pid):
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii",
                  errors="replace") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def alive(pid):
    """True if ``pid`` runs (a zombie counts as ended and is reaped)."""
    state = _state(pid)
    if state is None:
        return False
    if state in ("Z", "X"):
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)
        return False
    return True


def start_time(pid):
    """The start time of ``pid`` in clock ticks since boot (None if gone).

    A PID together with its start time identifies one process for good:
    a reused PID has a later start time.
    """
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii",
                  errors="replace") as fh:
            return int(fh.read().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def is_same(pid, started):
    """True if ``pid`` is still the process that started at ``started``."""
    return bool(pid) and started is not None and start_time(pid) == started


def spawn(argv, *, log_path, env, cwd, pid_path):
    """Start ``argv`` detached, output appended to ``log_path``."""
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log,
            stderr=subprocess.STDOUT, env=env, cwd=cwd,
            start_new_session=True, close_fds=True)
    Path(pid_path).write_text(f"{proc.pid}\n")
    return proc


def read_pid(pid_path):
    """The PID stored in ``pid_path`` or None."""
    try:
        return int(Path(pid_path).read_text().strip())
    except (OSError, ValueError):
        return None


def stop_pids(processes, timeout=15.0):
    """SIGTERM the process groups of ``processes`` ({pid: start time}) that
    are still those processes, wait up to ``timeout`` s, then SIGKILL what
    is left. Returns the PIDs that were signalled."""
    mine = [p for p, t in processes.items() if alive(p) and is_same(p, t)]
    for pid in mine:
        _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(alive(p) or _group_alive(p) for p in mine):
            return mine
        time.sleep(0.1)
    for pid in mine:
        _signal_group(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(alive(p) for p in mine):
        time.sleep(0.05)
    return mine


def _signal_group(pid, sig):
    # The process was started as a session leader: its group is its own
    # (octavia-worker's forked workers are in it too).
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except ProcessLookupError:
        pass
    except PermissionError:
        pass


def _group_alive(pgid):
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", encoding="ascii",
                      errors="replace") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[2] == str(pgid) and fields[0] not in ("Z", "X"):
            return True
    return False
