"""The architecture, checked: which part of the package may import which.

Read from the source (every ``import``, at module level or inside a
function, since a function-level import that hides a circle is still a
circle):

- the engine imports nothing from the runbooks (``flows``), their
  machinery or the CLI; the cloud layer nothing above it; the runbooks
  and the machinery nothing from the CLI; the machinery nothing from the
  runbooks or the engine (it asks the run context for services);
- the neutral workflow declarations import only the bottom layer;
- runbooks do not import each other (a runbook subpackage's own modules
  may import one another);
- no import circles.
"""

import ast
import pathlib

PACKAGE = pathlib.Path(__file__).resolve().parents[2] / 'octavia_workflows'
ROOT = 'octavia_workflows'


def _module_name(path):
    parts = list(path.relative_to(PACKAGE.parent).with_suffix('').parts)
    if parts[-1] == '__init__':
        parts.pop()
    return '.'.join(parts)


def _imports(path):
    """Every octavia_workflows module ``path`` imports (as named)."""
    name = _module_name(path)
    is_package = path.name == '__init__.py'
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split('.')
                base = base[:len(base) - node.level + (1 if is_package
                                                       else 0)]
                module = '.'.join(base + ([node.module] if node.module
                                          else []))
            else:
                module = node.module
            # ``from package import module`` imports that module; the
            # package counts only for the names that are not modules
            found.add((module, tuple(a.name for a in node.names)))
    return found


def _graph():
    modules = {_module_name(p): p for p in PACKAGE.rglob('*.py')}
    graph = {}
    for name, path in modules.items():
        targets = set()
        for item in _imports(path):
            if isinstance(item, str):
                targets.add(item)
                continue
            module, names = item
            subs = {f'{module}.{n}' for n in names} & set(modules)
            targets.update(subs)
            if len(subs) < len(names):
                targets.add(module)
        graph[name] = {m for m in targets if m in modules and m != name}
    return graph


GRAPH = _graph()


def _part(module):
    parts = module.split('.')
    return parts[1] if len(parts) > 1 else ''


def _runbook(module):
    """The runbook a module of ``flows`` belongs to (None: not one)."""
    parts = module.split('.')
    if len(parts) > 2 and parts[1] == 'flows':
        return parts[2]
    return None


FORBIDDEN = {
    'engine': {'flows', 'machinery', 'cli'},
    'cloud': {'engine', 'flows', 'machinery', 'cli', 'conf'},
    'flows': {'cli', 'engine'},
    'machinery': {'flows', 'engine', 'cli'},
    'workflow': {'engine', 'flows', 'machinery', 'cli', 'cloud', 'conf'},
    'states': {'engine', 'flows', 'machinery', 'cli', 'cloud', 'conf'},
    'exceptions': {'engine', 'flows', 'machinery', 'cli', 'cloud', 'conf',
                   'states', 'workflow'},
}


def test_the_graph_is_read_from_real_sources():
    # guards against a test that checks nothing: the runner imports the
    # neutral declarations, a runbook imports the machinery
    assert 'octavia_workflows.workflow' in GRAPH[
        'octavia_workflows.engine.runner']
    assert 'octavia_workflows.machinery.steps' in GRAPH[
        'octavia_workflows.flows.rotate_images.flow']


def test_each_layer_imports_only_what_it_may():
    wrong = sorted(
        f'{module} imports {target}'
        for module, targets in GRAPH.items()
        for target in targets
        if _part(target) in FORBIDDEN.get(_part(module), ()))
    assert wrong == []


def test_runbooks_do_not_import_each_other():
    wrong = sorted(
        f'{module} imports {target}'
        for module, targets in GRAPH.items() if _runbook(module)
        for target in targets
        if _runbook(target) and _runbook(target) != _runbook(module))
    assert wrong == []


def test_no_import_circles():
    circles = []
    state = {}

    def visit(node, path):
        state[node] = 'open'
        for nxt in sorted(GRAPH[node]):
            if state.get(nxt) == 'open':
                circles.append(' -> '.join(path[path.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 'done'

    for module in sorted(GRAPH):
        if module not in state:
            visit(module, [module])
    assert circles == []


def test_workflows_are_registered_through_stevedore():
    text = (PACKAGE / 'workflow.py').read_text()
    assert 'stevedore' in text and 'importlib.metadata' not in text
