"""The one place where openstacksdk and keystoneauth errors are translated.

Everything below :mod:`octavia_workflows.cloud` raises only
:class:`~octavia_workflows.exceptions.CloudError` subclasses (and
:class:`~octavia_workflows.exceptions.CloudConfigError` for an unusable
clouds.yaml entry), always with ``raise ... from`` so the original error
stays attached for ``--debug``.  Messages never contain credentials: only
the operation, the HTTP status and the service's own one-line reason.
"""

import contextlib
import json

from octavia_workflows import exceptions

#: HTTP statuses worth retrying later.
TRANSIENT_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


def _reason(text):
    """The service's one-line reason from an error body (JSON or text)."""
    text = (text or '').strip()
    if not text:
        return ''
    try:
        body = json.loads(text)
    except ValueError:
        return text.splitlines()[0][:300]
    if isinstance(body, dict):
        for key in ('faultstring', 'message', 'description', 'title'):
            if isinstance(body.get(key), str):
                return body[key].splitlines()[0][:300]
        for value in body.values():
            if isinstance(value, dict) and isinstance(value.get('message'),
                                                      str):
                return value['message'].splitlines()[0][:300]
    return text.splitlines()[0][:300]


def for_status(status, what, reason=''):
    """The CloudError subclass instance for an HTTP ``status``."""
    message = f'{what}: HTTP {status}' + (f': {reason}' if reason else '')
    if status == 404:
        return exceptions.CloudNotFound(message, status)
    if status == 409:
        return exceptions.CloudConflict(message, status)
    if status in TRANSIENT_STATUSES or status >= 500:
        return exceptions.CloudTransient(message, status)
    return exceptions.CloudRequestError(message, status)


def check_response(response, what):
    """Raise the translated error unless ``response`` is a 2xx."""
    if 200 <= response.status_code < 300:
        return response
    raise for_status(response.status_code, what, _reason(response.text))


def translate(exc, what):
    """The CloudError for an openstacksdk/keystoneauth exception."""
    from keystoneauth1 import exceptions as ks_exc
    from openstack import exceptions as sdk_exc

    if isinstance(exc, exceptions.OctaviaWorkflowsError):
        return exc
    if isinstance(exc, (sdk_exc.ConfigException, ks_exc.AuthPluginException,
                        ks_exc.MissingRequiredOptions,
                        ks_exc.NoMatchingPlugin, ks_exc.OptionError)):
        return exceptions.CloudConfigError(f'{what}: {_line(exc)}')
    status = getattr(exc, 'status_code', None) or getattr(
        exc, 'http_status', None)
    if isinstance(status, int):
        reason = getattr(exc, 'details', None) or ''
        response = getattr(exc, 'response', None)
        if not reason and response is not None:
            reason = _reason(getattr(response, 'text', ''))
        return for_status(status, what, _line(reason) if reason else '')
    if isinstance(exc, (ks_exc.ConnectFailure, ks_exc.ConnectTimeout,
                        ks_exc.DiscoveryFailure, ks_exc.EndpointNotFound,
                        ks_exc.UnknownConnectionError)):
        return exceptions.CloudUnreachable(
            f'{what}: cannot reach the cloud: {_line(exc)}')
    if isinstance(exc, (ks_exc.RetriableConnectionFailure,
                        ks_exc.RequestTimeout)):
        return exceptions.CloudTransient(f'{what}: {_line(exc)}')
    if isinstance(exc, (ks_exc.ClientException, sdk_exc.SDKException)):
        return exceptions.CloudRequestError(f'{what}: {_line(exc)}')
    return None


@contextlib.contextmanager
def translated(what):
    """Run the block; re-raise SDK/keystoneauth errors as CloudError."""
    try:
        yield
    except Exception as exc:
        mapped = translate(exc, what)
        if mapped is None or mapped is exc:
            raise
        raise mapped from exc


def _line(value):
    text = str(value).strip()
    return text.splitlines()[0][:300] if text else type(value).__name__
