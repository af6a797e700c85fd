"""Command templates: rendering, quoting, redaction; and the
cold-upgrade settings built from them.  (Running them starts processes:
``tests/functional/test_commands.py``.)"""

import pytest

from octavia_workflows import exceptions
from octavia_workflows.conf import load
from octavia_workflows.flows import cold_upgrade as cu
from octavia_workflows.machinery import commands

SECRETS = {'db': 's3cr3t-pw'}


def test_argv_mode_substitutes_inside_single_arguments():
    cmd = commands.render('ssh {host} systemctl stop octavia-{service}',
                          {'host': 'ctl1; rm -rf /', 'service': 'api'}, {})
    assert cmd.argv == ('ssh', 'ctl1; rm -rf /', 'systemctl', 'stop',
                        'octavia-api')
    assert not cmd.shell
    assert cmd.display == "ssh 'ctl1; rm -rf /' systemctl stop octavia-api"


def test_other_braces_are_left_alone():
    cmd = commands.render("awk '{print $1}' {job_id}", {'job_id': 'J'}, {})
    assert cmd.argv == ('awk', '{print $1}', 'J')


def test_shell_mode_quotes_values_and_masks_secrets():
    cmd = commands.render(
        'shell: mysqldump --password={secret:db} octavia > {backup_file}',
        {'backup_file': '/tmp/a b.sql'}, SECRETS)
    assert cmd.shell
    assert cmd.argv[:2] == ('/bin/sh', '-c')
    assert cmd.argv[2] == ("mysqldump --password=s3cr3t-pw octavia > "
                           "'/tmp/a b.sql'")
    assert 's3cr3t-pw' not in cmd.display
    assert cmd.display == ('shell: mysqldump --password=*** octavia > '
                           '/tmp/a b.sql')
    assert 's3cr3t-pw' not in repr(cmd)


def test_secret_inside_an_argument_is_masked_in_display():
    cmd = commands.render('mysql -u root -p{secret:db} -e {job_id}',
                          {'job_id': 'x'}, SECRETS)
    assert '-ps3cr3t-pw' in cmd.argv
    assert cmd.display == 'mysql -u root -p*** -e x'


@pytest.mark.parametrize('template, message', [
    ('', 'empty'),
    ('shell:  ', 'empty'),
    ('echo {hots}', 'unknown placeholder {hots}'),
    ('echo {secret:nope}', '{secret:nope} is not defined'),
    ("echo 'unbalanced", 'quotation'),
])
def test_bad_templates_raise_config_error(template, message):
    with pytest.raises(exceptions.ConfigError, match=message):
        commands.render(template, {'host': 'h'}, SECRETS, what='[g] opt')


@pytest.mark.parametrize('text, expected', [
    ('mysqldump --password=hunter2 x', 'mysqldump --password=*** x'),
    ('mysqldump --password hunter2 x', 'mysqldump --password *** x'),
    ('PGPASSWORD=hunter2 pg_dump', 'PGPASSWORD=*** pg_dump'),
    ('mysql+pymysql://octavia:hunter2@db/octavia',
     'mysql+pymysql://octavia:***@db/octavia'),
    ("CREATE USER x IDENTIFIED BY 'hunter2'",
     'CREATE USER x IDENTIFIED BY ***'),
    ('token=abc&x=1', 'token=***&x=1'),
    ('nothing secret here -p 22', 'nothing secret here -p 22'),
])
def test_redact_patterns(text, expected):
    assert commands.redact(text) == expected


def test_redact_configured_values_anywhere():
    assert commands.redact('error: s3cr3t-pw rejected', ['s3cr3t-pw']) == \
        'error: *** rejected'


# -- cold-upgrade settings ---------------------------------------------------


def _conf(tmp_path, **values):
    lines = ['[cold_upgrade]'] + [f'{k} = {v}' for k, v in values.items()]
    path = tmp_path / 'ow.conf'
    path.write_text('\n'.join(lines) + '\n')
    return load([str(path)])


def test_defaults_are_systemctl_on_one_controller(tmp_path):
    settings = cu.Settings(_conf(tmp_path), {'backup': False})
    steps = cu.steps(settings, {'backup': False})
    names = [s[0] for s in steps]
    assert names == [
        'preflight', 'stop:housekeeping@localhost',
        'stop:health-manager@localhost', 'stop:api@localhost',
        'stop:worker@localhost', cu.GATE_TARGET, 'db-upgrade',
        'start:worker@localhost', 'start:api@localhost',
        'start:health-manager@localhost', 'start:housekeeping@localhost',
        'wait-api']
    cmd = cu.command_for(settings, 'stop', steps[3][2], 'J')
    assert cmd.argv == ('systemctl', 'stop', 'octavia-api')


def test_several_controllers_need_host_in_service_commands(tmp_path):
    conf = _conf(tmp_path, controllers='ctl1,ctl2')
    with pytest.raises(exceptions.ConfigError,
                       match='housekeeping_stop_command has no {host}'):
        cu.Settings(conf, {'backup': False})


def test_service_major_order_and_backup_file(tmp_path):
    templates = {f'{s}_{v}_command': f'ssh {{host}} systemctl {v} {s}'
                 for s in cu.SERVICES for v in ('stop', 'start')}
    templates['housekeeping_start_command'] = ''
    conf = _conf(
        tmp_path, controllers='ctl1,ctl2', **templates,
        backup_command='shell: mysqldump -p{secret:db} octavia > '
        '{backup_file}',
        backup_file='/var/b/octavia-{job_id}.sql', secrets='db:pw1')
    params = {'backup': True, 'image_file': '/x', 'rotate': True}
    settings = cu.Settings(conf, params)
    names = [s[0] for s in cu.steps(settings, params)]
    assert names[1:5] == ['stop:housekeeping@ctl1', 'stop:housekeeping@ctl2',
                          'stop:health-manager@ctl1',
                          'stop:health-manager@ctl2']
    assert names[9:11] == ['backup', cu.GATE_TARGET]
    assert names[-3:] == ['wait-api', 'image', 'rotate']
    backup = cu.command_for(settings, 'backup', {}, 'J1')
    assert backup.display == ('shell: mysqldump -p*** octavia > '
                              '/var/b/octavia-J1.sql')
    assert 'pw1' in backup.argv[2]
    skipped = cu.command_for(settings, 'start', {
        'service': 'housekeeping', 'host': 'ctl1'}, 'J1')
    assert skipped is None


def test_backup_without_command_is_refused(tmp_path):
    with pytest.raises(exceptions.ConfigError,
                       match='backup_command is not set'):
        cu.Settings(_conf(tmp_path), {'backup': True})


def test_unknown_secret_in_config_is_refused(tmp_path):
    conf = _conf(tmp_path, db_upgrade_command='x --pw={secret:db}')
    with pytest.raises(exceptions.ConfigError, match='db_upgrade_command'):
        cu.Settings(conf, {'backup': False})
