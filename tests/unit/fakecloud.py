"""An in-memory cloud speaking the runbooks' client API, and a harness that
drives one target's steps with a "crash" at a chosen point.

The cloud behaves as Octavia, Nova and their no-op drivers do where the
runbooks look: a load-balancer failover makes the load balancer
PENDING_UPDATE and, after a read or two, ACTIVE with new amphorae (a
second failover meanwhile answers 409); an amphora failover replaces that
amphora; a server deletion leaves the server for one read; a disabled
compute service stays disabled.  Every cloud-changing call is counted per
resource in ``calls``.

``Crash`` derives from BaseException, so no step catches it: it stands
for the process dying at that point.  :class:`Harness` runs a target's
steps in a fresh "process" (new context, new run state, new step objects)
each time, like a conductor resuming the job.
"""

import collections
import uuid

from octavia_workflows import exceptions, states
from octavia_workflows.engine import context as ctx_mod
from octavia_workflows.engine import persistence as pers
from octavia_workflows.engine import records as rec


def new_id(prefix):
    """A fresh id (a UUID, as Octavia's and Nova's are; ``prefix`` only
    documents what it is for)."""
    return str(uuid.uuid4())


class Crash(BaseException):
    """The process died here."""


class Cloud:
    """See the module docstring.  ``crash_at(n)`` raises Crash at the
    n-th crash point the cloud passes (before and after every
    cloud-changing call)."""

    SETTLE_READS = 2

    def __init__(self):
        self.lbs = {}
        self.amps = {}
        self.servers = {}
        self.services = {}
        self.calls = collections.Counter()
        #: operating status a failed-over load balancer reports (None:
        #: as before), and after how many reads it is ONLINE again
        #: (None: never)
        self.health_after = None
        self.heals_after = None
        #: reads after a failover settled during which the load balancer
        #: still shows its old status (Octavia's health manager has not
        #: heard from the new amphorae yet)
        self.reports_after = 0
        self._late = {}
        self._sick = {}
        self.points = 0
        self.crash_point = None
        self._pending = {}

    # -- building ----------------------------------------------------------
    def add_lb(self, topology='SINGLE', image='img-old'):
        lb_id = new_id('lb')
        self.lbs[lb_id] = {'id': lb_id, 'provisioning_status': 'ACTIVE',
                           'operating_status': 'ONLINE', 'project_id': 'p1',
                           'provider': 'amphora', 'availability_zone': None,
                           'created_at':
                               f'2026-01-01T00:00:{len(self.lbs):02d}',
                           'topology': topology, 'flavor_id': None}
        roles = ['MASTER', 'BACKUP'] if topology == 'ACTIVE_STANDBY' \
            else ['STANDALONE']
        for role in roles:
            self._amphora(lb_id, role, image, host='host-1')
        return lb_id

    def _amphora(self, lb_id, role, image='img-new', host='host-2'):
        amp_id = new_id('amp')
        server = new_id('srv')
        self.amps[amp_id] = {
            'id': amp_id, 'loadbalancer_id': lb_id, 'status': 'ALLOCATED',
            'role': role, 'image_id': image, 'compute_id': server,
            'cached_zone': 'az1', 'cert_expiration': '2026-02-01T00:00:00',
            'lb_network_ip': '192.0.2.1', 'created_at': '2026-01-01T00:00:00'}
        self.servers[server] = {'id': server, 'name': f'amphora-{amp_id}',
                                'status': 'ACTIVE', 'host': host,
                                'availability_zone': 'az1',
                                'image_id': image, 'task_state': None}
        return amp_id

    def add_server(self, host, name):
        server = new_id('srv')
        self.servers[server] = {'id': server, 'name': name,
                                'status': 'ACTIVE', 'host': host,
                                'availability_zone': 'az1', 'image_id': None,
                                'task_state': None}
        return server

    def add_service(self, host):
        self.services[host] = {'id': new_id('svc'), 'host': host,
                               'status': 'enabled', 'state': 'up',
                               'disabled_reason': None, 'zone': 'az1'}

    # -- crash points ------------------------------------------------------
    def point(self):
        self.points += 1
        if self.crash_point is not None and self.points == self.crash_point:
            self.crash_point = None
            raise Crash(f'crash at point {self.points}')

    def _change(self, what):
        self.point()
        self.calls[what] += 1

    def _done(self):
        self.point()

    # -- Octavia -----------------------------------------------------------
    def _settle(self, lb_id):
        left = self._pending.get(lb_id)
        if left is None:
            return
        if left > 0:
            self._pending[lb_id] = left - 1
            return
        del self._pending[lb_id]
        self.lbs[lb_id]['provisioning_status'] = 'ACTIVE'
        if self.health_after is not None:
            self._late[lb_id] = self.reports_after
            if not self.reports_after:
                self._report(lb_id)

    def _report(self, lb_id):
        left = self._late.get(lb_id)
        if left is None:
            return
        if left > 0:
            self._late[lb_id] = left - 1
            return
        del self._late[lb_id]
        self.lbs[lb_id]['operating_status'] = self.health_after
        self._sick[lb_id] = self.heals_after

    def _heal(self, lb_id):
        if lb_id not in self._sick or self._sick[lb_id] is None:
            return
        if self._sick[lb_id] <= 0:
            del self._sick[lb_id]
            self.lbs[lb_id]['operating_status'] = 'ONLINE'
        else:
            self._sick[lb_id] -= 1

    def get_load_balancer(self, lb_id):
        if lb_id not in self.lbs:
            raise exceptions.CloudNotFound(f'load balancer {lb_id}', 404)
        self._settle(lb_id)
        self._heal(lb_id)
        result = dict(self.lbs[lb_id])
        self._report(lb_id)
        return result

    def list_load_balancers(self, **filters):
        return [self.get_load_balancer(i) for i in list(self.lbs)]

    def list_amphorae(self, **filters):
        found = [dict(a) for a in self.amps.values()]
        for key, value in filters.items():
            if value is not None:
                found = [a for a in found if a.get(key) == value]
        return found

    def get_amphora(self, amp_id):
        if amp_id not in self.amps:
            raise exceptions.CloudNotFound(f'amphora {amp_id}', 404)
        return dict(self.amps[amp_id])

    def get_load_balancer_and_amphorae(self, lb_id):
        return (self.get_load_balancer(lb_id),
                self.list_amphorae(loadbalancer_id=lb_id))

    def _busy(self, lb_id):
        if self.lbs[lb_id]['provisioning_status'] != 'ACTIVE':
            raise exceptions.CloudConflict(f'load balancer {lb_id} is busy',
                                           409)

    def failover_load_balancer(self, lb_id):
        self.get_load_balancer(lb_id)
        self._busy(lb_id)
        self._change(lb_id)
        for amp in [a for a in self.amps.values()
                    if a['loadbalancer_id'] == lb_id
                    and a['status'] == 'ALLOCATED']:
            amp['status'] = 'DELETED'
            self._amphora(lb_id, amp['role'])
        for amp_id in [a for a, v in self.amps.items()
                       if v['status'] == 'DELETED']:
            del self.amps[amp_id]
        self.lbs[lb_id]['provisioning_status'] = 'PENDING_UPDATE'
        self._pending[lb_id] = self.SETTLE_READS
        self._done()

    def failover_amphora(self, amp_id):
        amp = self.get_amphora(amp_id)
        lb_id = amp['loadbalancer_id']
        self._busy(lb_id)
        self._change(amp_id)
        del self.amps[amp_id]
        self._amphora(lb_id, amp['role'])
        self.lbs[lb_id]['provisioning_status'] = 'PENDING_UPDATE'
        self._pending[lb_id] = self.SETTLE_READS
        self._done()

    def configure_amphora(self, amp_id):
        self.get_amphora(amp_id)
        self._change(amp_id)
        self._done()

    def find_images_by_tag(self, tag):
        return [{'id': 'img-new', 'status': 'active'}]

    def get_image(self, image_id):
        return {'id': image_id}

    def list_flavors(self):
        return []

    # -- Nova --------------------------------------------------------------
    def list_servers_on_host(self, host):
        return [dict(s) for s in self.servers.values() if s['host'] == host]

    def get_server(self, server_id):
        server = self.servers.get(server_id)
        if server is None:
            raise exceptions.CloudNotFound(f'server {server_id}', 404)
        if server['task_state'] == 'deleting':
            del self.servers[server_id]         # gone on the next read
        return dict(server)

    def delete_server(self, server_id):
        if server_id not in self.servers:
            raise exceptions.CloudNotFound(f'server {server_id}', 404)
        self._change(server_id)
        self.servers[server_id]['task_state'] = 'deleting'
        self._done()

    def get_compute_service(self, host):
        if host not in self.services:
            raise exceptions.CloudNotFound(f'no service on {host}', 404)
        return dict(self.services[host])

    def disable_compute_service(self, host, reason=None):
        self._change(f'service:{host}')
        self.services[host].update(status='disabled', disabled_reason=reason)
        self._done()
        return dict(self.services[host])


class Claim:
    def __init__(self, owner):
        self.owner = owner
        self.lost = False

    def check(self):
        if self.lost:
            raise exceptions.ClaimLost('gone')


class Harness:
    """One job of ``workflow`` on a real records store, driven target by
    target through the workflow's steps with crashes injected."""

    def __init__(self, store, cloud, flow, params):
        self.store = store
        self.cloud = cloud
        self.flow = flow
        self.params = flow.validate(params)
        self.job_id = new_id('job')
        self.records = store.records
        self.records.create_job(self.job_id, flow.name, self.params,
                                'inline', cloud='fake')
        self.processes = 0

    def plan(self):
        plan = self.flow.plan(ctx_mod.PlanContext(
            self.params, cloud_factory=lambda name: self.cloud), self.params)
        self.records.save_plan(self.job_id,
                               [t.as_dict() for t in plan.targets],
                               [t.as_dict() for t in plan.skipped])
        return plan

    def context(self):
        """A fresh "process": new context, claim and run state; writes
        to the records are crash points too."""
        self.processes += 1
        claim = Claim(f'proc-{self.processes}')
        context = ctx_mod.RunContext(
            self.job_id, self.flow.name, self.params, claim.owner,
            self.records, claim, cloud_name='fake',
            cloud_factory=lambda name: self.cloud)
        write = context.write_target

        def crashing_write(*args, **kwargs):
            self.cloud.point()
            return write(*args, **kwargs)

        context.write_target = crashing_write
        if self.flow.run_state is not None:
            context.run = self.flow.run_state(context)
        return context

    def items(self):
        return [{'target': t['target'], 'action': t['action'],
                 'details': t['details']}
                for t in self.records.get_targets(self.job_id)
                if t['action'] != rec.SKIP_ACTION]

    def steps(self, item):
        """The target's steps as the workflow's current factory builds
        them: one pass object with ``execute(context)``."""
        flow = self.flow.load_factory()(self.params, self.items())
        for task in _tasks(flow):
            make = getattr(task, 'make_steps', None)
            if make is not None and any(i['target'] == item['target']
                                        for i in task.work.items):
                return make(item)
            if getattr(task, 'target', None) == item['target']:
                return task
        raise AssertionError(f'no steps for {item["target"]}')

    def drive(self, item, passes=50):
        """Run one target's steps to its end across crashes; returns how
        many times the "process" died."""
        crashes = 0
        context = self.context()
        steps = self.steps(item)
        for _ in range(passes):
            try:
                steps.execute(context)
            except exceptions.NotYet:
                continue
            except Crash:
                crashes += 1
                context, steps = self.context(), self.steps(item)
                continue
            row = self.records.get_target(self.job_id, item['target'])
            if row['state'] in states.TARGET_FINISHED:
                return crashes
        raise AssertionError(f'{item["target"]} did not end')


def _tasks(flow):
    for item in flow:
        if hasattr(item, 'execute'):
            yield item
        else:
            yield from _tasks(item)


def store(tmp_path):
    """A real persistence store (SQLite file) with its schema."""
    persistence = pers.Persistence(f'sqlite:///{tmp_path}/p.sqlite')
    persistence.records.create_schema()
    return persistence


def fast(monkeypatch):
    """No real waiting in the steps' short checks: each check looks once
    (the fake cloud settles after a few looks)."""
    from octavia_workflows.machinery import retry

    monkeypatch.setattr(retry, 'backoff', lambda *a, **k: None)
    monkeypatch.setattr(retry, 'CHECK_WINDOW', 0.0)
    monkeypatch.setattr(retry, 'MAX_WINDOW', 0.0)
    monkeypatch.setattr(retry, 'TICK', 0.0)
