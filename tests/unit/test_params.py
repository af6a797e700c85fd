"""Workflow parameter parsing and validation."""

import pytest

from octavia_workflows import exceptions
from octavia_workflows import workflow as base
from octavia_workflows.flows import selftest


def test_defaults_are_applied():
    params = selftest.WORKFLOW.validate({})
    assert params == {'steps': 5, 'step_seconds': 1.0, 'record_to': None,
                      'gate_after': None}


def test_values_are_typed():
    params = selftest.WORKFLOW.validate({'steps': '7', 'step_seconds': '0.5'})
    assert params['steps'] == 7
    assert params['step_seconds'] == 0.5


@pytest.mark.parametrize('raw, message', [
    ({'steps': 'x'}, "steps: 'x' is not a valid int"),
    ({'steps': '0'}, 'below the minimum'),
    ({'steps': '1e9'}, 'not a valid int'),
    ({'step_seconds': 'nan'}, 'not a valid float'),
    ({'step_seconds': '-1'}, 'below the minimum'),
    ({'stpes': '3'}, 'did you mean steps?'),
    ({'record_to': '/nonexistent-dir/x'}, 'does not exist'),
])
def test_bad_values_are_rejected_with_one_line(raw, message):
    with pytest.raises(exceptions.InvalidParameter) as info:
        selftest.WORKFLOW.validate(raw)
    assert message in str(info.value)
    assert '\n' not in str(info.value)


def test_required_parameter():
    wf = base.Workflow('w', 'd', (base.Param('host', 'str', 'the host',
                                             required=True),),
                       factory='x:y', plan=lambda c, p: None)
    with pytest.raises(exceptions.InvalidParameter, match='needs parameter'):
        wf.validate({})


@pytest.mark.parametrize('typ, raw, expected', [
    ('bool', 'yes', True), ('bool', 'False', False), ('bool', True, True),
    ('list', 'a, b,,c', ['a', 'b', 'c']), ('list', ['x', 1], ['x', '1']),
    ('float', '2', 2.0), ('str', 'abc', 'abc'),
])
def test_param_types(typ, raw, expected):
    assert base.Param('p', typ, 'h').parse(raw) == expected


def test_bool_rejects_garbage():
    with pytest.raises(exceptions.InvalidParameter):
        base.Param('p', 'bool', 'h').parse('maybe')


def test_choices():
    param = base.Param('p', 'str', 'h', choices=('ERROR', 'ALL'))
    assert param.parse('ERROR') == 'ERROR'
    with pytest.raises(exceptions.InvalidParameter, match='not one of'):
        param.parse('OK')


@pytest.mark.parametrize('pairs, message', [
    (['novalue'], 'expected KEY=VALUE'),
    (['=3'], 'expected KEY=VALUE'),
    (['a=1', 'a=2'], 'more than once'),
])
def test_parse_assignments_errors(pairs, message):
    with pytest.raises(exceptions.InvalidParameter, match=message):
        base.parse_assignments(pairs)


def test_parse_assignments_keeps_equals_in_value():
    assert base.parse_assignments(['k=a=b']) == {'k': 'a=b'}


def test_unknown_workflow_suggests_closest():
    with pytest.raises(exceptions.UnknownWorkflow, match='did you mean '
                       'selftest'):
        base.get('selftets')


def test_registry_lists_selftest():
    assert 'selftest' in base.names()
    assert base.get('selftest') is selftest.WORKFLOW
