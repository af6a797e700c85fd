"""Translation of openstacksdk / keystoneauth errors at the cloud boundary."""

from keystoneauth1 import exceptions as ks_exc
from openstack import exceptions as sdk_exc
import pytest
import requests

from octavia_workflows import exceptions
from octavia_workflows.cloud import errors


def _response(status, body):
    response = requests.Response()
    response.status_code = status
    response._content = body.encode()
    return response


@pytest.mark.parametrize('status, cls, transient', [
    (404, exceptions.CloudNotFound, False),
    (409, exceptions.CloudConflict, False),
    (400, exceptions.CloudRequestError, False),
    (403, exceptions.CloudRequestError, False),
    (500, exceptions.CloudTransient, True),
    (503, exceptions.CloudTransient, True),
    (429, exceptions.CloudTransient, True),
])
def test_http_status_mapping(status, cls, transient):
    body = '{"faultcode": "Client", "faultstring": "Load Balancer x is ' \
        'immutable and cannot be updated.", "debuginfo": null}'
    with pytest.raises(cls) as info:
        errors.check_response(_response(status, body), 'failover x')
    assert info.value.status == status
    assert info.value.transient is transient
    assert str(info.value) == (f'failover x: HTTP {status}: Load Balancer x '
                               'is immutable and cannot be updated.')


def test_success_passes_through():
    response = _response(202, '')
    assert errors.check_response(response, 'x') is response


def test_sdk_and_keystoneauth_errors_are_translated_with_cause():
    with pytest.raises(exceptions.CloudConflict) as info:
        with errors.translated('failover lb'):
            raise sdk_exc.ConflictException(
                'busy', response=_response(409, ''))
    assert isinstance(info.value.__cause__, sdk_exc.ConflictException)
    with pytest.raises(exceptions.CloudUnreachable) as info:
        with errors.translated('list'):
            raise ks_exc.ConnectFailure('refused')
    assert info.value.transient
    # also a BackendUnavailable: the runner retries the job later
    assert isinstance(info.value, exceptions.BackendUnavailable)
    with pytest.raises(exceptions.CloudConfigError):
        with errors.translated('cloud x'):
            raise sdk_exc.ConfigException('Cloud x was not found.')


def test_other_errors_are_not_swallowed():
    with pytest.raises(KeyError):
        with errors.translated('x'):
            raise KeyError('bug')


def test_missing_cloud_name_is_a_config_error():
    from octavia_workflows import cloud

    with pytest.raises(exceptions.CloudConfigError, match='--os-cloud'):
        cloud.connect(None)
