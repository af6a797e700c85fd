"""Write the knobs file that the sandbox drivers re-read on every call.

Injection points are ``<driver>.<method>`` of the sandbox drivers, for
example ``compute.build``, ``compute.delete``, ``compute.get_amphora``,
``amphora.update_amphora_agent_config``, ``amphora.post_vip_plug``,
``network.plug_aap_port``; ``<driver>.*`` and ``*`` match several. Changes
take effect on the next driver call, without restarting anything.
"""

import json
import os
from pathlib import Path

FIELDS = ("image_id", "cached_zone", "compute_flavor", "lb_network_ip")


def read(path):
    """The current knobs (empty dict if none)."""
    try:
        return json.loads(Path(path).read_text()) or {}
    except FileNotFoundError:
        return {}


def write(path, knobs):
    """Replace the knobs atomically."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(knobs, indent=2, sort_keys=True))
    os.replace(tmp, path)
    return knobs


def update(path, delays=None, fail=None, amphora_fields=None, replace=False):
    """Merge (or with ``replace``, set) delays, failure probabilities and
    amphora field overrides; a value of None removes that key.

    ``delays``: {point: seconds | [low, high]}; ``fail``: {point:
    probability}; ``amphora_fields``: {field: value} for the fields in
    :data:`FIELDS`. Returns the resulting knobs.
    """
    knobs = {} if replace else read(path)
    for section, values in (("delays", delays), ("fail", fail),
                            ("amphora_fields", amphora_fields)):
        if values is None:
            continue
        if section == "amphora_fields":
            unknown = set(values) - set(FIELDS)
            if unknown:
                raise ValueError(f"unknown amphora field(s): "
                                 f"{', '.join(sorted(unknown))}")
        if section == "fail":
            for point, p in values.items():
                if p is not None and not 0 <= float(p) <= 1:
                    raise ValueError(f"fail[{point}] must be within 0..1")
        current = knobs.setdefault(section, {})
        for key, value in values.items():
            if value is None:
                current.pop(key, None)
            else:
                current[key] = value
    return write(path, knobs)


def clear(path):
    """Remove every knob."""
    write(path, {})


def parse_assignments(items, convert=float):
    """``["compute.build=3", "x=[1,2]"]`` -> ``{"compute.build": 3.0, ...}``;
    an empty value (``"compute.build="``) means remove."""
    result = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"expected KEY=VALUE, got {item!r}")
        if value == "":
            result[key] = None
        elif value.startswith("["):
            result[key] = [float(v) for v in json.loads(value)]
        else:
            result[key] = convert(value)
    return result
