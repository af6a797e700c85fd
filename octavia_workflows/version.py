"""The installed version (from pbr metadata), loaded lazily."""


def version_string():
    try:
        from importlib import metadata

        return metadata.version('octavia-workflows')
    except Exception:
        return 'unknown'
