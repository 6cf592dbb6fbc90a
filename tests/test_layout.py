"""The package layout, read from the source (AST) without importing it.

Every ``import`` of an ``eelsprint`` module counts: top-level, inside functions (lazy) and
under ``if TYPE_CHECKING:`` alike, since a type-only back-reference is still a dependency a
reader has to follow. Layers (low to high): exceptions < config < data, models <
inference < maps < classify < realtime, active, scale < report, bench < demo < cli < the package facade.
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "eelsprint"

#: Rank of each top-level group; an import must go to a strictly lower rank or stay in its group.
RANKS = {
    "exceptions": 0,
    "config": 1,
    "data": 2,
    "models": 2,
    "io": 3,  # the public re-export of data.io
    "inference": 3,
    "maps": 4,
    "classify": 5,
    "realtime": 6,
    "active": 6,
    "scale": 6,  # lazy Dask path, chunked Zarr output + resume, cluster
    "report": 7,  # its active-learning section uses active/
    "bench": 7,
    "demo": 8,
    "cli": 9,  # runs the demo
    "__init__": 10,
}
# DESIGN.md's target layout (__init__, classify, config, exceptions, cli, demo and the 8 subpackages
# data, models, inference, realtime, active, scale, report, bench) plus io.py and maps.py
MAX_TOP_ENTRIES = 16
MAX_LINES = 400


def _modules() -> dict[str, Path]:
    """Dotted name -> file of every module under src/eelsprint."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


MODULES = _modules()


def _imports(path: Path) -> set[str]:
    """The eelsprint modules ``path`` imports, anywhere in its AST (resolved to modules)."""
    targets = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{alias.name}" for alias in node.names]
            names = [n if n in MODULES else node.module for n in names]
        else:
            continue
        targets |= {n for n in names if n in MODULES}
    return targets


GRAPH = {name: _imports(path) for name, path in MODULES.items()}


def _group(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module, or a module importing itself."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph[v]:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_the_graph_sees_the_imports() -> None:
    """The parser must find real edges, or the checks below would pass vacuously."""
    assert "eelsprint.inference.pipeline" in GRAPH["eelsprint.classify"]
    assert "eelsprint.classify" in GRAPH["eelsprint.cli.commands"]  # a lazy import inside a command
    assert "eelsprint.classify" in GRAPH["eelsprint.report.inputs"]  # under TYPE_CHECKING
    assert len(MODULES) > 40


def test_no_import_cycles() -> None:
    assert _cycles(GRAPH) == []
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == [["a", "b", "c"]]  # the finder works


def test_lower_layers_never_import_higher_ones() -> None:
    assert {_group(m) for m in MODULES} <= set(RANKS), "a new top-level module or package needs a rank"
    upward = [
        f"{a} -> {b}"
        for a, targets in GRAPH.items()
        for b in targets
        if _group(a) != _group(b) and RANKS[_group(a)] <= RANKS[_group(b)]
    ]
    assert upward == []


def test_models_touch_neither_files_nor_data() -> None:
    """``models/`` is torch, pyro and gpytorch only (STYLE.md)."""
    for name, targets in GRAPH.items():
        if _group(name) == "models":
            assert {_group(t) for t in targets} <= {"models", "config", "exceptions"}, name


def test_top_level_is_small() -> None:
    """Modules and subpackages at the top (``py.typed``, a marker file, is not one)."""
    entries = sorted(p.name for p in PACKAGE.iterdir() if p.name not in ("__pycache__", "py.typed"))
    assert len(entries) <= MAX_TOP_ENTRIES, entries  # 16 with active/ (issue 10) and scale/ (issue 11)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_module_size_and_public_names(name: str) -> None:
    path = MODULES[name]
    lines = path.read_text(encoding="utf-8").count("\n")
    assert lines <= MAX_LINES, f"{path.relative_to(ROOT)}: {lines} lines"
    if not any(part.startswith("_") for part in name.split(".")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        assigned = {
            t.id
            for node in tree.body
            if isinstance(node, ast.Assign | ast.AnnAssign)
            for t in (node.targets if isinstance(node, ast.Assign) else [node.target])
            if isinstance(t, ast.Name)
        }
        assert "__all__" in assigned, f"{path.relative_to(ROOT)} has no __all__"


def test_pyproject_lists_every_package() -> None:
    """Packages are listed by hand (the shipped model is mapped in); a new one must be added."""
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    packages = {name for name, path in MODULES.items() if path.name == "__init__.py"}
    assert set(setuptools["packages"]) == packages | {"eelsprint._default_model"}
    model = ROOT / setuptools["package-dir"]["eelsprint._default_model"]
    assert (model / "manifest.json").is_file() and (model / "weights.safetensors").is_file()
