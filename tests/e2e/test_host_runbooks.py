"""evacuate-host, cleanup-node and reconfigure-amphorae against the sandbox
(stock Octavia with no-op drivers) and the Nova/Glance stand-in.

Each test gets a compute host of its own in the stand-in and places the
amphorae of the load balancers it seeds there (the other hosts are
disabled while it seeds), so tests never see each other's servers.
Effects are counted where they happen: failovers in Octavia's database,
configure calls by the sandbox amphora driver, servers and compute
services in the stand-in.
"""

import contextlib
import json
import signal
import time
import uuid

import pytest
import sqlalchemy as sa

from e2e.runbookhelp import RunbookCli, failovers, lb_status, live_amphorae
from octavia_workflows.engine import records as rec
from owtools.sandbox import seed

pytestmark = pytest.mark.e2e

#: Claim expiry (s): a SIGKILLed conductor's job is taken over this fast.
EXPIRY = 3
FINISHED = ('SUCCESS', 'FAILED', 'CANCELLED')


@pytest.fixture
def cli(tmp_path, request):
    made = []

    def make(redis=False):
        server = request.getfixturevalue('redis_server') if redis else None
        made.append(RunbookCli(tmp_path, 'redis' if redis else None, server,
                               expiry=EXPIRY))
        return made[-1]

    yield make
    for item in made:
        item.stop()


@pytest.fixture
def standin(sandbox):
    from owtools.standin import StandinState

    return StandinState(str(sandbox.dir / 'standin.db'))


@contextlib.contextmanager
def only_host(standin, host):
    """New amphorae are placed on ``host`` alone while inside."""
    saved = {h['name']: (h['status'], h['disabled_reason'])
             for h in standin.hosts() if h['name'] != host}
    for name in saved:
        standin.set_service(name, status='disabled',
                            disabled_reason='test placement')
    try:
        yield
    finally:
        for name, (status, reason) in saved.items():
            standin.set_service(name, status=status, disabled_reason=reason)


def new_host(standin, prefix):
    host = f'{prefix}-{uuid.uuid4().hex[:6]}'
    standin.add_host(host, az='az1')
    return host


def seed_on(sandbox, standin, host, singles=0, pairs=0):
    with only_host(standin, host):
        lbs = (seed.seed_api(sandbox.api, singles, topology='SINGLE')
               if singles else [])
        lbs += (seed.seed_api(sandbox.api, pairs, topology='ACTIVE_STANDBY')
                if pairs else [])
    return lbs


def ours_on(sandbox, standin, host, lb_ids):
    """The servers on ``host`` other than live amphorae of load balancers
    not in ``lb_ids``: while a test places its amphorae on ``host``
    alone, Octavia builds for other tests' load balancers (the health
    manager's failovers) land there too, and they are none of its
    business (cleanup-node skips them: in use)."""
    with sandbox.accounting().engine.connect() as conn:
        foreign = {row[0] for row in conn.execute(sa.text(
            "SELECT compute_id FROM amphora WHERE status != 'DELETED' "
            'AND (load_balancer_id IS NULL OR load_balancer_id NOT IN '
            ':ids)').bindparams(sa.bindparam('ids', expanding=True)),
            {'ids': list(lb_ids)})}
    return sorted(set(standin.servers_on(host)) - foreign)


def set_lb_status(sandbox, lb_id, status):
    with sandbox.accounting().engine.begin() as conn:
        conn.execute(sa.text('UPDATE load_balancer SET provisioning_status='
                             ':s WHERE id=:i'), {'s': status, 'i': lb_id})


def one_line_error(proc):
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert 'Traceback' not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]


# -- evacuate-host -------------------------------------------------------


def test_evacuate_host_exactly_once_across_sigkill(sandbox, standin, cli):
    """The owning conductor is SIGKILLed right after a failover call; the
    next one finishes: the host is disabled first, each amphora on it is
    failed over exactly once, none is left, other servers are untouched.
    """
    host = new_host(standin, 'evac')
    singles = seed_on(sandbox, standin, host, singles=3)
    [pair] = seed_on(sandbox, standin, host, pairs=1)
    lbs = singles + [pair]
    tenant = str(uuid.uuid4())
    standin.add_server(tenant, host, name='web-1')
    on_host = set(standin.servers_on(host))
    amps = {a['id']: a for lb_id in lbs for a in live_amphorae(sandbox,
                                                                lb_id)}
    assert len(amps) == 5
    assert {a['compute_id'] for a in amps.values()} | {tenant} == on_host

    c = cli(redis=True)
    plan = c.plan('evacuate-host', host=host)
    actions = [(t['target'], t['action']) for t in plan['targets']]
    assert actions[0] == (f'host:{host}', 'disable-compute-service')
    assert actions[-1] == (f'verify:{host}', 'verify-host-empty')
    assert sorted(t for t, a in actions[1:-1]) == sorted(amps)
    assert {a for _, a in actions[1:-1]} == {'amphora-failover'}
    assert plan['skipped'] == []
    assert any('1 server(s)' in n and 'not amphorae' in n
               for n in plan['notes'])
    assert standin.service_enabled(host)          # the dry run changed nothing

    sandbox.inject(delays={'compute.build': 0.8})
    try:
        first = c.background('first', 'conductor', '--name', 'first')
        job_id = c.submit('evacuate-host', check=0, host=host,
                          concurrency=2, reason='disk replacement')['id']
        deadline = time.monotonic() + 60
        while 'PENDING_UPDATE' not in lb_status(sandbox, lbs).values():
            assert time.monotonic() < deadline, 'no failover started'
            time.sleep(0.02)
        first.send_signal(signal.SIGKILL)
        first.wait()
        assert not standin.service_enabled(host)   # disabled before that
        c.background('second', 'conductor', '--name', 'second')
        final = c.wait_for(job_id, lambda j: j['state'] in FINISHED,
                           timeout=120, what='the end')
    finally:
        sandbox.clear_injection()
    assert final['state'] == 'SUCCESS', final
    assert final['owner'].startswith('second')
    assert final['progress']['done'] == 7 and final['progress']['failed'] == 0
    # exactly once, counted in Octavia's database
    assert failovers(sandbox, lbs) == {**{lb: (1, 1) for lb in singles},
                                       pair: (2, 2)}
    assert set(lb_status(sandbox, lbs).values()) == {'ACTIVE'}
    # nothing of Octavia's is left on the host; the tenant VM is untouched
    assert standin.servers_on(host) == [tenant]
    for lb_id in lbs:
        for amp in live_amphorae(sandbox, lb_id):
            assert standin.server(amp['compute_id'])['host'] != host
    service = standin.host(host)
    assert (service['status'], service['disabled_reason']) == (
        'disabled', 'disk replacement')
    report = c.report(job_id)
    assert report[f'host:{host}']['before']['status'] == 'enabled'
    assert report[f'host:{host}']['after']['status'] == 'disabled'
    assert report[f'verify:{host}']['state'] == 'DONE'
    assert report[f'verify:{host}']['after']['amphorae_left'] == []
    for amp_id in amps:
        row = report[amp_id]
        assert row['state'] == 'DONE', row
        assert row['before']['host'] == host
        assert amp_id not in row['after']['amphorae']


def test_evacuate_host_bad_input_and_empty_host(sandbox, standin, cli):
    c = cli()
    for args in (['--param', 'host=no-such-host'],
                 ['--param', 'host=no-such-host', '--dry-run'],
                 [],
                 ['--param', 'host=x', '--param', 'disable_compute_service=9'],
                 ):
        line = one_line_error(c.cli('submit', 'evacuate-host', *args))
        if 'no-such-host' in ' '.join(args):
            assert "no compute host 'no-such-host'" in line
    empty = new_host(standin, 'empty')
    # kept empty: the stand-in places every new amphora on the least
    # loaded enabled host, so an enabled new host would receive those
    # Octavia builds for other load balancers meanwhile (its health
    # manager's failovers included)
    standin.set_service(empty, status='disabled',
                        disabled_reason='kept empty by the test')
    plan = c.plan('evacuate-host', host=empty)
    assert plan['targets'] == [] and plan['skipped'] == []
    assert any(f'no amphora runs on {empty}' in n for n in plan['notes'])
    assert c.jobs() == []                          # nothing was posted
    view = c.submit('evacuate-host', check=0, host=empty)
    assert view['state'] == 'SUCCESS'
    assert c.report(view['id']) == {}              # an empty plan does nothing
    service = standin.host(empty)
    assert (service['status'], service['disabled_reason']) == (
        'disabled', 'kept empty by the test')
    assert standin.events(host=empty, kind='service-update')[-1][
        'via'] != 'compute-api'                    # only the test's own change


# -- cleanup-node ----------------------------------------------------------


def test_cleanup_node_deletes_only_unused_amphora_vms(sandbox, standin, cli):
    host = new_host(standin, 'node')
    replaced, kept = seed_on(sandbox, standin, host, singles=2)
    [old] = live_amphorae(sandbox, replaced)
    [in_use] = live_amphorae(sandbox, kept)
    # The hypervisor fails: Octavia replaces the amphora elsewhere ...
    standin.set_service(host, status='disabled', disabled_reason='down')
    sandbox.connect().load_balancer.failover_load_balancer(replaced)
    sandbox.api.wait_lbs([replaced], timeout=60)
    assert failovers(sandbox, [replaced]) == {replaced: (1, 1)}
    # ... and when it comes back, it restarts the old VM.
    standin.add_server(old['compute_id'], host, name=f'amphora-{old["id"]}')
    orphan = str(uuid.uuid4())
    standin.add_server(orphan, host, name=f'amphora-{uuid.uuid4()}')
    tenant = str(uuid.uuid4())
    standin.add_server(tenant, host, name='db-1')
    c = cli()
    plan = c.plan('cleanup-node', host=host)
    assert {t['target'] for t in plan['targets']} == {old['compute_id'],
                                                      orphan}
    evidence = {t['target']: t['details'] for t in plan['targets']}
    assert evidence[old['compute_id']]['named_amphora'] == old['id']
    assert 'does not exist or is DELETED' in \
        evidence[old['compute_id']]['evidence']
    skipped = {t['target']: t['reason'] for t in plan['skipped']}
    assert skipped[in_use['compute_id']].startswith(
        f'in use by amphora {in_use["id"]}')
    assert kept in skipped[in_use['compute_id']]
    assert skipped[tenant].startswith('not an amphora VM')
    assert any('apply=false' in n for n in plan['notes'])
    # the default only reports
    view = c.submit('cleanup-node', check=0, host=host)
    assert view['state'] == 'SUCCESS', view
    report = c.report(view['id'])
    for server_id in (old['compute_id'], orphan):
        assert report[server_id]['state'] == 'SKIPPED'
        assert report[server_id]['error'].startswith(
            'would delete (apply=false)')
    assert ours_on(sandbox, standin, host, [replaced, kept]) == sorted(
        [old['compute_id'], orphan, in_use['compute_id'], tenant])
    # apply=true deletes exactly the two unused amphora VMs
    view = c.submit('cleanup-node', check=0, host=host, apply='true')
    assert view['state'] == 'SUCCESS', view
    report = c.report(view['id'])
    assert report[old['compute_id']]['state'] == 'DONE'
    assert report[old['compute_id']]['after'] == {'deleted': True}
    assert report[orphan]['state'] == 'DONE'
    assert report[in_use['compute_id']]['state'] == 'SKIPPED'
    assert {t for t, row in report.items() if row['state'] == 'DONE'} == {
        old['compute_id'], orphan}                # nothing else deleted
    assert ours_on(sandbox, standin, host, [replaced, kept]) == sorted(
        [in_use['compute_id'], tenant])
    assert lb_status(sandbox, [kept]) == {kept: 'ACTIVE'}
    assert [a['id'] for a in live_amphorae(sandbox, kept)] == [in_use['id']]
    # bad input
    line = one_line_error(c.cli('submit', 'cleanup-node', '--param',
                                'host=no-such-host', '--dry-run'))
    assert "no compute host 'no-such-host'" in line
    one_line_error(c.cli('submit', 'cleanup-node'))


# -- reconfigure-amphorae --------------------------------------------------


def test_reconfigure_amphorae_refuses_then_configures_each_once(
        sandbox, standin, cli):
    host = new_host(standin, 'cfg')
    singles = seed_on(sandbox, standin, host, singles=3)
    [pair] = seed_on(sandbox, standin, host, pairs=1)
    busy = singles[2]
    lbs = singles + [pair]
    set_lb_status(sandbox, busy, 'PENDING_UPDATE')
    c = cli()
    selection = {'loadbalancers': ','.join(lbs)}
    try:
        # no confirmation: refused, nothing posted, nothing sent
        line = one_line_error(c.cli('submit', 'reconfigure-amphorae',
                                    *c.params(selection)))
        assert 'health_managers_stopped=true' in line
        assert c.jobs() == []
        # the dry run explains why and lists every amphora
        plan = c.plan('reconfigure-amphorae', **selection)
        wanted = [a['id'] for lb_id in singles[:2] + [pair]
                  for a in live_amphorae(sandbox, lb_id)]
        assert sorted(t['target'] for t in plan['targets']) == sorted(wanted)
        [busy_amp] = live_amphorae(sandbox, busy)
        assert [(t['target'], t['reason']) for t in plan['skipped']] == [
            (busy_amp['id'], 'load balancer is PENDING_UPDATE')]
        assert any('heartbeat_timeout' in n for n in plan['notes'])
        assert any(n.startswith('NOT CONFIRMED') for n in plan['notes'])
        before = sandbox.accounting().configured_amphorae()
        assert not set(before) & set(wanted + [busy_amp['id']])

        # a confirmed run, interrupted (Ctrl-C) after its first amphora
        run_params = dict(selection, health_managers_stopped='true',
                          interval=4, heartbeat_timeout=0)
        proc = c.background('inline', 'submit', 'reconfigure-amphorae',
                            *c.params(run_params))
        records = c.records()
        deadline = time.monotonic() + 60
        while True:             # read the records directly: the CLI is slow
            assert time.monotonic() < deadline, 'first amphora not done'
            jobs = records.list_jobs(include_finished=True)
            if jobs and any(t['state'] == 'DONE' for t in
                            records.get_targets(jobs[0]['id'])):
                break
            time.sleep(0.05)
        job_id = jobs[0]['id']
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
        assert c.show(job_id)['state'] == 'PAUSED'
        # The crash window made deterministic: a later amphora has its
        # request counted and really sent, but the answer not recorded.
        pending = [t['target'] for t in records.get_targets(job_id)
                   if t['state'] == 'PENDING']
        assert pending
        resent = pending[0]
        now = time.time()
        records.update_target(job_id, resent, state='RUNNING',
                              add_attempt=True, started_at=rec.utcnow(),
                              merge_details={'started': now, 'calls': 1,
                                             'before': {'amphora': resent}})
        records.engine.dispose()
        sandbox.connect().load_balancer.put(
            f'/octavia/amphorae/{resent}/config')
        final = json.loads(c.cli('resume', job_id, '-f', 'json',
                                 check=0).stdout)
    finally:
        set_lb_status(sandbox, busy, 'ACTIVE')
    assert final['state'] == 'SUCCESS', final
    report = c.report(job_id)
    # The worker handles each accepted request a moment after the 202.
    deadline = time.monotonic() + 20
    while True:
        calls = sandbox.accounting().configured_amphorae()
        if all(calls.get(a) for a in wanted) and calls.get(resent) == 2:
            break
        if time.monotonic() > deadline:
            break
        time.sleep(0.2)
    for amp_id in wanted:
        row = report[amp_id]
        assert row['state'] == 'DONE', row
        sent = row['after']['calls']
        assert row['attempts'] == sent
        assert row['after']['confirmed'][0] == \
            'Octavia accepted the request (HTTP 202)'
        assert 'applied' in row['after']['not_confirmed'][0]
        # every amphora got at least one call; the report never claims
        # fewer than reached the amphora driver
        assert 1 <= calls.get(amp_id, 0) <= sent, (amp_id, calls, sent)
    assert report[resent]['after']['calls'] == 2
    assert calls[resent] == 2
    assert 'sent 2 times' in report[resent]['after']['confirmed'][1]
    assert sum(1 for a in wanted if report[a]['after']['calls'] > 1) == 1
    assert busy_amp['id'] not in calls
    assert report[busy_amp['id']]['state'] == 'SKIPPED'
