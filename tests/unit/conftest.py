"""The unit tier needs nothing and starts nothing.

A unit test that starts a process fails at once: tests that run
commands, the console script or a fresh interpreter belong in
``tests/functional``.
"""

import subprocess

import pytest


@pytest.fixture(autouse=True)
def no_processes(monkeypatch):
    def refuse(self, args, *rest, **kwargs):
        raise AssertionError(
            f'a unit test started a process ({args!r}): move it to '
            'tests/functional')

    monkeypatch.setattr(subprocess.Popen, '_execute_child', refuse)
