"""The fleet census over plain dicts (no cloud), its rows and charts, and
the gauges set from it."""

import datetime

import prometheus_client

from octavia_workflows.cli import audit
from octavia_workflows.cloud import census
from octavia_workflows.engine import fleet_census as fleet

NOW = datetime.datetime(2026, 12, 1, 12, 0, 0)
TAG = 'amphora'


def ago(**delta):
    return (NOW - datetime.timedelta(**delta)).isoformat()


def ahead(**delta):
    return (NOW + datetime.timedelta(**delta)).isoformat()


def lb(lb_id, prov='ACTIVE', op='ONLINE', updated=None):
    return {'id': lb_id, 'name': f'name-{lb_id}', 'provisioning_status': prov,
            'operating_status': op, 'created_at': ago(days=400),
            'updated_at': updated}


def amp(amp_id, lb_id, role='STANDALONE', status='ALLOCATED', image='old',
        created=None, cert=None):
    return {'id': amp_id, 'loadbalancer_id': lb_id, 'role': role,
            'status': status, 'image_id': image,
            'created_at': created or ago(days=3),
            'cert_expiration': cert or ahead(days=100)}


IMAGES = {
    'old': {'id': 'old', 'name': 'amphora-2025', 'tags': [TAG],
            'created_at': ago(days=200) + 'Z', 'status': 'active'},
    'new': {'id': 'new', 'name': 'amphora-2026', 'tags': [TAG, 'jammy'],
            'created_at': ago(days=2) + 'Z', 'status': 'active'},
}
TAGGED = [IMAGES['new'], IMAGES['old']]


def fleet_dicts():
    lbs = [lb('a'), lb('b'), lb('c', op='OFFLINE'),
           lb('s1', prov='PENDING_UPDATE', updated=ago(minutes=90)),
           lb('s2', prov='PENDING_DELETE', updated=ago(minutes=5)),
           lb('e', prov='ERROR', op='ERROR'), lb('bare')]
    amps = [
        amp('a1', 'a', image='new', cert=ago(days=1)),          # expired
        amp('b1', 'b', role='MASTER', cert=ahead(days=3)),      # < 7
        amp('b2', 'b', role='BACKUP', image='new', cert=ahead(days=20)),
        amp('c1', 'c', image='gone', created=ago(days=500)),
        amp('s11', 's1', status='ERROR', created=ago(hours=2)),
        amp('e1', 'e', status='FAILOVER_STOPPED', image=None),
        amp('old1', 'a', status='DELETED', cert=ago(days=300)),
        amp('pd', 's2', status='PENDING_DELETE'),
        amp('spare', None, status='READY', image='new', cert=ahead(days=3)),
    ]
    return lbs, amps


def take(**kwargs):
    lbs, amps = fleet_dicts()
    images = {k: v for k, v in IMAGES.items()}
    return census.census(lbs, amps, images, kwargs.pop('tagged', TAGGED),
                         TAG, now=NOW, **kwargs)


def test_load_balancers_by_status_and_topology():
    doc = take()['load_balancers']
    assert doc['total'] == 7
    assert doc['by_provisioning_status'] == {
        'ACTIVE': 4, 'ERROR': 1, 'PENDING_DELETE': 1, 'PENDING_UPDATE': 1}
    assert doc['by_operating_status'] == {'ERROR': 1, 'OFFLINE': 1,
                                          'ONLINE': 5}
    assert {'provisioning_status': 'ACTIVE', 'operating_status': 'ONLINE',
            'count': 3} in doc['by_status']
    assert sum(r['count'] for r in doc['by_status']) == 7
    # s2's only amphora is going away: no live amphorae, like 'bare'
    assert doc['by_topology'] == {'ACTIVE_STANDBY': 1, 'NONE': 2,
                                  'SINGLE': 4}


def test_amphorae_by_status_and_age():
    doc = take()['amphorae']
    assert doc['total'] == 9 and doc['live'] == 7
    assert doc['by_status'] == {'ALLOCATED': 4, 'DELETED': 1, 'ERROR': 1,
                                'FAILOVER_STOPPED': 1, 'PENDING_DELETE': 1,
                                'READY': 1}
    ages = {r['bucket']: r['count'] for r in doc['by_age']}
    assert ages == {'< 1 day': 1, '< 7 days': 5, '< 30 days': 0,
                    '< 90 days': 0, '< 1 year': 0, 'older': 1, 'unknown': 0}


def test_images_and_the_newest_tagged_one():
    doc = take()['images']
    assert doc['newest'] == {'id': 'new', 'name': 'amphora-2026',
                             'created_at': ago(days=2) + 'Z'}
    rows = {r['id']: r for r in doc['by_image']}
    assert rows['new']['amphorae'] == 3 and rows['new']['newest']
    assert rows['new']['load_balancers'] == 2          # a, b (spare: none)
    assert rows['old']['amphorae'] == 2 and not rows['old']['newest']
    assert rows['old']['age_days'] == 200.0
    assert rows['gone']['known'] is False and rows['gone']['name'] is None
    assert rows[None]['amphorae'] == 1                  # e1: no image
    # old (b1, s11), gone (c1), none (e1): unknown ones count as stale
    assert doc['amphorae_not_newest'] == 4
    assert doc['load_balancers_not_newest'] == 4        # b, c, s1, e


def test_no_tagged_image_means_no_comparison_and_a_note():
    doc = take(tagged=[])
    assert doc['images']['newest'] is None
    assert doc['images']['amphorae_not_newest'] is None
    assert not [f for f in doc['findings'] if f['problem'] == 'stale-image']
    assert any('no active image carries the tag' in n for n in doc['notes'])


def test_certificate_buckets_and_soonest():
    doc = take()['certificates']
    buckets = {r['bucket']: r['count'] for r in doc['by_expiry']}
    # live only: a1 expired; b1, spare < 7; b2 < 30; c1, s11, e1 later
    assert buckets == {'expired': 1, '< 7 days': 2, '< 30 days': 1,
                       'later': 3, 'unknown': 0}
    assert doc['soonest_amphora'] == 'a1'
    assert doc['soonest_seconds'] == -86400
    assert doc['expired'] == 1 and doc['within_warn_days'] == 4


def test_stuck_is_pending_and_older_than_the_limit():
    doc = take()['stuck']
    assert doc['pending'] == 2 and doc['count'] == 1
    assert doc['load_balancers'][0]['id'] == 's1'
    assert doc['load_balancers'][0]['age_minutes'] == 90.0
    assert take(older_than_minutes=1)['stuck']['count'] == 2
    assert take(older_than_minutes=120)['stuck']['count'] == 0


def test_every_finding_names_its_runbook_command():
    doc = take()
    assert doc['error_amphorae'] == ['s11']
    assert doc['failover_stopped_amphorae'] == ['e1']
    found = {f['problem']: f for f in doc['findings']}
    assert found['stale-image']['command'] == (
        'octavia-workflow submit rotate-images --param image_tag=amphora')
    assert found['stale-image']['count'] == 4
    assert found['certificate-expiry']['command'].endswith(
        'rotate-certificates --param within_days=30')
    assert found['stuck-load-balancers']['command'].endswith(
        'repair-stuck --param older_than_minutes=60 --param apply=true')
    assert found['amphorae-error']['command'].endswith(
        'failover-amphorae --param status=ERROR')
    assert found['amphorae-failover-stopped']['command'].endswith(
        'failover-amphorae --param status=FAILOVER_STOPPED')


def test_a_healthy_fleet_has_no_findings():
    lbs = [lb('a')]
    amps = [amp('a1', 'a', image='new')]
    doc = census.census(lbs, amps, IMAGES, TAGGED, TAG, now=NOW)
    assert doc['findings'] == [] and doc['notes'] == []
    assert doc['certificates']['soonest_seconds'] == 100 * 86400


def test_odd_timestamps_land_in_unknown():
    amps = [dict(amp('x', None), created_at='garbage', cert_expiration=None)]
    doc = census.census([], amps, {}, [], TAG, now=NOW)
    assert doc['amphorae']['by_age'][-1] == {'bucket': 'unknown',
                                             'count': 1}
    assert doc['certificates']['by_expiry'][-1] == {'bucket': 'unknown',
                                                    'count': 1}
    assert doc['certificates']['soonest'] is None


def test_rows_and_charts():
    doc = take()
    plain = audit.rows(doc)
    assert ('load_balancers', 'total', 7, '', False) in plain
    cert = [r for r in plain if r[0] == 'certificate_expiry']
    assert [r[1] for r in cert] == ['expired', '< 7 days', '< 30 days',
                                    'later', 'soonest']
    assert [r[4] for r in cert] == [True] * 4 + [False]
    charted = audit.with_charts(plain)
    bars = {r[1]: r[3] for r in charted if r[0] == 'certificate_expiry'}
    assert bars['later'] == '█' * audit.CHART_WIDTH     # the largest
    assert len(bars['expired']) < len(bars['< 7 days']) < len(bars['later'])
    assert all(r[3] == '' for r in charted if r[0] == 'load_balancers')
    findings = [r for r in plain if r[0] == 'finding']
    assert len(findings) == len(doc['findings']) == 5


def test_bar():
    assert audit.bar(0, 10) == '' and audit.bar(3, 0) == ''
    assert audit.bar(10, 10, width=4) == '████'
    assert audit.bar(1, 1000, width=4) == '▏'           # never invisible
    assert audit.bar(5, 10, width=3) == '█▌'


def test_gauges_from_a_census():
    registry = prometheus_client.CollectorRegistry()
    gauges = fleet.FleetGauges(registry)

    def value(name, **labels):
        return registry.get_sample_value(f'octavia_workflows_fleet_{name}',
                                         labels)

    gauges.update(take(), seconds=1.5, when=1000.0)
    assert value('loadbalancers', provisioning_status='ACTIVE',
                 operating_status='ONLINE') == 3
    assert value('amphorae', image='new') == 3
    assert value('amphorae', image='none') == 1
    assert value('amphorae_by_status', status='FAILOVER_STOPPED') == 1
    assert value('amphorae_not_newest_image', tag=TAG) == 4
    assert value('certificates', expiry='lt_7_days') == 2
    assert value('certificate_expiry_soonest_seconds') == -86400
    assert value('stuck_loadbalancers') == 1
    assert value('audit_timestamp_seconds') == 1000.0
    # a status that vanished from the fleet vanishes from the gauges
    lbs, amps = [lb('a')], [amp('a1', 'a', image='new')]
    gauges.update(census.census(lbs, amps, IMAGES, TAGGED, TAG, now=NOW))
    assert value('amphorae_by_status', status='FAILOVER_STOPPED') is None
    assert value('amphorae', image='old') is None
    assert value('stuck_loadbalancers') == 0
    gauges.clear()
    assert value('amphorae', image='new') is None
    assert value('audit_leader') == 0


def test_slug():
    assert fleet.slug('< 7 days') == 'lt_7_days'
    assert fleet.slug('expired') == 'expired'
    assert fleet.slug('< 1 year') == 'lt_1_year'
