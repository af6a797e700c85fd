"""Zero-second load-balancer failovers: a worker for benchmarks only.

Octavia's worker spends about 0.8 s of CPU on one no-op load-balancer
failover (its TaskFlow flow of some forty tasks, certificate signing,
amphora driver calls), so 10,000 failovers take hours on a small machine
whatever the client does.  A benchmark of what the client does per load
balancer at that scale starts the sandbox with ``fast_failovers=True``
(``tools/sandbox start --fast-failovers``): this module then runs instead
of ``octavia-worker``.  It is never the default, and the tests that check
Octavia's behaviour do not use it.

It is the stock worker's service (cotyledon, one child, the oslo.messaging
RPC server on topic ``octavia_provisioning_v2``, Octavia's own
``Endpoints`` and ``ControllerWorker``: creates, deletes, amphora failovers
and configuration pushes run Octavia's flows as before) with one method
replaced: ``failover_load_balancer`` -- the cast the API's amphora
provider driver sends for ``PUT /v2/lbaas/loadbalancers/{id}/failover``,
payload ``load_balancer_id`` -- finishes the failover in Octavia's
database the way its failover flow ends:

- each amphora not DELETED is replaced by a new one (SINGLE: STANDALONE;
  ACTIVE_STANDBY: BACKUP then MASTER, VRRP priorities 90 and 100) booted
  through the configured compute driver by Octavia's own ``ComputeCreate``
  task (the sandbox driver picks the image carrying ``amp_image_tag``,
  places the VM on a stand-in host, honours the injection knobs), and
  stored ALLOCATED with its ``compute_id``, ``image_id``, ``cached_zone``,
  ``compute_flavor`` and ``lb_network_ip`` from the compute driver, the
  VIP's ``ha_ip``/``ha_port_id``, a new VRRP port and address, and
  ``cert_expiration`` now plus ``[certificates] cert_validity_time``;
- the old amphorae are DELETED (their rows stay, as Octavia leaves them
  for housekeeping), their health rows removed and their VMs deleted;
- the load balancer and its listeners and pools go back to ACTIVE
  (Octavia's ``MarkLBActiveInDB`` task, ``mark_subobjects=True``); the
  operating status is left as it was, as a no-op failover leaves it.

A failure (e.g. an injected ``compute.build`` fault) leaves the load
balancer in ERROR, as the stock worker does.  Nothing is sent to the
amphorae (no listener or VRRP configuration): the benchmark is about the
API's and the client's side.
"""

import datetime
import multiprocessing
import sys

import cotyledon
from cotyledon import oslo_config_glue
from octavia.common import constants, rpc
from octavia.common import service as octavia_service
from octavia.controller.queue.v2 import consumer, endpoints
from octavia.controller.worker.v2.tasks import compute_tasks, database_tasks
from octavia.db import api as db_apis
from octavia.db import models, repositories
from oslo_config import cfg
from oslo_log import log as logging
import oslo_messaging as messaging
from oslo_utils import uuidutils

CONF = cfg.CONF
LOG = logging.getLogger(__name__)

#: Roles of the new amphorae in the order Octavia's flow builds them.
ROLES = {constants.TOPOLOGY_SINGLE: (constants.ROLE_STANDALONE,),
         constants.TOPOLOGY_ACTIVE_STANDBY: (constants.ROLE_BACKUP,
                                             constants.ROLE_MASTER)}
PRIORITY = {constants.ROLE_MASTER: constants.ROLE_MASTER_PRIORITY,
            constants.ROLE_BACKUP: constants.ROLE_BACKUP_PRIORITY}


class FastEndpoints(endpoints.Endpoints):
    """Octavia's v2 endpoints with an immediate load-balancer failover."""

    def __init__(self):
        super().__init__()
        self.repos = repositories.Repositories()
        self.compute_create = compute_tasks.ComputeCreate()
        self.compute = self.compute_create.compute
        self.mark_active = database_tasks.MarkLBActiveInDB(
            mark_subobjects=True)
        self._vrrp_ips = 0

    def failover_load_balancer(self, context, load_balancer_id):
        LOG.info("Failing over load balancer '%s' (sandbox: zero-second "
                 "failover)...", load_balancer_id)
        try:
            self._failover(load_balancer_id)
        except Exception as exc:
            LOG.exception("LB %s failover exception: %s", load_balancer_id,
                          exc)
            with db_apis.session().begin() as session:
                self.repos.load_balancer.update(
                    session, load_balancer_id,
                    provisioning_status=constants.ERROR)
            return
        LOG.info("Failover of load balancer %s completed successfully.",
                 load_balancer_id)

    def _failover(self, lb_id):
        with db_apis.session().begin() as session:
            # The API sends the cast before it commits PENDING_UPDATE:
            # the row lock makes this wait for that commit.
            lb = session.query(models.LoadBalancer).filter_by(
                id=lb_id).with_for_update().first()
            if lb is None:
                raise LookupError(f"load balancer {lb_id} not found")
            old = [(a.id, a.compute_id) for a in lb.amphorae
                   if a.status != constants.DELETED]
            vip = (lb.vip.ip_address, lb.vip.port_id) if lb.vip else (
                None, None)
            flavor = {}
            if lb.flavor_id:
                flavor = self.repos.flavor.get_flavor_metadata_dict(
                    session, lb.flavor_id)
            flavor[constants.LOADBALANCER_TOPOLOGY] = lb.topology
            zone = {}
            if lb.availability_zone:
                zone = self.repos.availability_zone \
                    .get_availability_zone_metadata_dict(
                        session, lb.availability_zone)
            roles = ROLES.get(lb.topology)
            server_group = lb.server_group_id
        if roles is None:
            raise ValueError(f"unknown topology {lb.topology}")
        new = [self._boot(role, flavor, zone, server_group, vip)
               for role in roles]
        with db_apis.session().begin() as session:
            for fields in new:
                session.add(models.Amphora(load_balancer_id=lb_id,
                                           **fields))
            for amp_id, _ in old:
                self.repos.amphora.update(session, amp_id,
                                          status=constants.DELETED)
                session.query(models.AmphoraHealth).filter_by(
                    amphora_id=amp_id).delete()
        for _, compute_id in old:
            if compute_id:
                self.compute.delete(compute_id)
        self.mark_active.execute({constants.LOADBALANCER_ID: lb_id})

    def _boot(self, role, flavor, zone, server_group, vip):
        """The fields of a new amphora, its VM built and read back."""
        amp_id = uuidutils.generate_uuid()
        compute_id = self.compute_create.execute(
            amp_id, server_group, flavor=flavor, availability_zone=zone)
        info, _ = self.compute.get_amphora(
            compute_id, zone.get(constants.MANAGEMENT_NETWORK))
        now = datetime.datetime.now(datetime.timezone.utc).replace(
            tzinfo=None, microsecond=0)
        self._vrrp_ips += 1
        n = self._vrrp_ips
        return dict(
            id=amp_id, compute_id=compute_id,
            status=constants.AMPHORA_ALLOCATED, role=role,
            vrrp_priority=PRIORITY.get(role),
            vrrp_interface=None if role == constants.ROLE_STANDALONE
            else "eth1",
            vrrp_id=1, vrrp_ip=f"174.{(n >> 16) & 255}.{(n >> 8) & 255}."
            f"{n & 255}",
            vrrp_port_id=uuidutils.generate_uuid(),
            ha_ip=vip[0], ha_port_id=vip[1],
            lb_network_ip=info.lb_network_ip, cached_zone=info.cached_zone,
            image_id=info.image_id, compute_flavor=info.compute_flavor,
            cert_expiration=now + datetime.timedelta(
                seconds=CONF.certificates.cert_validity_time),
            cert_busy=False)


class FastConsumerService(consumer.ConsumerService):
    """Octavia's v2 consumer service serving :class:`FastEndpoints`."""

    def run(self):
        LOG.info("Starting V2 consumer (sandbox: zero-second load-balancer "
                 "failovers)...")
        target = messaging.Target(topic=self.topic, server=self.server,
                                  fanout=False)
        self.endpoints = [FastEndpoints()]
        self.message_listener = rpc.get_server(
            target, self.endpoints, access_policy=self.access_policy)
        self.message_listener.start()


def main():
    """``octavia-worker``'s main with :class:`FastConsumerService`."""
    octavia_service.prepare_service(sys.argv)
    manager = cotyledon.ServiceManager(
        mp_context=multiprocessing.get_context("fork"))
    manager.add(FastConsumerService,
                workers=CONF.controller_worker.workers, args=(CONF,))
    oslo_config_glue.setup(manager, CONF, reload_method="mutate")
    manager.run()


if __name__ == "__main__":
    main()
