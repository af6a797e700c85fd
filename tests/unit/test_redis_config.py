"""The Redis driver's configuration handling, without a server.

Host entries may carry their own port (sentinels on one host), the
description says Sentinel or TLS and never holds a password, and a TLS
file that cannot be read or a malformed host entry is a ConfigError
before any connection.  Against real servers:
tests/functional/test_redis_production.py.
"""

import pytest

from octavia_workflows import conf as ow_conf
from octavia_workflows import exceptions
from octavia_workflows.engine import jobboard
from octavia_workflows.engine.jobboard.backends import impl_redis


def _driver(tmp_path, **task_flow):
    lines = ['[task_flow]', 'jobboard_enabled = True',
             'jobboard_backend_driver = redis_taskflow_driver',
             'jobboard_backend_password = data-secret',
             'jobboard_redis_sentinel_password = sentinel-secret']
    lines += [f'{k} = {v}' for k, v in task_flow.items()]
    path = tmp_path / 'redis.conf'
    path.write_text('\n'.join(lines) + '\n')
    return jobboard.fetch(ow_conf.load([str(path)]))


@pytest.mark.parametrize('entry, expected', [
    ('redis1', ('redis1', 26379)),
    ('redis2:26380', ('redis2', 26380)),
    ('192.0.2.3', ('192.0.2.3', 26379)),
    ('[2001:db8::1]:26381', ('2001:db8::1', 26381)),
    ('[2001:db8::2]', ('2001:db8::2', 26379)),
    ('2001:db8::3', ('2001:db8::3', 26379)),
])
def test_host_entries(entry, expected):
    assert impl_redis.endpoint(entry, 26379) == expected


@pytest.mark.parametrize('entry', ['redis1:', 'redis1:port', ':6379',
                                   'redis1:70000', '[::1]:x'])
def test_bad_host_entries_are_config_errors(entry):
    with pytest.raises(exceptions.ConfigError) as info:
        impl_redis.endpoint(entry, 6379)
    assert 'jobboard_backend_hosts' in str(info.value)


def test_sentinel_description(tmp_path):
    driver = _driver(tmp_path, jobboard_backend_port=26379,
                     jobboard_redis_sentinel='mymaster',
                     jobboard_backend_hosts='s1,s2:26380,[2001:db8::1]')
    text = driver.describe()
    assert text == ('redis+sentinel://mymaster@s1:26379,s2:26380,'
                    '[2001:db8::1]:26379/0')
    assert 'secret' not in text


def test_tls_description(tmp_path):
    driver = _driver(tmp_path, jobboard_backend_port=6380,
                     jobboard_backend_hosts='redis1',
                     jobboard_redis_backend_ssl_options='ssl:true')
    assert driver.describe() == 'rediss://redis1:6380/0'


@pytest.mark.parametrize('key', ['ssl_ca_certs', 'ssl_certfile',
                                 'ssl_keyfile'])
@pytest.mark.parametrize('group', ['jobboard_redis_backend_ssl_options',
                                   'jobboard_redis_sentinel_ssl_options'])
def test_an_unreadable_tls_file_is_a_config_error(tmp_path, key, group):
    missing = tmp_path / 'missing.pem'
    driver = _driver(tmp_path, jobboard_backend_hosts='127.0.0.1:1',
                     jobboard_redis_sentinel='mymaster',
                     **{group: f'ssl:true,{key}:{missing}'})
    with pytest.raises(exceptions.ConfigError) as info:
        driver.connect()
    assert str(info.value) == (f'[task_flow] {group} {key}: cannot read '
                               f'{missing}')


def test_tls_files_are_only_checked_with_ssl_on(tmp_path):
    missing = tmp_path / 'missing.pem'
    driver = _driver(tmp_path, jobboard_backend_hosts='127.0.0.1:1',
                     jobboard_redis_backend_ssl_options=(
                         f'ssl:false,ssl_ca_certs:{missing}'))
    with pytest.raises(exceptions.BackendUnavailable):
        driver.connect()


def test_unreachable_sentinels_are_one_line(tmp_path):
    driver = _driver(tmp_path, jobboard_redis_sentinel='mymaster',
                     jobboard_backend_hosts='127.0.0.1:1,127.0.0.1:2')
    with pytest.raises(exceptions.BackendUnavailable) as info:
        driver.connect()
    assert str(info.value) == (
        'jobboard redis+sentinel://mymaster@127.0.0.1:1,127.0.0.1:2/0: '
        'no primary: sentinels 127.0.0.1:1, 127.0.0.1:2: Connection '
        'refused.')
