"""Jobboard drivers, loaded by name through stevedore.

``fetch(conf)`` returns the driver named by ``[task_flow]
jobboard_backend_driver`` (entry points ``octavia_workflows.jobboards``).
"""

from octavia_workflows import exceptions

NAMESPACE = 'octavia_workflows.jobboards'


def fetch(conf, name='octavia-workflows'):
    """Load the configured jobboard driver (not yet connected).

    :raises ConfigError: no driver of that name is installed.
    """
    from stevedore import driver

    driver_name = conf.task_flow.jobboard_backend_driver
    try:
        mgr = driver.DriverManager(NAMESPACE, driver_name,
                                   invoke_on_load=True,
                                   invoke_args=(conf,),
                                   invoke_kwds={'name': name})
    except Exception as exc:
        raise exceptions.ConfigError(
            f'cannot load jobboard driver {driver_name!r}: {exc}') from exc
    return mgr.driver
