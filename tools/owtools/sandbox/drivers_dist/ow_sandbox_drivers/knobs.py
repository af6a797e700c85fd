"""Fault and latency injection driven by ``<sandbox dir>/knobs.json``.

The file is re-read whenever its mtime or size changes, so a test changes
the behaviour of a running worker by rewriting the file (atomically). Its
format::

    {"delays": {"compute.build": 3.0, "amphora.*": [0.1, 0.3]},
     "fail": {"compute.build": 0.2},
     "amphora_fields": {"image_id": "...", "cached_zone": "az1",
                        "compute_flavor": "..."}}

Injection points are named ``<driver>.<method>`` (``compute.build``,
``amphora.update_amphora_agent_config``, ``network.plug_aap_port``...). A
key may also be ``<driver>.*`` or ``*``; the most specific key wins. A delay
is seconds, or ``[low, high]`` for a uniformly random delay. A failure is a
probability between 0 and 1.
"""

import json
import logging
import os
from pathlib import Path
import random
import threading
import time

LOG = logging.getLogger(__name__)

ENV_DIR = "OW_SANDBOX_DIR"
KNOBS_FILE = "knobs.json"


class InjectedFault(RuntimeError):
    """A failure injected by the sandbox at a driver call."""


def sandbox_dir():
    """The sandbox directory of this process, or None outside a sandbox."""
    value = os.environ.get(ENV_DIR)
    return Path(value) if value else None


class _KnobsFile:
    """The knobs file, cached by (mtime, size)."""

    def __init__(self, path):
        self.path = path
        self._key = None
        self._data = {}
        self._lock = threading.Lock()

    def get(self):
        try:
            st = os.stat(self.path)
            key = (st.st_mtime_ns, st.st_size, st.st_ino)
        except FileNotFoundError:
            return {}
        with self._lock:
            if key != self._key:
                try:
                    with open(self.path, encoding="utf-8") as fh:
                        self._data = json.load(fh) or {}
                except (OSError, ValueError) as exc:
                    LOG.warning("sandbox: ignoring unreadable %s: %s",
                                self.path, exc)
                self._key = key
            return self._data


_FILE = None
_FILE_LOCK = threading.Lock()


def current():
    """The current knobs as a dict (empty outside a sandbox)."""
    global _FILE
    base = sandbox_dir()
    if base is None:
        return {}
    with _FILE_LOCK:
        if _FILE is None or _FILE.path != base / KNOBS_FILE:
            _FILE = _KnobsFile(base / KNOBS_FILE)
    return _FILE.get()


def _lookup(table, point):
    if not isinstance(table, dict):
        return None
    if point in table:
        return table[point]
    group = point.split(".", 1)[0] + ".*"
    if group in table:
        return table[group]
    return table.get("*")


def _seconds(value):
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return random.uniform(float(value[0]), float(value[1]))
    return float(value or 0)


def hook(point):
    """Apply the configured delay, then maybe raise the configured fault."""
    knobs = current()
    if not knobs:
        return
    delay = _seconds(_lookup(knobs.get("delays"), point))
    if delay > 0:
        LOG.debug("sandbox: delaying %s by %.2fs", point, delay)
        time.sleep(delay)
    probability = float(_lookup(knobs.get("fail"), point) or 0)
    if probability > 0 and random.random() < probability:
        LOG.warning("sandbox: injected failure at %s", point)
        raise InjectedFault(f"sandbox: injected failure at {point}")


def amphora_fields():
    """Amphora fields the compute driver must report (may be empty)."""
    fields = current().get("amphora_fields")
    return fields if isinstance(fields, dict) else {}


def hooked(prefix, base):
    """Class decorator: give every public method of ``base`` that the class
    does not define itself a wrapper that calls :func:`hook` first."""

    def make(name, method):
        def wrapper(self, *args, **kwargs):
            hook(f"{prefix}.{name}")
            return method(self, *args, **kwargs)

        wrapper.__name__ = name
        wrapper.__qualname__ = f"{base.__name__}.{name}"
        wrapper.__doc__ = method.__doc__
        return wrapper

    def decorate(cls):
        names = set()
        for klass in base.__mro__:
            if klass is object:
                continue
            names.update(n for n, v in vars(klass).items()
                         if callable(v) and not n.startswith("_"))
        for name in sorted(names):
            if name in vars(cls):
                continue
            setattr(cls, name, make(name, getattr(base, name)))
        return cls

    return decorate
