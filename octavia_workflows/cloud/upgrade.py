"""Cloud calls of the cold-upgrade runbook: is the API back, and the new
amphora image (create with a chosen id, upload, tag, untag).

Functions take a :class:`~octavia_workflows.cloud.client.Cloud` and
raise only :class:`~octavia_workflows.exceptions.CloudError` subclasses
(CloudUnreachable while the API is down, CloudNotFound for a missing
image, ...).  Every change is safe to repeat: the image is created with
an id chosen by the caller, so a repeated step finds the image it made
instead of making a second one.
"""

from octavia_workflows import exceptions
from octavia_workflows.cloud import errors


def api_answers(cloud):
    """True if the load-balancer API answers a listing (any 2xx).

    Returns False while it refuses connections, times out or answers
    5xx; other errors (403, 404) raise: waiting will not fix them.
    """
    what = 'list load balancers'
    try:
        with errors.translated(what):
            response = cloud.conn.load_balancer.get(
                '/lbaas/loadbalancers', params={'limit': 1})
        errors.check_response(response, what)
    except exceptions.CloudTransient:
        return False
    return True


def get_image(cloud, image_id):
    """The image as a dict (``id``, ``name``, ``status``, ``tags``);
    CloudNotFound if it does not exist."""
    return _request(cloud, 'get', f'/images/{image_id}',
                    f'get image {image_id}').json()


def create_image(cloud, image_id, name, disk_format='qcow2',
                 container_format='bare'):
    """Create the image record (status ``queued``) with id ``image_id``.

    CloudConflict if an image with that id exists already.
    """
    body = {'id': image_id, 'name': name, 'disk_format': disk_format,
            'container_format': container_format}
    return _request(cloud, 'post', '/images', f'create image {name}',
                    json=body).json()


def upload_image(cloud, image_id, path):
    """Upload the file at ``path`` as the image's data.

    :raises InvalidParameter: the file cannot be read here.
    """
    try:
        handle = open(path, 'rb')
    except OSError as exc:
        raise exceptions.InvalidParameter(
            f'cannot read image file {path}: {exc.strerror}') from None
    with handle:
        _request(cloud, 'put', f'/images/{image_id}/file',
                 f'upload image {image_id}', data=handle,
                 headers={'Content-Type': 'application/octet-stream'})


def tag_image(cloud, image_id, tag):
    _request(cloud, 'put', f'/images/{image_id}/tags/{tag}',
             f'tag image {image_id} {tag}')


def untag_image(cloud, image_id, tag):
    """Remove ``tag``; an image or tag already gone is fine."""
    try:
        _request(cloud, 'delete', f'/images/{image_id}/tags/{tag}',
                 f'untag image {image_id} {tag}')
    except exceptions.CloudNotFound:
        pass


def _request(cloud, method, path, what, **kwargs):
    with errors.translated(what):
        response = getattr(cloud.conn.image, method)(path, **kwargs)
    errors.check_response(response, what)
    return response
