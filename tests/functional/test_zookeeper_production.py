"""ZooKeeper as production runs it, against real servers.

One three-node ensemble (``owtools.services_zookeeper``) is started for
this module, with a plain and a TLS client port on every node (mutual
TLS, certificates made by the harness).  Through the real CLI and a
conductor process: a selftest job posts, is claimed and finishes on the
ensemble (with one member down) and on the TLS ports; a wrong CA, a
missing certificate file and a wrong digest password are one-line errors
with exit code 2 that change nothing; an anonymous client (and one with
another digest identity) can neither read, delete nor add a node of a
digest-protected board.
"""

import collections
import time

from clihelp import run, write_conf
from kazoo import security as kazoo_security
import pytest

from functional.conftest import Deployment
from octavia_workflows import conf as ow_conf
from octavia_workflows import exceptions
from octavia_workflows.engine import jobboard
from owtools import services
from owtools.services_zookeeper import ZooKeeperEnsemble

pytestmark = pytest.mark.functional

EXPIRY = 6


@pytest.fixture(scope='module')
def ensemble(tmp_path_factory):
    ens = ZooKeeperEnsemble(tmp_path_factory.mktemp('zk-ensemble'),
                            tls=True)
    try:
        ens.start()
    except services.ServiceError as exc:
        pytest.fail(f'zookeeper ensemble could not start: {exc}',
                    pytrace=False)
    yield ens
    ens.stop()


def _ssl_options(ensemble, ca=None, **extra):
    certs = ensemble.certs
    opts = {'use_ssl': 'true', 'ca': ca or certs.ca,
            'certfile': certs.client_cert, 'keyfile': certs.client_key}
    opts.update(extra)
    return ','.join(f'{k}:{v}' for k, v in opts.items())


def _deploy(tmp_path, namespace, hosts, password=None, **task_flow):
    options = {'task_flow': dict({
        'jobboard_enabled': True,
        'jobboard_backend_driver': 'zookeeper_taskflow_driver',
        'jobboard_backend_hosts': hosts,
        'jobboard_backend_namespace': namespace,
        'jobboard_expiration_time': EXPIRY,
        'jobboard_backend_username': 'ow',
        'jobboard_backend_password': password or f'zk-digest-{namespace}',
        'persistence_connection':
            f'sqlite:///{tmp_path}/persistence.sqlite'}, **task_flow),
        'conductor': {'poll_interval': 0.2}}
    return Deployment(tmp_path, 'zookeeper', 'sqlite', options)


def _variant(dep, name, **task_flow):
    """Another configuration file for the same deployment."""
    groups = {g: dict(v) for g, v in dep.options.items()}
    groups['task_flow'].update(task_flow)
    return write_conf(dep.tmp_path / f'{name}.conf', **groups)


def _logs(dep):
    return '\n'.join(f'{p.log} (exit code {p.poll()}):\n' + '\n'.join(
        p.log.read_text(errors='replace').splitlines()[-15:])
        for p in dep.conductors)


def _run_selftest(dep, tmp_path, steps=5):
    record = tmp_path / 'steps.txt'
    dep.conductor('zk-prod')
    job_id = dep.submit('selftest', steps=steps, step_seconds=0,
                        record_to=record)
    waited = dep.cli('wait', job_id, '--timeout', '90')
    assert waited.returncode == 0, (waited.stdout, waited.stderr, _logs(dep))
    job = dep.show(job_id)
    assert job['state'] == 'SUCCESS', job
    assert job['progress']['done'] == steps
    counts = collections.Counter(
        int(line.split()[1]) for line in record.read_text().splitlines())
    assert counts == {n: 1 for n in range(1, steps + 1)}
    return job


def _one_line_error(proc, *fragments):
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith('octavia-workflow: error: '), lines
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert 'Traceback' not in proc.stderr
    return lines[0]


def test_a_job_runs_on_the_ensemble_with_a_member_down(
        ensemble, tmp_path, namespace):
    dep = _deploy(tmp_path, namespace, ensemble.hosts)
    dep.cli('db', 'upgrade', check=0)
    follower = next(n for n in ensemble.nodes if n.mode() == 'follower')
    ensemble.kill(follower)
    try:
        ensemble.wait_quorum()
        _run_selftest(dep, tmp_path)
    finally:
        dep.stop_all()
        ensemble.restart(follower)
    assert [n.mode() for n in ensemble.nodes].count('leader') == 1


def test_a_job_runs_over_tls_and_tls_mistakes_are_one_line_errors(
        ensemble, tmp_path, namespace):
    dep = _deploy(tmp_path, namespace, ensemble.secure_hosts,
                  jobboard_zookeeper_ssl_options=_ssl_options(ensemble))
    dep.cli('db', 'upgrade', check=0)
    try:
        job = _run_selftest(dep, tmp_path)
    finally:
        dep.stop_all()
    wrong_ca = _variant(dep, 'wrong-ca', jobboard_zookeeper_ssl_options=(
        _ssl_options(ensemble, ca=ensemble.certs.other_ca)))
    proc = run(wrong_ca, 'submit', 'selftest', '--param', 'steps=1',
               timeout=60)
    _one_line_error(proc, 'TLS handshake failed', 'CERTIFICATE_VERIFY_FAILED',
                    'jobboard_zookeeper_ssl_options')
    # the refused submit recorded and posted nothing
    assert dep.cli('list', '--all', '-f', 'value', '-c', 'id',
                   check=0).stdout.split() == [job['id']]
    # the same translation, in-process (each a CLI start saved)
    for ssl, hosts, kind, fragment in (
            (f'use_ssl:true,ca:{ensemble.certs.ca}', ensemble.secure_hosts,
             exceptions.BackendUnavailable, 'TLS handshake failed'),
            (_ssl_options(ensemble), ensemble.hosts,
             exceptions.BackendUnavailable, 'TLS handshake failed'),
            (_ssl_options(ensemble, certfile=tmp_path / 'nope.pem'),
             ensemble.secure_hosts, exceptions.ConfigError,
             'nope.pem is not a readable file')):
        conf = ow_conf.load([_variant(
            dep, 'variant', jobboard_zookeeper_ssl_options=ssl,
            jobboard_backend_hosts=hosts)])
        driver = jobboard.fetch(conf)
        with pytest.raises(kind) as info:
            driver.connect()
        driver.close()
        assert fragment in str(info.value)
        assert len(str(info.value).splitlines()) == 1, info.value


def test_digest_acl_anonymous_clients_can_neither_read_nor_delete_a_job(
        ensemble, tmp_path, namespace):
    """The job and its claim are the digest identity's alone; a wrong
    digest password is then a one-line error from the CLI."""
    from kazoo import client as kazoo_client
    from kazoo import exceptions as kazoo_exc

    dep = _deploy(tmp_path, namespace, ensemble.hosts)
    dep.cli('db', 'upgrade', check=0)
    dep.conductor('zk-acl')
    job_id = dep.submit('selftest', steps=60, step_seconds=0.5)
    root = f'/{namespace}'
    clients = {
        'anonymous': kazoo_client.KazooClient(hosts=ensemble.hosts),
        'other identity': kazoo_client.KazooClient(
            hosts=ensemble.hosts, auth_data=[('digest', 'ow:guessed')]),
        'owner': kazoo_client.KazooClient(
            hosts=ensemble.hosts,
            auth_data=[('digest', f'ow:zk-digest-{namespace}')]),
    }
    owner = clients.pop('owner')
    try:
        for client in [owner] + list(clients.values()):
            client.start(timeout=15)
        deadline = time.monotonic() + 60
        while not any(c.endswith('.lock') for c in owner.get_children(root)):
            assert time.monotonic() < deadline, f'not claimed\n{_logs(dep)}'
            time.sleep(0.1)
        children = owner.get_children(root)
        jobs = [c for c in children if not c.endswith('.lock')]
        locks = [c for c in children if c.endswith('.lock')]
        assert len(jobs) == 1 and len(locks) == 1, children   # claimed
        nodes = [f'{root}/{c}' for c in children]
        for client in clients.values():
            for node in [root] + nodes:
                with pytest.raises(kazoo_exc.NoAuthError):
                    client.get(node)
                with pytest.raises(kazoo_exc.NoAuthError):
                    client.get_children(node)
            for node in nodes:
                with pytest.raises(kazoo_exc.NoAuthError):
                    client.delete(node)
                with pytest.raises(kazoo_exc.NoAuthError):
                    client.set(node, b'{}')
            with pytest.raises(kazoo_exc.NoAuthError):
                client.create(f'{root}/job-forged', b'{}')
            with pytest.raises(kazoo_exc.NoAuthError):
                client.set_acls(root, kazoo_security.OPEN_ACL_UNSAFE)
        # nothing was changed by them; the owner's identity reads it all
        assert sorted(owner.get_children(root)) == sorted(children)
        for node in [root] + nodes:
            acls, _ = owner.get_acls(node)
            assert [a.id.scheme for a in acls] == ['digest'], node
            owner.get(node)
    finally:
        for client in list(clients.values()) + [owner]:
            client.stop()
            client.close()
    wrong = _variant(dep, 'wrong-password',
                     jobboard_backend_password='not-the-password')
    proc = run(wrong, 'submit', 'selftest', '--param', 'steps=1')
    line = _one_line_error(proc, 'not authorised', root,
                           'jobboard_backend_password')
    assert 'not-the-password' not in line
    # the job was not disturbed: still running, then cancelled
    assert dep.show(job_id)['state'] == 'RUNNING'
    dep.cli('cancel', job_id, check=0)
    dep.cli('wait', job_id, '--timeout', '60', check=1)
    assert dep.show(job_id)['state'] == 'CANCELLED'
    assert dep.cli('list', '--all', '-f', 'value', '-c', 'id',
                   check=0).stdout.split() == [job_id]
    dep.stop_all()
