"""The engine's layout: no import cycles (imports inside functions counted), a small top level,
subpackages by job, and ``from core import ...`` giving every public name."""

from __future__ import annotations

import ast
import importlib
import pathlib
import subprocess
import sys

import pytest

import core

ROOT = pathlib.Path(core.__file__).parent


def _module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, pathlib.Path]:
    return {_module_name(p): p for p in ROOT.rglob("*.py")}


def _edges(modules: dict[str, pathlib.Path]) -> dict[str, set[str]]:
    """Module -> the engine modules it imports anywhere in its text (functions and
    ``TYPE_CHECKING`` blocks included). ``from pkg import name`` is an edge to ``pkg.name`` when that
    is a module, else to ``pkg``."""
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets: set[str] = set()
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets.update(a.name for a in node.names if a.name.split(".")[0] == "core")
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + [base]).strip(".")
                if base.split(".")[0] != "core":
                    continue
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    targets.add(sub if sub in modules else base)
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
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
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles_in_the_engine() -> None:
    assert _cycles(_edges(_modules())) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_a_small_top_level_and_subpackages_by_job() -> None:
    top_modules = [p.name for p in ROOT.glob("*.py")]
    packages = [p.name for p in ROOT.iterdir() if (p / "__init__.py").is_file()]
    assert len(top_modules) <= 12, sorted(top_modules)
    assert len(packages) >= 4, sorted(packages)


def test_the_engine_imports_nothing_of_the_service() -> None:
    for name, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                assert node.module.split(".")[0] not in ("app", "fastapi", "starlette", "uvicorn"), name
            if isinstance(node, ast.Import):
                assert not any(a.name.split(".")[0] in ("app", "fastapi") for a in node.names), name


@pytest.mark.parametrize("name", core.__all__)
def test_every_public_name_imports_from_core(name: str) -> None:
    assert getattr(importlib.import_module("core"), name) is not None


@pytest.mark.parametrize("first", ["from core import img_cut, fits_cut",
                                   "from core import CutoutsCombiner; from core import fits_cut",
                                   "import core.images.render; from core import fits_cut",
                                   "from core import fits_cut"])
def test_fits_cut_from_core_is_the_function_whatever_was_imported_first(first: str) -> None:
    # a fresh interpreter each: what was imported first decides whether a submodule named like a
    # public function shadows it
    code = f"{first}\nimport inspect\nassert inspect.isfunction(fits_cut), fits_cut\nprint('ok')"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT.parent, capture_output=True, text=True, timeout=120,
                         check=False)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
