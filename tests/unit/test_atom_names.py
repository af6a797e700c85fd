"""Upgrade safety: every workflow's flow keeps its atom names.

A job posted by release N is resumed by a conductor of release N+1 from
its saved logbook, where each step's state is filed under its atom name.
A renamed atom would run again (or its saved state would be ignored), so
atom names are frozen here: ``data/atom_names.json`` holds, for sample
targets of every workflow, the atoms its factory builds, in order.

A sample without ``factory`` was frozen before factories were recorded:
it is built by the workflow's oldest factory, as such jobs are resumed.

When this test fails: do not regenerate the file to make it pass.  Keep
the old factory and its names for jobs already posted, and give the
changed graph a new factory (see octavia_workflows/workflow.py).  Only a
new workflow, a new factory or a new sample is added with ``python
tests/unit/test_atom_names.py --add NAME``.
"""

import json
import pathlib
import sys

import pytest
from taskflow import flow as tf_flow

from octavia_workflows import workflow as base

DATA = pathlib.Path(__file__).parent / 'data' / 'atom_names.json'
_LB = {'lb': 'lb-1', 'az': 'az1'}


def atom_names(flow):
    """Names of the flow's atoms (retry controllers first), in order."""
    names = []
    for item in flow:
        if isinstance(item, tf_flow.Flow):
            if item.retry is not None:
                names.append(item.retry.name)
            names.extend(atom_names(item))
        else:
            names.append(item.name)
    return names


def build(sample):
    workflow = base.get(sample['workflow'])
    params = {p.name: p.default for p in workflow.params}
    params.update(sample['params'])
    factory = sample.get('factory') or workflow.factories[0]
    return atom_names(workflow.load_factory(factory)(params,
                                                     sample['targets']))


def _samples():
    """The samples written for a new entry (current code's targets)."""
    from octavia_workflows.flows import cold_upgrade, evacuate_host

    one = [{'target': 't-1', 'action': 'x', 'details': dict(_LB)},
           {'target': 't-2', 'action': 'x', 'details': {'lb': 'lb-2'}}]
    samples = {
        name: {'workflow': name, 'params': {}, 'targets': one}
        for name in ('rotate-images', 'failover-amphorae',
                     'rotate-certificates', 'reconfigure-amphorae',
                     'cleanup-node', 'repair-stuck')}
    samples['rotate-images-parallel'] = {
        'workflow': 'rotate-images', 'params': {'concurrency': 2},
        'targets': one}
    for label in ('rotate-images', 'rotate-images-parallel',
                  'failover-amphorae', 'rotate-certificates'):
        sample = samples[label]
        samples[f'{label}-v2'] = dict(sample, factory=base.get(
            sample['workflow']).factory.replace('_v3', '_v2'))
    samples['selftest'] = {'workflow': 'selftest', 'params': {}, 'targets': [
        {'target': f'step-{n}', 'action': 'step', 'details': {'step': n}}
        for n in (1, 2)]}
    samples['selftest-gate'] = dict(samples['selftest'],
                                    params={'gate_after': 1})
    samples['evacuate-host'] = {'workflow': 'evacuate-host', 'params': {},
                                'targets': [
        {'target': 'host-1', 'action': evacuate_host.DISABLE,
         'details': {'host': 'host-1'}},
        {'target': 'amp-1', 'action': evacuate_host.FAILOVER,
         'details': dict(_LB, amphora='amp-1')},
        {'target': 'verify', 'action': evacuate_host.VERIFY,
         'details': {'host': 'host-1'}}]}

    class Settings:
        controllers = ['ctl1', 'ctl2']

    params = {'backup': True, 'image_file': '/x', 'rotate': True}
    samples['cold-upgrade'] = {
        'workflow': 'cold-upgrade', 'params': params, 'targets': [
            {'target': t, 'action': a, 'details': d}
            for t, a, d in cold_upgrade.steps(Settings, params)]}
    # every factory of every sample above, by the factory's name
    for label, sample in list(samples.items()):
        if 'factory' in sample:
            continue
        for factory in base.get(sample['workflow']).factories[1:]:
            samples[f'{label}@{factory.partition(":")[2]}'] = dict(
                sample, factory=factory)
    return samples


def _load():
    return json.loads(DATA.read_text())


@pytest.mark.parametrize('label', sorted(_load()) if DATA.exists() else [])
def test_atom_names_are_stable(label):
    sample = _load()[label]
    assert build(sample) == sample['atoms'], (
        f'{label}: the atom names changed; jobs saved by an earlier release '
        f'would not resume correctly (see this module\'s docstring)')


def test_every_workflow_and_factory_is_covered():
    covered = {s['workflow'] for s in _load().values()}
    assert covered >= set(base.names()), (
        f'add a sample for {sorted(set(base.names()) - covered)}: python '
        f'tests/unit/test_atom_names.py --add NAME')
    frozen = {s.get('factory') or base.get(s['workflow']).factories[0]
              for s in _load().values()}
    current = {base.get(name).factory for name in base.names()}
    assert frozen >= current, (
        f'add a sample for the factories {sorted(current - frozen)}')


def test_atom_names_are_unique_per_flow():
    for label, sample in _load().items():
        names = sample['atoms']
        assert len(names) == len(set(names)), label


def _add(labels):
    data = _load() if DATA.exists() else {}
    samples = _samples()
    for label in labels:
        if label in data:
            raise SystemExit(f'{label} is frozen already; see the docstring')
        sample = samples[label]
        data[label] = dict(sample, atoms=build(sample))
    DATA.parent.mkdir(exist_ok=True)
    DATA.write_text(json.dumps(data, indent=1, sort_keys=True) + '\n')


if __name__ == '__main__':
    if sys.argv[1:2] != ['--add'] or len(sys.argv) < 3:
        raise SystemExit('usage: test_atom_names.py --add NAME [NAME...]')
    _add(sys.argv[2:])
