"""inventory.load gives the same answer whether it fetches load balancers
one by one or picks them out of the full listings."""

from octavia_workflows import exceptions
from octavia_workflows.machinery import inventory


class Cloud:
    """Our cloud interface over plain dicts (unit tests only)."""

    def __init__(self, lbs, amps):
        self.lbs, self.amps, self.calls = lbs, amps, 0

    def get_load_balancer(self, lb_id):
        self.calls += 1
        for lb in self.lbs:
            if lb['id'] == lb_id:
                return lb
        raise exceptions.CloudNotFound(f'no {lb_id}')

    def list_load_balancers(self, **filters):
        self.calls += 1
        return [lb for lb in self.lbs if all(
            lb.get(k) == v for k, v in filters.items() if v is not None)]

    def list_amphorae(self, loadbalancer_id=None, status=None):
        self.calls += 1
        return [a for a in self.amps
                if loadbalancer_id in (None, a['loadbalancer_id'])
                and status in (None, a['status'])]


def _cloud(count):
    lbs = [{'id': f'lb{n}', 'project_id': f'p{n % 2}',
            'flavor_id': None} for n in range(count)]
    amps = [{'id': f'amp{n}-{r}', 'loadbalancer_id': f'lb{n}',
             'status': 'ALLOCATED', 'role': r}
            for n in range(count) for r in ('MASTER', 'BACKUP')]
    return Cloud(lbs, amps)


def test_many_ids_come_from_the_listings_with_the_same_result(monkeypatch):
    cloud = _cloud(60)
    ids = [f'lb{n}' for n in range(0, 50)] + ['gone-1', 'lb3', 'gone-2']
    assert len(set(ids)) > inventory.FETCH_EACH_UP_TO
    fast = inventory.load(cloud, loadbalancers=ids, project='p1')
    assert cloud.calls == 2
    monkeypatch.setattr(inventory, 'FETCH_EACH_UP_TO', 1000)
    slow_cloud = _cloud(60)
    slow = inventory.load(slow_cloud, loadbalancers=ids, project='p1')
    assert slow_cloud.calls > 50                 # really one by one
    assert [lb['id'] for lb in fast.lbs] == [lb['id'] for lb in slow.lbs]
    assert fast.missing == slow.missing == ['gone-1', 'gone-2']
    assert fast.lbs and all(lb['project_id'] == 'p1' for lb in fast.lbs)
    for lb in fast.lbs:
        assert fast.amphorae_of(lb['id']) == slow.amphorae_of(lb['id'])
