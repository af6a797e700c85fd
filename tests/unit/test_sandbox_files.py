"""The sandbox's files in the user's home: clouds.yaml is given back as
it was, and nothing printed shows a password (tools/owtools/sandbox)."""

import pytest

from owtools.sandbox import cli, config
from owtools.sandbox.config import SandboxError

USER_FILE = '''# my clouds, with a comment
clouds:
  prod:
    auth:
      auth_url: https://keystone.example.com/v3
    region_name: RegionOne
'''
ENTRY = config.cloud_entry('http://127.0.0.1:19876')


@pytest.fixture
def user(tmp_path):
    path = tmp_path / 'home' / 'clouds.yaml'
    path.parent.mkdir()
    return path


def test_stop_gives_the_user_file_back_byte_for_byte(tmp_path, user):
    user.write_text(USER_FILE)
    keep = tmp_path / 'keep'
    path, written = config.merge_user_cloud('sandbox', ENTRY, path=user,
                                            keep=keep)
    data = config._load(user)
    assert set(data['clouds']) == {'prod', 'sandbox'}
    assert config.restore_user_cloud('sandbox', ENTRY[
        'load_balancer_endpoint_override'], path, written, keep)
    assert user.read_text() == USER_FILE


def test_a_file_start_created_is_removed(tmp_path, user):
    keep = tmp_path / 'keep'
    path, written = config.merge_user_cloud('sandbox', ENTRY, path=user,
                                            keep=keep)
    assert config.restore_user_cloud('sandbox', 'x', path, written, keep)
    assert not user.exists()


def test_an_edited_file_loses_only_the_sandbox_entry(tmp_path, user):
    user.write_text(USER_FILE)
    keep = tmp_path / 'keep'
    path, written = config.merge_user_cloud('sandbox', ENTRY, path=user,
                                            keep=keep)
    data = config._load(user)
    data['clouds']['staging'] = {'auth_type': 'password'}
    user.write_text(config.yaml.safe_dump(data))
    assert config.restore_user_cloud(
        'sandbox', ENTRY['load_balancer_endpoint_override'], path, written,
        keep)
    assert set(config._load(user)['clouds']) == {'prod', 'staging'}


def test_a_cloud_of_the_users_own_is_never_replaced(user):
    user.write_text(USER_FILE.replace('prod:', 'sandbox:'))
    with pytest.raises(SandboxError, match='not a sandbox'):
        config.merge_user_cloud('sandbox', ENTRY, path=user)
    assert user.read_text() == USER_FILE.replace('prod:', 'sandbox:')


def test_an_old_sandbox_entry_is_replaced(tmp_path, user):
    user.write_text(config.yaml.safe_dump(
        {'clouds': {'sandbox': config.cloud_entry('http://127.0.0.1:1')}}))
    config.merge_user_cloud('sandbox', ENTRY, path=user)
    assert config._load(user)['clouds']['sandbox'] == ENTRY


@pytest.mark.parametrize('url, shown', [
    ('mysql+pymysql://octavia:s3cr3t@127.0.0.1:3306/octavia',
     'mysql+pymysql://octavia:***@127.0.0.1:3306/octavia'),
    ('rabbit://guest:guest@127.0.0.1:5672/', 'rabbit://guest:***@127.0.0.1:5672/'),
    ('sqlite:////tmp/x.sqlite', 'sqlite:////tmp/x.sqlite'),
    (None, None),
])
def test_printed_urls_mask_passwords(url, shown):
    assert cli.masked(url) == shown
