"""Thin verb_noun calls to Octavia, Glance and Nova through openstacksdk.

Every method returns JSON-simple data (dicts of the API's own fields,
lists of them) so that callers can store results in job records and
tests can compare them, and raises only
:class:`~octavia_workflows.exceptions.CloudError` subclasses.  Listings
follow Octavia's marker pagination and avoid building openstacksdk
resource objects, so a plan over ten thousand load balancers stays fast.
"""

import concurrent.futures
import logging
import threading

from octavia_workflows import exceptions
from octavia_workflows.cloud import errors

LOG = logging.getLogger(__name__)

#: Page size for Octavia listings (Octavia's default maximum).
PAGE = 1000

LB_PATH = '/lbaas/loadbalancers'
AMPHORA_PATH = '/octavia/amphorae'
FLAVOR_PATH = '/lbaas/flavors'


def connect(name):
    """A :class:`Cloud` for the clouds.yaml entry ``name``.

    :raises CloudConfigError: no name, unknown cloud, unusable entry.
    """
    if not name:
        raise exceptions.CloudConfigError(
            'no cloud configured: pass --os-cloud NAME or set [cloud] name')
    import openstack

    with errors.translated(f'cloud {name}'):
        # OS_CLIENT_CONFIG_FILE (and the usual clouds.yaml places) apply;
        # the cloud itself is always the named entry.
        conn = openstack.connect(cloud=name, app_name='octavia-workflows')
    return Cloud(conn, name)


class Cloud:
    """One cloud's API (see the module docstring)."""

    #: Reads a :class:`Cloud` makes side by side (:meth:`read_both`).
    READERS = 4

    def __init__(self, connection, name=None):
        self.conn = connection
        self.name = name
        self._readers = None
        self._readers_lock = threading.Lock()

    def __repr__(self):
        return f'<Cloud {self.name}>'

    # -- plumbing ---------------------------------------------------------
    def _get(self, service, path, what, params=None):
        with errors.translated(what):
            # Reaching the proxy runs version discovery: it may fail too.
            response = getattr(self.conn, service).get(path, params=params)
        errors.check_response(response, what)
        try:
            return response.json()
        except ValueError as exc:
            raise exceptions.CloudTransient(
                f'{what}: the answer is not JSON') from exc

    def _put(self, service, path, what, body=None):
        with errors.translated(what):
            response = getattr(self.conn, service).put(path, json=body)
        errors.check_response(response, what)

    def _delete(self, service, path, what, params=None):
        with errors.translated(what):
            response = getattr(self.conn, service).delete(path,
                                                          params=params)
        errors.check_response(response, what)

    def read_both(self, first, second):
        """``(first(), second())``, the two reads made side by side (one
        round trip instead of two before a target starts).

        :raises: what ``first`` raises, else what ``second`` raises
            (``second`` is then left to finish on its own).
        """
        with self._readers_lock:
            if self._readers is None:
                self._readers = concurrent.futures.ThreadPoolExecutor(
                    self.READERS, thread_name_prefix='cloud-read')
        later = self._readers.submit(second)
        return first(), later.result()

    def _list(self, path, key, what, filters):
        """All items of an Octavia collection (marker pagination)."""
        params = {k: v for k, v in (filters or {}).items() if v is not None}
        params['limit'] = PAGE
        items = []
        while True:
            page = self._get('load_balancer', path, what, params)
            batch = page.get(key) or []
            items.extend(batch)
            links = page.get(f'{key}_links') or []
            more = any(link.get('rel') == 'next' for link in links)
            if not batch or not more:
                return items
            params['marker'] = batch[-1]['id']

    # -- load balancers ---------------------------------------------------
    def list_load_balancers(self, **filters):
        """Load balancers (dicts), optionally filtered by API fields."""
        return self._list(LB_PATH, 'loadbalancers', 'list load balancers',
                          filters)

    def get_load_balancer(self, lb_id):
        """One load balancer (dict); CloudNotFound if it is gone."""
        return self._get('load_balancer', f'{LB_PATH}/{lb_id}',
                         f'get load balancer {lb_id}')['loadbalancer']

    def failover_load_balancer(self, lb_id):
        """Ask Octavia to fail over all amphorae of a load balancer.

        Octavia sets the load balancer PENDING_UPDATE before answering
        202; CloudConflict (409) while it is PENDING_* already.
        """
        self._put('load_balancer', f'{LB_PATH}/{lb_id}/failover',
                  f'failover load balancer {lb_id}')

    def delete_load_balancer(self, lb_id, cascade=False):
        """Ask Octavia to delete a load balancer (``cascade``: with its
        listeners, pools and members).  Octavia sets it PENDING_DELETE
        before answering 204; CloudConflict (409) while it is PENDING_*,
        CloudNotFound once it is gone."""
        self._delete('load_balancer', f'{LB_PATH}/{lb_id}',
                     f'delete load balancer {lb_id}',
                     params={'cascade': 'true'} if cascade else None)

    def get_load_balancer_and_amphorae(self, lb_id):
        """``(load balancer, its amphorae)``, read side by side.

        :raises CloudNotFound: the load balancer is gone.
        """
        return self.read_both(
            lambda: self.get_load_balancer(lb_id),
            lambda: self.list_amphorae(loadbalancer_id=lb_id))

    # -- amphorae ---------------------------------------------------------
    def list_amphorae(self, **filters):
        """Amphorae (dicts), e.g. ``loadbalancer_id=`` or ``status=``."""
        return self._list(AMPHORA_PATH, 'amphorae', 'list amphorae', filters)

    def get_amphora(self, amphora_id):
        """One amphora (dict); CloudNotFound if it is gone."""
        return self._get('load_balancer',
                         f'{AMPHORA_PATH}/{amphora_id}',
                         f'get amphora {amphora_id}')['amphora']

    def failover_amphora(self, amphora_id):
        """Ask Octavia to replace one amphora (409 unless its load
        balancer is ACTIVE)."""
        self._put('load_balancer',
                  f'{AMPHORA_PATH}/{amphora_id}/failover',
                  f'failover amphora {amphora_id}')

    def configure_amphora(self, amphora_id):
        """Push the control plane's agent configuration to an amphora."""
        self._put('load_balancer',
                  f'{AMPHORA_PATH}/{amphora_id}/config',
                  f'configure amphora {amphora_id}')

    # -- flavors ----------------------------------------------------------
    def list_flavors(self):
        """Octavia flavors (dicts with ``id`` and ``name``)."""
        return self._list(FLAVOR_PATH, 'flavors', 'list flavors', {})

    # -- images (Glance) ----------------------------------------------------
    def find_images_by_tag(self, tag):
        """Active images carrying ``tag``, newest first (dicts with
        ``id``, ``name``, ``created_at``, ``tags``) -- the same choice
        Octavia makes when it boots an amphora from ``amp_image_tag``."""
        what = f'find images tagged {tag}'
        with errors.translated(what):
            images = [_image(i) for i in self.conn.image.images(
                tag=tag, status='active')]
        images = [i for i in images if i['status'] == 'active'
                  and tag in i['tags']]
        images.sort(key=lambda i: (i['created_at'] or '', i['id']),
                    reverse=True)
        return images

    def get_image(self, image_id):
        """One image (dict); CloudNotFound if it does not exist."""
        with errors.translated(f'get image {image_id}'):
            return _image(self.conn.image.get_image(image_id))

    # -- compute (Nova) -----------------------------------------------------
    def list_servers_on_host(self, host):
        """Servers on a compute host (dicts: ``id``, ``name``,
        ``status``, ``host``, ``availability_zone``, ``image_id``)."""
        with errors.translated(f'list servers on host {host}'):
            servers = self.conn.compute.servers(
                all_projects=True, compute_host=host, details=True)
            return [_server(s) for s in servers]

    def get_server(self, server_id):
        """One server (dict as in :meth:`list_servers_on_host`);
        CloudNotFound if it does not exist."""
        with errors.translated(f'get server {server_id}'):
            return _server(self.conn.compute.get_server(server_id))

    def delete_server(self, server_id):
        """Delete a server; CloudNotFound if it is already gone."""
        with errors.translated(f'delete server {server_id}'):
            self.conn.compute.delete_server(server_id, ignore_missing=False)

    def get_compute_service(self, host):
        """The nova-compute service of ``host`` (dict: ``id``, ``host``,
        ``status``, ``state``, ``disabled_reason``, ``zone``);
        CloudNotFound if the host has none."""
        what = f'get compute service of host {host}'
        with errors.translated(what):
            found = [_service(s) for s in self.conn.compute.services(
                binary='nova-compute', host=host)]
        found = [s for s in found if s['host'] == host]
        if not found:
            raise exceptions.CloudNotFound(
                f'{what}: no nova-compute service on host {host}', 404)
        return found[0]

    def disable_compute_service(self, host, reason=None):
        """Stop Nova from scheduling new servers on ``host`` (its
        nova-compute service becomes ``disabled`` with ``reason``);
        returns the service.  Disabling a disabled service is harmless.
        """
        service = self.get_compute_service(host)
        with errors.translated(f'disable compute service of host {host}'):
            result = self.conn.compute.disable_service(
                service['id'], host=host, binary='nova-compute',
                disabled_reason=reason or None)
        return _service(result)


def _image(image):
    return {'id': image.id, 'name': image.name, 'status': image.status,
            'created_at': image.created_at, 'tags': list(image.tags or [])}


def _server(server):
    image = server.image or {}
    return {'id': server.id, 'name': server.name, 'status': server.status,
            'task_state': getattr(server, 'task_state', None),
            'host': server.compute_host,
            'availability_zone': server.availability_zone,
            'image_id': image.get('id') if isinstance(image, dict) else None}


def _service(service):
    return {'id': service.id, 'host': service.host,
            'status': service.status, 'state': service.state,
            'disabled_reason': service.disabled_reason,
            'zone': service.availability_zone}
