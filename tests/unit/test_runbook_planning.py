"""Planning decisions, verification and flow shape of the failover
runbooks, from Octavia API dicts (no cloud needed)."""

import pytest
from taskflow.patterns import linear_flow, unordered_flow

from octavia_workflows import exceptions, states
from octavia_workflows.flows import (
    failover_amphorae,
    rotate_certificates,
    rotate_images,
)
from octavia_workflows.machinery import amphora_plan, inventory

OLD, NEW = 'img-old', 'img-new'


def lb(lb_id, status='ACTIVE', created='2025-01-01T00:00:00', **extra):
    return dict({'id': lb_id, 'name': f'name-{lb_id}',
                 'project_id': 'p1', 'provisioning_status': status,
                 'provider': 'amphora', 'availability_zone': None,
                 'created_at': created}, **extra)


def amp(amp_id, lb_id, role='STANDALONE', image=OLD, status='ALLOCATED',
        zone='az1', created='2025-01-01T00:00:00', cert=None):
    return {'id': amp_id, 'loadbalancer_id': lb_id, 'role': role,
            'image_id': image, 'status': status, 'cached_zone': zone,
            'created_at': created, 'cert_expiration': cert}


def inventory_of(lbs, amps, missing=()):
    grouped = {}
    for a in amps:
        grouped.setdefault(a['loadbalancer_id'], []).append(a)
    return inventory.Inventory(lbs, grouped, list(missing))


def test_rotate_images_targets_stale_and_skips_with_reasons():
    inv = inventory_of(
        [lb('l3', created='2025-03-01'), lb('l1', created='2025-01-01'),
         lb('l2', created='2025-02-01'), lb('l4', status='PENDING_UPDATE'),
         lb('l5', provider='ovn')],
        [amp('a1', 'l1'), amp('m2', 'l2', 'MASTER', NEW),
         amp('b2', 'l2', 'BACKUP', NEW), amp('a3', 'l3'), amp('a4', 'l4'),
         amp('old', 'l1', status='DELETED', image=NEW)],
        missing=['l9'])
    targets, skipped = rotate_images.select(inv, want_image=NEW)
    assert [t.target for t in targets] == ['l1', 'l3']
    assert targets[0].details['topology'] == inventory.SINGLE
    assert targets[0].details['outage'] == inventory.SHORT_OUTAGE
    assert targets[0].details['image'] == OLD
    assert targets[0].details['amphorae'] == ['a1']
    reasons = {t.target: t.reason for t in skipped}
    assert reasons == {
        'l9': 'load balancer not found',
        'l2': f'already on image {NEW}',
        'l4': 'load balancer is PENDING_UPDATE',
        'l5': 'provider ovn has no amphorae',
    }
    l2 = next(t for t in skipped if t.target == 'l2')
    assert l2.details['topology'] == inventory.ACTIVE_STANDBY
    assert 'outage' not in l2.details


def test_rotate_images_by_age_and_zone():
    inv = inventory_of(
        [lb('l1'), lb('l2'), lb('l3', availability_zone='az9')],
        [amp('a1', 'l1', created='2025-01-01T00:00:00'),
         amp('a2', 'l2', created='2025-06-01T00:00:00', zone='az2'),
         amp('a3', 'l3', created='2025-01-01T00:00:00')])
    targets, skipped = rotate_images.select(
        inv, created_before='2025-03-01T00:00:00')
    assert [t.target for t in targets] == ['l1', 'l3']
    assert [t.reason for t in skipped] == [
        'amphorae created after 2025-03-01T00:00:00']
    targets, _ = rotate_images.select(
        inv, created_before='2025-03-01T00:00:00', zone='az9')
    assert [t.target for t in targets] == ['l3']


def test_unknown_image_counts_as_stale():
    assert rotate_images.stale_reason([amp('a', 'l', image=None)], NEW) \
        is None


@pytest.mark.parametrize('before, after, want, state, error', [
    ({'amphorae': ['a']}, {'amphorae': ['b'], 'images': [NEW]}, NEW,
     states.DONE, None),
    ({'amphorae': ['a', 'b']}, {'amphorae': ['b', 'c'], 'images': [NEW]},
     None, states.FAILED, 'amphorae not replaced: b'),
    ({'amphorae': ['a']}, {'amphorae': ['b'], 'images': [OLD]}, NEW,
     states.FAILED, f'on image {OLD}, not {NEW}'),
    ({'amphorae': ['a']}, {'amphorae': [], 'images': []}, None,
     states.FAILED, 'no amphora in service'),
])
def test_verification_after_failover(before, after, want, state, error):
    got_state, got_error, got_after = rotate_images.judge(before, after,
                                                          want)
    assert got_state == state
    assert got_after == after
    if error:
        assert error in got_error
    else:
        assert got_error is None


def test_failover_amphorae_repair_uses_lb_failover_for_error_lbs():
    lbs = {'l1': lb('l1', status='ERROR'), 'l2': lb('l2'),
           'l3': lb('l3', status='PENDING_UPDATE')}
    siblings = {
        'l1': [amp('e1', 'l1', status='ERROR')],
        'l2': [amp('m2', 'l2', 'MASTER', status='ERROR'),
               amp('b2', 'l2', 'BACKUP')],
        'l3': [amp('e3', 'l3', status='ERROR')],
    }
    candidates = [siblings['l1'][0], siblings['l2'][0], siblings['l3'][0],
                  amp('spare', None, status='ERROR')]
    targets, skipped = amphora_plan.select(
        candidates, lbs, siblings, repair=True)
    assert [(t.target, t.action) for t in targets] == [
        ('e1', 'lb-failover'), ('m2', 'amphora-failover')]
    reasons = {t.target: t.reason for t in skipped}
    assert reasons == {
        'e3': 'load balancer is PENDING_UPDATE',
        'spare': 'amphora is not attached to a load balancer (spare)'}


def test_failover_amphorae_without_repair_never_touches_error_lbs():
    lbs = {'l1': lb('l1', status='ERROR')}
    siblings = {'l1': [amp('e1', 'l1')]}
    targets, skipped = amphora_plan.select(
        siblings['l1'], lbs, siblings, missing=['nope'])
    assert targets == []
    assert {t.target: t.reason for t in skipped} == {
        'nope': 'amphora not found', 'e1': 'load balancer is ERROR'}


def test_standby_is_failed_over_before_master():
    lbs = {'l1': lb('l1')}
    siblings = {'l1': [amp('m', 'l1', 'MASTER'), amp('b', 'l1', 'BACKUP')]}
    targets, _ = amphora_plan.select(siblings['l1'], lbs, siblings)
    assert [t.target for t in targets] == ['b', 'm']


def test_certificate_expiry_selection():
    soon = amp('a', 'l', cert='2025-01-05T00:00:00')
    late = amp('b', 'l', cert='2026-01-01T00:00:00')
    unknown = amp('c', 'l', cert=None)
    cutoff = '2025-01-10T00:00:00'
    assert rotate_certificates.expiry_reason(soon, cutoff) is None
    assert 'valid until' in rotate_certificates.expiry_reason(late, cutoff)
    assert rotate_certificates.expiry_reason(unknown, cutoff) is None
    assert rotate_certificates.expiry_reason(late, None) is None


@pytest.mark.parametrize('workflow, raw, message', [
    (rotate_images.WORKFLOW, {}, 'give one of image_id, image_tag'),
    (rotate_images.WORKFLOW, {'image_id': 'x', 'image_tag': 'y'},
     'give only one of'),
    (rotate_images.WORKFLOW, {'older_than_days': '-1'}, 'below the minimum'),
    (rotate_images.WORKFLOW, {'image_tag': 'a', 'concurrency': '0'},
     'below the minimum'),
    (failover_amphorae.WORKFLOW, {'status': 'ACTIVE'}, 'is not one of'),
    (failover_amphorae.WORKFLOW, {}, 'give one of amphorae, status'),
    (rotate_certificates.WORKFLOW, {}, 'give within_days=N'),
    (rotate_certificates.WORKFLOW, {'all': 'true', 'within_days': '3'},
     'give only one of'),
])
def test_bad_parameters_are_one_line_errors(workflow, raw, message):
    with pytest.raises(exceptions.InvalidParameter) as info:
        workflow.validate(raw)
    assert message in str(info.value)
    assert '\n' not in str(info.value)


def test_older_than_zero_is_a_valid_criterion():
    params = rotate_images.WORKFLOW.validate({'older_than_days': '0'})
    assert params['older_than_days'] == 0.0


def _atoms(flow):
    for item in flow:
        if isinstance(item, (linear_flow.Flow, unordered_flow.Flow)):
            if item.retry is not None:
                yield item.retry.name
            yield from _atoms(item)
        else:
            yield item.name


def test_flow_atoms_are_stable_and_unique():
    targets = [{'target': f'lb{n}', 'action': 'lb-failover',
                'details': {'lb': f'lb{n}', 'az': 'az1'}} for n in range(3)]
    params = {'concurrency': 2}
    names = list(_atoms(rotate_images.rotate_images_flow(params, targets)))
    again = list(_atoms(rotate_images.rotate_images_flow(params, targets)))
    assert names == again
    assert len(names) == len(set(names)) == 15
    assert 'rotate-images:lb0:start-retry' in names
    assert 'rotate-images:lb2:act' in names
    compact = list(_atoms(rotate_images.rotate_images_flow_v2(params,
                                                              targets)))
    assert compact == list(_atoms(rotate_images.rotate_images_flow_v2(
        params, targets)))
    assert len(compact) == len(set(compact)) == 6
    assert 'rotate-images:lb0:retry' in compact
    assert 'rotate-images:lb2:steps' in compact


def test_empty_plan_still_builds_a_flow():
    flow = rotate_images.rotate_images_flow({'concurrency': 3}, [])
    assert list(_atoms(flow)) == ['rotate-images:nothing-to-do']
