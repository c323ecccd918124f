"""No engine module imports another module's private names: what two modules share is public,
in the module that owns it (e.g. core.synthetic.headers for the synthetic FFIs and cubes)."""

from __future__ import annotations

import ast
import pathlib

import core

ROOT = pathlib.Path(core.__file__).parent


def _private_imports(path: pathlib.Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").split(".")[0] == "core"):
            found += [f"{node.module}.{a.name}" for a in node.names if a.name.startswith("_")
                      and not a.name.startswith("__")]
    return found


def test_no_engine_module_imports_a_private_name():
    found = {str(p.relative_to(ROOT)): names for p in sorted(ROOT.rglob("*.py")) if (names := _private_imports(p))}
    assert found == {}


def test_the_check_sees_a_private_import(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("from core.synthetic.ffis import _scid, write_sector\nfrom core import __version__\n")
    assert _private_imports(module) == ["core.synthetic.ffis._scid"]
