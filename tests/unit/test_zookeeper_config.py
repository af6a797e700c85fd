"""The ZooKeeper driver's configuration handling, without a server.

An ensemble's hosts become one kazoo hosts string; a TLS file that does
not exist is a ConfigError before any connection; kazoo's connection
warnings are counted (TLS refusals end connect() at once) and kept out
of the console until the first connection.  Against real servers:
tests/functional/test_zookeeper_production.py.
"""

import logging

import pytest

from octavia_workflows import conf as ow_conf
from octavia_workflows import exceptions
from octavia_workflows.engine import jobboard
from octavia_workflows.engine.jobboard.backends import impl_zookeeper


def _driver(tmp_path, **task_flow):
    lines = ['[task_flow]', 'jobboard_enabled = True',
             'jobboard_backend_driver = zookeeper_taskflow_driver']
    lines += [f'{k} = {v}' for k, v in task_flow.items()]
    path = tmp_path / 'zk.conf'
    path.write_text('\n'.join(lines) + '\n')
    return jobboard.fetch(ow_conf.load([str(path)]))


def test_every_ensemble_member_is_in_the_hosts_string(tmp_path):
    driver = _driver(tmp_path, jobboard_backend_port=2181,
                     jobboard_backend_hosts='zk1,zk2:2281,192.0.2.3')
    assert driver._hosts() == 'zk1:2181,zk2:2281,192.0.2.3:2181'
    assert driver.describe() == \
        'zookeeper://zk1:2181,zk2:2281,192.0.2.3:2181/octavia_workflows'


@pytest.mark.parametrize('key', ['ca', 'certfile', 'keyfile'])
def test_a_missing_tls_file_is_a_config_error(tmp_path, key):
    files = {k: tmp_path / f'{k}.pem' for k in ('ca', 'certfile', 'keyfile')}
    for name, path in files.items():
        if name != key:
            path.write_text('x')
    ssl = ','.join(f'{k}:{v}' for k, v in files.items())
    driver = _driver(tmp_path,
                     jobboard_zookeeper_ssl_options=f'use_ssl:true,{ssl}')
    with pytest.raises(exceptions.ConfigError) as info:
        driver.connect()
    message = str(info.value)
    assert f'jobboard_zookeeper_ssl_options {key}' in message
    assert str(files[key]) in message and '\n' not in message
    assert driver.client is None                # nothing was started


def test_connection_warnings_are_counted_and_quiet_until_connected(caplog):
    log = impl_zookeeper._ConnectionLog(logging.getLogger('kazoo.client'))
    caplog.set_level(logging.DEBUG, logger='kazoo.client')
    log.warning('Connection dropped: %s', 'socket connection error: '
                '[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed')
    log.warning('Connection dropped: %s', 'socket connection broken')
    assert log.tls_failures == 1
    assert log.last_error == 'socket connection broken'
    assert [r.levelno for r in caplog.records] == [logging.DEBUG] * 2
    log.quiet = False
    log.warning('Connection dropped: %s', 'socket connection broken')
    assert caplog.records[-1].levelno == logging.WARNING


def test_no_auth_in_any_operation_says_what_to_check(tmp_path):
    from kazoo import exceptions as kazoo_exc

    driver = _driver(tmp_path, jobboard_backend_hosts='zk1:2181')
    with pytest.raises(exceptions.BackendUnavailable) as info:
        with driver.translate('listing jobs'):
            raise kazoo_exc.NoAuthError()
    assert str(info.value) == (
        'jobboard zookeeper://zk1:2181/octavia_workflows: listing jobs '
        'failed: not authorised (check jobboard_backend_username and '
        'jobboard_backend_password)')
    with pytest.raises(exceptions.BackendUnavailable) as info:
        with driver.translate('listing jobs'):
            raise kazoo_exc.ConnectionLoss()
    assert 'not authorised' not in str(info.value)
