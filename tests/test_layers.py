"""The architecture holds: imports point down the layers and form no cycle; modules stay small.

Layers, lowest first (docs/architecture.md):

    0 core         netgraph.*
    1 metrics      analysis, analysis.{connectivity, widths, paths, table, summary}
    2 plots        analysis.plots
    3 experiments  analysis.experiments.*
    4 cli          analysis.cli.*

Every import is read from the source with ``ast`` (also imports inside functions), so a
lazy import cannot hide a dependency. The one exception is the ``analysis`` package's
``__getattr__``, which offers upper-layer names to users on first use; project modules
never import through that namespace (checked below).
"""

import ast
import os

import pytest

from tests import ROOT

PACKAGES = ("netgraph", "analysis")
MAX_LINES = 420


def _modules() -> dict:
    out = {}
    for pkg in PACKAGES:
        for dirpath, _, files in os.walk(os.path.join(ROOT, pkg)):
            for f in files:
                if f.endswith(".py"):
                    path = os.path.join(dirpath, f)
                    rel = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
                    out[rel[: -len(".__init__")] if rel.endswith(".__init__") else rel] = path
    return out


MODULES = _modules()


def layer(module: str) -> int:
    if module == "netgraph" or module.startswith("netgraph."):
        return 0
    if module.startswith("analysis.cli"):
        return 4
    if module.startswith("analysis.experiments"):
        return 3
    if module.startswith("analysis.plots"):
        return 2
    return 1


def _resolve(module: str, is_pkg: bool, node) -> list:
    """Project modules an import node refers to."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        if node.level:
            base = module.split(".") if is_pkg else module.split(".")[:-1]
            base = base[: len(base) - (node.level - 1)]
            prefix = ".".join(base + ([node.module] if node.module else []))
        else:
            prefix = node.module or ""
        names = [prefix] + [f"{prefix}.{a.name}" for a in node.names]
    found = []
    for n in names:
        while n and n not in MODULES:
            n = n.rpartition(".")[0]
        if n:
            found.append(n)
    return found


def _imports(module: str) -> dict:
    """``{imported module: line}`` of every project import in ``module`` (outside ``__getattr__``)."""
    path = MODULES[module]
    tree = ast.parse(open(path, encoding="utf-8").read())
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name == "__getattr__" and module == "analysis":
            skip |= {id(n) for n in ast.walk(node)}
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            skip |= {id(n) for n in ast.walk(node)}
    out = {}
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)) and id(node) not in skip:
            for target in _resolve(module, path.endswith("__init__.py"), node):
                if target != module and not (module.startswith(target + ".") and target in PACKAGES):
                    out.setdefault(target, node.lineno)
    return out


GRAPH = {m: _imports(m) for m in MODULES}


def test_the_layers_are_found():
    assert {layer(m) for m in MODULES} == {0, 1, 2, 3, 4}
    assert "analysis.table" in MODULES and "netgraph.masked" in MODULES


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_point_down(module):
    up = [f"{t} (line {line}, layer {layer(t)})" for t, line in GRAPH[module].items() if layer(t) > layer(module)]
    assert not up, f"{module} (layer {layer(module)}) imports a layer above it: {up}"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_import_of_the_analysis_namespace(module):
    """Inside the project, import the module that owns a name, never ``analysis`` itself."""
    if module == "analysis":
        return
    tree = ast.parse(open(MODULES[module], encoding="utf-8").read())
    bad = [n.lineno for n in ast.walk(tree)
           if isinstance(n, ast.Import) and any(a.name == "analysis" for a in n.names)
           or isinstance(n, ast.ImportFrom) and n.level == 0 and n.module == "analysis"]
    assert not bad, f"{module} imports the analysis namespace at lines {bad}"


def test_no_import_cycles():
    # Package __init__ modules re-export their children: an edge from a package to its own
    # submodule is not a dependency of the submodule on the package.
    edges = {m: {t for t in GRAPH[m] if not t.startswith(m + ".")} for m in MODULES}
    state, stack = {}, []

    def visit(m):
        state[m] = "open"
        stack.append(m)
        for t in sorted(edges[m]):
            if state.get(t) == "open":
                cycle = stack[stack.index(t):] + [t]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if t not in state:
                visit(t)
        stack.pop()
        state[m] = "done"

    for m in sorted(MODULES):
        if m not in state:
            visit(m)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_modules_stay_small(module):
    n = sum(1 for _ in open(MODULES[module], encoding="utf-8"))
    assert n <= MAX_LINES, f"{module} has {n} lines; split it by concept (limit about 400)"


@pytest.mark.parametrize("package", sorted(m for m, p in MODULES.items() if p.endswith("__init__.py")))
def test_every_package_says_what_lives_in_it(package):
    doc = ast.get_docstring(ast.parse(open(MODULES[package], encoding="utf-8").read()))
    assert doc and len(doc.split()) >= 8, f"{package}/__init__.py needs a docstring saying what lives in it"


def test_tests_mirror_the_packages():
    for sub in ("netgraph", "analysis", os.path.join("analysis", "experiments"), os.path.join("analysis", "cli")):
        assert os.path.isfile(os.path.join(ROOT, "tests", sub, "__init__.py")), sub
