"""Planning and decision logic of reconfigure-amphorae, evacuate-host and
cleanup-node, from API dicts (no cloud needed)."""

import pytest
from taskflow.patterns import linear_flow, unordered_flow

from octavia_workflows import exceptions
from octavia_workflows.engine import context as ctx_mod
from octavia_workflows.flows import (
    cleanup_node,
    evacuate_host,
    reconfigure_amphorae,
)
from octavia_workflows.machinery import hosts, inventory


def lb(lb_id, status='ACTIVE', created='2025-01-01T00:00:00', **extra):
    return dict({'id': lb_id, 'name': f'name-{lb_id}', 'project_id': 'p1',
                 'provisioning_status': status, 'provider': 'amphora',
                 'availability_zone': None, 'created_at': created}, **extra)


def amp(amp_id, lb_id, role='STANDALONE', status='ALLOCATED', compute=None,
        zone='az1'):
    return {'id': amp_id, 'loadbalancer_id': lb_id, 'role': role,
            'status': status, 'cached_zone': zone, 'image_id': 'img',
            'compute_id': compute or f'vm-{amp_id}',
            'lb_network_ip': f'10.0.0.{len(amp_id)}',
            'created_at': '2025-01-01T00:00:00', 'cert_expiration': None}


def server(server_id, name=None, host='c1'):
    return {'id': server_id, 'name': name or f'amphora-{server_id}',
            'status': 'ACTIVE', 'host': host, 'availability_zone': 'az1',
            'image_id': 'img'}


def grouped(amps):
    result = {}
    for a in amps:
        result.setdefault(a['loadbalancer_id'], []).append(a)
    return result


def _atoms(flow):
    for item in flow:
        if isinstance(item, (linear_flow.Flow, unordered_flow.Flow)):
            if item.retry is not None:
                yield item.retry.name
            yield from _atoms(item)
        else:
            yield item.name


# -- reconfigure-amphorae ------------------------------------------------


def test_reconfigure_selects_allocated_amphorae_of_active_lbs():
    amps = [amp('m1', 'l1', 'MASTER'), amp('b1', 'l1', 'BACKUP'),
            amp('a2', 'l2'), amp('a3', 'l3'),
            amp('e4', 'l4', status='ERROR'), amp('gone', 'l2',
                                                  status='DELETED')]
    inv = inventory.Inventory(
        [lb('l2', created='2025-02-01'), lb('l1'),
         lb('l3', status='PENDING_UPDATE'), lb('l4', created='2025-03-01'),
         lb('l5', provider='ovn'), lb('l6')],
        grouped(amps), ['l9'])
    targets, skipped = reconfigure_amphorae.select(inv)
    assert [t.target for t in targets] == ['m1', 'b1', 'a2']
    assert all(t.action == 'amphora-configure' for t in targets)
    assert targets[0].details['lb'] == 'l1'
    assert targets[0].details['lb_network_ip'] == amps[0]['lb_network_ip']
    assert targets[0].details['compute_id'] == 'vm-m1'
    assert {t.target: t.reason for t in skipped} == {
        'l9': 'load balancer not found',
        'a3': 'load balancer is PENDING_UPDATE',
        'e4': 'amphora is ERROR',
        'l5': 'provider ovn has no amphorae',
        'l6': 'load balancer has no amphorae'}


def test_reconfigure_refuses_without_confirmation_but_dry_run_explains():
    wf = reconfigure_amphorae.WORKFLOW
    params = wf.validate({})
    assert params['health_managers_stopped'] is False
    with pytest.raises(exceptions.InvalidParameter) as info:
        wf.preflight(None, params, False)
    message = str(info.value)
    assert 'health_managers_stopped=true' in message
    assert 'heartbeat_timeout' in message and '\n' not in message
    wf.preflight(None, params, True)          # a dry run is allowed
    wf.preflight(None, wf.validate({'health_managers_stopped': 'true'}),
                 False)
    notes = reconfigure_amphorae.plan_notes(params, [])
    assert any('heartbeat_timeout' in n and 'fails over' in n
               for n in notes)
    assert any(n.startswith('NOT CONFIRMED') for n in notes)
    notes = reconfigure_amphorae.plan_notes(
        {'health_managers_stopped': True}, [])
    assert 'confirmed: health_managers_stopped=true' in notes


def test_reconfigure_plan_inside_a_job_refuses_without_confirmation():
    """A job posted without the confirmation (not through submit) plans
    nothing and touches nothing."""
    class Job(ctx_mod.PlanContext):
        job_id = 'job-1'

        def cloud(self):
            raise AssertionError('the cloud must not be touched')

    job = Job({'health_managers_stopped': False})
    job.job_id = 'job-1'
    with pytest.raises(exceptions.InvalidParameter):
        reconfigure_amphorae.plan(job, job.params)


@pytest.mark.parametrize('calls, amp_status, lb_status, confirmed', [
    (1, 'ALLOCATED', 'ACTIVE', 2),
    (3, 'ALLOCATED', 'ACTIVE', 3),
])
def test_reconfigure_report_says_what_was_confirmed(calls, amp_status,
                                                    lb_status, confirmed):
    after = reconfigure_amphorae.outcome(
        calls, {'status': amp_status}, {'provisioning_status': lb_status})
    assert after['calls'] == calls
    assert len(after['confirmed']) == confirmed
    assert after['confirmed'][0] == reconfigure_amphorae.CONFIRMED
    assert 'applied' in after['not_confirmed'][0]
    if calls > 1:
        assert f'sent {calls} times' in after['confirmed'][1]
    refused = reconfigure_amphorae.outcome(1, None, None, accepted=False)
    assert refused['confirmed'] == []
    assert refused['not_confirmed'] == ['the request was not accepted']


def test_reconfigure_flow_has_one_lane_per_lb_and_stable_atoms():
    targets = [{'target': a, 'action': 'amphora-configure',
                'details': {'lb': lb_id, 'amphora': a, 'az': 'az1'}}
               for a, lb_id in (('m1', 'l1'), ('b1', 'l1'), ('a2', 'l2'))]
    flow = reconfigure_amphorae.reconfigure_amphorae_flow(
        {'concurrency': 4}, targets)
    lanes = list(flow)
    assert len(lanes) == 2
    names = list(_atoms(flow))
    assert names == list(_atoms(reconfigure_amphorae.
                                reconfigure_amphorae_flow({'concurrency': 4},
                                                          targets)))
    assert 'reconfigure-amphorae:m1:verify' in names
    assert 'reconfigure-amphorae:b1:act' in names
    assert len(names) == len(set(names)) == 15


def test_reconfigure_has_no_target_timeout_and_bounded_retries():
    names = {p.name for p in reconfigure_amphorae.WORKFLOW.params}
    assert 'target_timeout' not in names
    with pytest.raises(exceptions.InvalidParameter):
        reconfigure_amphorae.WORKFLOW.validate({'retries': '-1'})


# -- evacuate-host ---------------------------------------------------------


SERVICE = {'id': 'svc-1', 'host': 'c1', 'status': 'enabled',
           'disabled_reason': None}


def _evacuation(params, servers, amps, lbs):
    params = evacuate_host.WORKFLOW.validate(params)
    by_id = {x['id']: x for x in lbs}
    return evacuate_host.build_plan(params, SERVICE, servers, amps, by_id,
                                    grouped(amps))


def test_evacuate_plans_disable_failovers_verify_in_order():
    amps = [amp('a1', 'l1'), amp('m2', 'l2', 'MASTER'),
            amp('b2', 'l2', 'BACKUP', compute='elsewhere'),
            amp('a3', 'l3'), amp('old', 'l1', status='DELETED',
                                 compute='vm-old')]
    servers = [server('vm-a1'), server('vm-m2'), server('vm-a3'),
               server('vm-old'), server('tenant-vm', name='web-1')]
    plan = _evacuation({'host': 'c1'}, servers, amps,
                       [lb('l1'), lb('l2'), lb('l3', status='ERROR')])
    assert [(t.target, t.action) for t in plan.targets] == [
        ('host:c1', 'disable-compute-service'),
        ('a1', 'amphora-failover'), ('m2', 'amphora-failover'),
        ('verify:c1', 'verify-host-empty')]
    assert plan.targets[1].details['compute_id'] == 'vm-a1'
    assert plan.targets[1].details['host'] == 'c1'
    assert [(t.target, t.reason) for t in plan.skipped] == [
        ('a3', 'load balancer is ERROR')]
    assert any('2 server(s) on c1 are not amphorae' in n
               for n in plan.notes)
    assert any('stays disabled' in n for n in plan.notes)


def test_evacuate_without_disabling_warns_and_has_no_disable_target():
    plan = _evacuation({'host': 'c1', 'disable_compute_service': 'false'},
                       [server('vm-a1')], [amp('a1', 'l1')], [lb('l1')])
    assert [t.action for t in plan.targets] == [
        'amphora-failover', 'verify-host-empty']
    assert any('disable_compute_service=false' in n for n in plan.notes)


def test_evacuate_host_without_amphorae_is_an_empty_plan():
    plan = _evacuation({'host': 'c1'}, [server('x', name='web')],
                       [amp('a1', 'l1')], [lb('l1')])
    assert plan.targets == [] and plan.skipped == []
    assert any('no amphora runs on c1' in n for n in plan.notes)
    flow = evacuate_host.evacuate_host_flow({'concurrency': 1}, [])
    assert list(_atoms(flow)) == ['evacuate-host:nothing-to-do']


def test_evacuate_verification_counts_only_active_lbs():
    amps = [amp('a1', 'l1'), amp('a2', 'l2'), amp('a3', 'l3')]
    servers = [server('vm-a1'), server('vm-a2')]
    active, other = evacuate_host.left_on_host(
        servers, amps, {'l1': lb('l1'), 'l2': lb('l2', status='ERROR')})
    assert active == ['a1'] and other == ['a2']


def test_evacuate_unknown_host_is_a_one_line_error():
    class Cloud:
        def get_compute_service(self, host):
            raise exceptions.CloudNotFound(f'no service on {host}', 404)

    with pytest.raises(exceptions.InvalidParameter) as info:
        hosts.host_service(Cloud(), 'nope')
    assert "no compute host 'nope'" in str(info.value)
    assert isinstance(info.value, exceptions.UserError)


@pytest.mark.parametrize('raw, message', [
    ({}, 'needs parameter host'),
    ({'host': ' '}, 'parameter host'),
    ({'host': 'c1', 'reason': 'x' * 256}, 'at most 255'),
    ({'host': 'c1', 'disable_compute_service': 'maybe'}, 'not a valid bool'),
])
def test_evacuate_bad_parameters(raw, message):
    with pytest.raises(exceptions.InvalidParameter) as info:
        evacuate_host.WORKFLOW.validate(raw)
    assert message in str(info.value)


def test_evacuate_flow_disables_first_and_verifies_last():
    targets = [
        {'target': 'host:c1', 'action': 'disable-compute-service',
         'details': {'host': 'c1'}},
        {'target': 'a1', 'action': 'amphora-failover',
         'details': {'lb': 'l1', 'amphora': 'a1', 'host': 'c1'}},
        {'target': 'a2', 'action': 'amphora-failover',
         'details': {'lb': 'l2', 'amphora': 'a2', 'host': 'c1'}},
        {'target': 'verify:c1', 'action': 'verify-host-empty',
         'details': {'host': 'c1'}}]
    flow = evacuate_host.evacuate_host_flow({'concurrency': 2}, targets)
    parts = list(flow)
    assert len(parts) == 3
    assert list(_atoms(parts[0]))[-1] == 'evacuate-host:host:c1:disable'
    assert isinstance(parts[1], unordered_flow.Flow)
    assert list(_atoms(parts[2]))[-1] == 'evacuate-host:verify:c1:verify'
    names = list(_atoms(flow))
    assert len(names) == len(set(names))


# -- cleanup-node --------------------------------------------------------


def test_cleanup_decisions_and_evidence():
    amps = [amp('inuse', 'l1', compute='s-inuse'),
            amp('going', 'l1', status='PENDING_DELETE', compute='s-going'),
            amp('building', 'l2', status='BOOTING', compute=None),
            amp('elsewhere', 'l3', compute='s-other')]
    amps[2]['compute_id'] = None
    servers = [server('s-inuse'), server('s-going'),
               server('s-orphan', name='amphora-deadbeef'),
               server('s-new', name='amphora-building'),
               server('s-dup', name='amphora-elsewhere'),
               server('s-tenant', name='db-1')]
    targets, skipped = cleanup_node.classify(servers, amps, 'amphora-')
    assert [t.target for t in targets] == ['s-orphan']
    orphan = targets[0].details
    assert orphan['named_amphora'] == 'deadbeef'
    assert orphan['amphora'] is None
    assert 'does not exist or is DELETED' in orphan['evidence']
    assert orphan['host'] == 'c1' and orphan['name'] == 'amphora-deadbeef'
    reasons = {t.target: t.reason for t in skipped}
    assert reasons['s-inuse'].startswith('in use by amphora inuse')
    assert 'load balancer l1' in reasons['s-inuse']
    assert 'PENDING_DELETE' in reasons['s-going']
    assert 'BOOTING' in reasons['s-new']
    assert 'runs on server s-other' in reasons['s-dup']
    assert reasons['s-tenant'].startswith('not an amphora VM')
    inuse = next(t for t in skipped if t.target == 's-inuse').details
    assert inuse['amphora'] == 'inuse' and inuse['lb'] == 'l1'


def test_cleanup_deletes_server_of_deleted_amphora():
    decision, reason, facts = cleanup_node.decide(
        server('s1'), {'s1': amp('x', 'l1', status='DELETED',
                                 compute='s1')}, {}, 'amphora-')
    assert decision == cleanup_node.DELETE
    assert reason == 'its amphora x is DELETED'
    assert facts['amphora_status'] == 'DELETED'


@pytest.mark.parametrize('raw, message', [
    ({}, 'needs parameter host'),
    ({'host': 'c1', 'name_prefix': ''}, 'name_prefix'),
    ({'host': 'c1', 'apply': 'perhaps'}, 'not a valid bool'),
])
def test_cleanup_bad_parameters(raw, message):
    with pytest.raises(exceptions.InvalidParameter) as info:
        cleanup_node.WORKFLOW.validate(raw)
    assert message in str(info.value)


def test_cleanup_is_report_only_by_default():
    assert cleanup_node.WORKFLOW.validate({'host': 'c1'})['apply'] is False
