"""The package's layers import only downward, and no two modules import
each other (docs/layout.md).

Every ``dbbd/**/*.py`` is parsed with ``ast``; every ``import`` and ``from
... import`` counts, at module level or inside a function, absolute or
relative. ``from pkg import name`` is an import of the module ``pkg.name``
when that is a module, else of ``pkg`` (its ``__init__``). Python also runs
a module's parent packages first; those ``__init__`` files are modules of
their own here, with their own imports.
"""
import ast
import os
import os.path as osp

import pytest

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))

#: The layers, bottom to top; a module may import its own layer and those
#: on the lines below. Layers on one line are siblings: neither imports the
#: other. ``''`` is ``dbbd/__init__.py`` (it reads the version and makes
#: YAML configs safe).
LAYERS = [
    ('version', 'registry'),
    ('utils', ),
    ('', ),
    ('structures', ),
    ('datasets', 'models'),
    ('evaluation', ),
    ('engine', ),
    ('apis', ),
]
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}


def scan(root, package='dbbd'):
    """``{module: (path, [(line, target module), ...])}`` of every module
    under ``root/package``, imports of ``package`` only."""
    files = {}
    for folder, _, names in os.walk(osp.join(root, package)):
        for name in names:
            if not name.endswith('.py'):
                continue
            path = osp.join(folder, name)
            parts = osp.relpath(path, root)[:-3].split(os.sep)
            is_pkg = parts[-1] == '__init__'
            files['.'.join(parts[:-1] if is_pkg else parts)] = (path, is_pkg)

    def known(name):
        while name not in files and '.' in name:
            name = name.rsplit('.', 1)[0]
        return name

    graph = {}
    for module, (path, is_pkg) in files.items():
        with open(path) as f:
            tree = ast.parse(f.read(), path)
        edges = []
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    here = module.split('.') if is_pkg else \
                        module.split('.')[:-1]
                    base = '.'.join(here[:len(here) - node.level + 1] +
                                    ([node.module] if node.module else []))
                else:
                    base = node.module
                targets = [f'{base}.{a.name}' if f'{base}.{a.name}' in files
                           else base for a in node.names]
            else:
                continue
            edges += [(node.lineno, known(t)) for t in targets
                      if t == package or t.startswith(package + '.')]
        graph[module] = (osp.relpath(path, root), sorted(set(edges)))
    return graph


def layer(module):
    """The layer of ``dbbd.x.y``: ``'x'`` (``''`` for ``dbbd`` itself)."""
    parts = module.split('.')
    return parts[1] if len(parts) > 1 else ''


def upward_imports(graph):
    """One line per import that runs back up the layers (or sideways to a
    sibling layer, or from a layer nobody placed)."""
    bad = []
    for module, (path, edges) in sorted(graph.items()):
        src = layer(module)
        for line, target in edges:
            dst = layer(target)
            if src == dst:
                continue
            if src not in RANK or dst not in RANK:
                unplaced = src if src not in RANK else dst
                bad.append(f'{path}:{line} imports {target}: the layer '
                           f'{unplaced!r} is not in LAYERS of '
                           'tests/test_layout.py (place it there and in '
                           'docs/layout.md)')
            elif RANK[dst] >= RANK[src]:
                how = 'a sibling' if RANK[dst] == RANK[src] else 'above it'
                bad.append(f'{path}:{line} imports {target}: {src or "dbbd"}'
                           f' may not import {dst} ({how}; layers bottom to '
                           f'top: {LAYERS})')
    return bad


def cycles(graph):
    """Every import cycle, each as one line naming its imports in order."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for _, w in graph[v][1]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or any(t == v for _, t in graph[v][1]):
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    lines = []
    for component in found:
        inside = set(component)
        steps = [f'{graph[m][0]}:{line} imports {t}' for m in component
                 for line, t in graph[m][1] if t in inside]
        lines.append('cycle among ' + ', '.join(component) + ': ' +
                     '; '.join(steps))
    return lines


# ---------------------------------------------------------------------------
# The checker, on a package written here
# ---------------------------------------------------------------------------
def _write(root, files):
    for rel, text in files.items():
        path = osp.join(root, rel)
        os.makedirs(osp.dirname(path), exist_ok=True)
        with open(path, 'w') as f:
            f.write(text)


def test_the_checker_sees_imports_in_functions_and_relative_ones(tmp_path):
    """An upward import hidden in a function, one written relatively, a
    sibling import and a cycle of two modules in one layer are each
    reported with the file and line; downward imports are not."""
    _write(str(tmp_path), {
        'dbbd/__init__.py': 'from .version import v\n',
        'dbbd/version.py': 'v = 1\n',
        'dbbd/registry.py': 'import dbbd.version\n',
        'dbbd/utils/__init__.py': '',
        'dbbd/utils/a.py': 'def f():\n    from dbbd.models import m\n',
        'dbbd/models/__init__.py': 'from . import m\n',
        'dbbd/models/m.py': 'from ..utils import a\nfrom ..engine import e\n'
                            'import dbbd.datasets.d\n',
        'dbbd/datasets/__init__.py': '',
        'dbbd/datasets/d.py': 'from .e2 import x\n',
        'dbbd/datasets/e2.py': 'def g():\n    from .d import y\n',
        'dbbd/engine/__init__.py': '',
        'dbbd/engine/e.py': 'from dbbd.models.m import z\n',
    })
    graph = scan(str(tmp_path))
    assert graph['dbbd.models.m'][1] == [(1, 'dbbd.utils.a'),
                                         (2, 'dbbd.engine.e'),
                                         (3, 'dbbd.datasets.d')]
    assert graph['dbbd.models'][1] == [(1, 'dbbd.models.m')]
    up = upward_imports(graph)
    assert [line.split(' ')[0] for line in up] == [
        'dbbd/models/m.py:2', 'dbbd/models/m.py:3', 'dbbd/registry.py:1',
        'dbbd/utils/a.py:2']
    assert up[0].startswith('dbbd/models/m.py:2 imports dbbd.engine.e: '
                            'models may not import engine (above it')
    assert 'models may not import datasets (a sibling' in up[1]
    assert 'registry may not import version (a sibling' in up[2]
    assert up[3].startswith('dbbd/utils/a.py:2 imports dbbd.models.m: utils '
                            'may not import models (above it')
    found = cycles(graph)
    assert len(found) == 2, found  # d <-> e2, and models.m <-> engine.e
    assert ('cycle among dbbd.datasets.d, dbbd.datasets.e2: '
            'dbbd/datasets/d.py:1 imports dbbd.datasets.e2; '
            'dbbd/datasets/e2.py:2 imports dbbd.datasets.d') in found


def test_a_layer_nobody_placed_is_reported(tmp_path):
    _write(str(tmp_path), {
        'dbbd/__init__.py': '',
        'dbbd/utils.py': '',
        'dbbd/plugins/__init__.py': 'from dbbd import utils\n',
    })
    assert upward_imports(scan(str(tmp_path))) == [
        "dbbd/plugins/__init__.py:1 imports dbbd.utils: the layer 'plugins' "
        'is not in LAYERS of tests/test_layout.py (place it there and in '
        'docs/layout.md)']


# ---------------------------------------------------------------------------
# The package
# ---------------------------------------------------------------------------
@pytest.fixture(scope='module')
def graph():
    return scan(ROOT)


def test_every_layer_is_placed(graph):
    assert {layer(m) for m in graph} == set(RANK)


def test_no_import_runs_back_up_the_layers(graph):
    bad = upward_imports(graph)
    assert not bad, '\n'.join(bad)


def test_no_import_cycle(graph):
    found = cycles(graph)
    assert not found, '\n'.join(found)


def test_the_package_never_imports_the_tools():
    """``tools/`` is above everything: the package never reaches it."""
    hits = []
    for module, (path, _) in scan(ROOT).items():
        with open(osp.join(ROOT, path)) as f:
            tree = ast.parse(f.read(), path)
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(
                node, ast.Import) else [node.module or ''] if isinstance(
                    node, ast.ImportFrom) and not node.level else []
            hits += [f'{path}:{node.lineno} imports {n}' for n in names
                     if n == 'tools' or n.startswith('tools.')]
    assert not hits, '\n'.join(hits)
