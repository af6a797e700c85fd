"""The installed version (from pbr metadata), loaded lazily."""


def version_string():
    try:
        from importlib import metadata

        return metadata.version('octavia-workflows')
    except Exception:  # noqa: BLE001 - running from a bare checkout
        return 'unknown'
