"""Loading configuration: defaults, errors, the sample generator hook."""

import pytest

from octavia_workflows import conf, exceptions
from octavia_workflows.conf import opts


def test_defaults():
    c = conf.load([])
    assert c.task_flow.jobboard_backend_namespace == 'octavia_workflows'
    assert c.task_flow.jobboard_enabled is False
    assert conf.persistence_url(c).startswith('sqlite:///')


def test_secrets_are_marked_secret():
    secret = {o.name for _, group in opts.list_opts() for o in group
              if o.secret}
    assert {'jobboard_backend_password', 'jobboard_redis_sentinel_password',
            'persistence_connection'} <= secret


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(exceptions.ConfigError, match='cannot read'):
        conf.load([str(tmp_path / 'missing.conf')])


@pytest.mark.parametrize('text, message', [
    ('[task_flow]\njobboard_backend_port = notaport\n', 'invalid'),
    ('[task_flow]\njobboard_enabled = perhaps\n', 'invalid'),
    ('[task_flow\n', 'invalid'),
    ('[task_flow]\njobboard_backend_namespace = octavia_jobboard\n',
     "Octavia's own conductors"),
    ('[task_flow]\njobboard_backend_driver = etcd_taskflow_driver\n',
     'invalid'),
])
def test_invalid_values(tmp_path, text, message):
    path = tmp_path / 'bad.conf'
    path.write_text(text)
    with pytest.raises(exceptions.ConfigError, match=message):
        conf.load([str(path)])


def test_sample_config_is_generated_from_list_opts(tmp_path):
    """etc/octavia-workflows.conf.sample matches oslo-config-generator's
    output for the current options (regenerate it when options change)."""
    import os

    from oslo_config import generator

    repo = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
    out = tmp_path / 'sample.conf'
    # oslo-config-generator's own main(), in this process.
    generator.main(['--config-file', os.path.join(
        repo, 'etc/oslo-config-generator/octavia-workflows.conf'),
        '--output-file', str(out)])
    with open(os.path.join(repo, 'etc/octavia-workflows.conf.sample')) as f:
        committed = f.read()
    assert out.read_text() == committed
