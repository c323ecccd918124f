"""The suite's own rules (a busy CI machine must not fail a test): few sleeps, and no test
asserting wall-clock time.

- At most :data:`MAX_SLEEPS` calls of ``time.sleep`` under tests/ (one in the polling helper,
  the others being the behaviour under test, such as injected latency). Waiting for something to
  happen polls it (tests/polling.py), never sleeps a fixed time.
- No assert in tests/ uses a clock reading: neither a call of ``time.time``, ``time.monotonic``,
  ``time.perf_counter`` (or their ``_ns`` forms) nor a name holding seconds computed from one
  (directly or through other names; a clock reading made into something else, such as a date for
  a query, is not a measurement). Speed is measured by bench/, which prints ours beside an anchor.

Both checks read the source (``ast``), so they see every module, run or skipped here.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
MAX_SLEEPS = 5
CLOCKS = {"time", "monotonic", "perf_counter", "time_ns", "monotonic_ns", "perf_counter_ns"}
SLEEP = "sleep"


class _TimeNames(ast.NodeVisitor):
    """The names under which a module reaches the ``time`` module and its functions."""

    def __init__(self) -> None:
        self.modules: set[str] = set()
        self.functions: dict[str, str] = {}  # local name -> time's function name

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if alias.name == "time":
                self.modules.add(alias.asname or "time")

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.module == "time" and not node.level:
            for alias in node.names:
                self.functions[alias.asname or alias.name] = alias.name


def _time_function(call: ast.AST, names: _TimeNames) -> str | None:
    """The name of the ``time`` function ``call`` calls, if it calls one."""
    if not isinstance(call, ast.Call):
        return None
    func = call.func
    if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id in names.modules:
        return func.attr
    if isinstance(func, ast.Name):
        return names.functions.get(func.id)
    return None


def _names(tree: ast.Module) -> _TimeNames:
    names = _TimeNames()
    names.visit(tree)
    return names


def sleep_calls(source: str) -> int:
    """How many calls of ``time.sleep`` a module's source makes."""
    tree = ast.parse(source)
    names = _names(tree)
    return sum(1 for node in ast.walk(tree) if _time_function(node, names) == SLEEP)


def _bound(target: ast.AST) -> list[str]:
    """The names an assignment target binds (``a``, ``a, *b``; not ``x[a]`` or ``x.a``)."""
    if isinstance(target, ast.Name):
        return [target.id]
    if isinstance(target, (ast.Tuple, ast.List)):
        return [name for element in target.elts for name in _bound(element)]
    if isinstance(target, ast.Starred):
        return _bound(target.value)
    return []


def _targets(node: ast.AST) -> list[str]:
    """The names an assignment binds."""
    if isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign, ast.NamedExpr)):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        return [name for target in targets for name in _bound(target)]
    return []


#: calls through which a clock reading stays a number of seconds (``round(t1 - t0, 2)``); any other
#: call makes something else of it (a date string for a query, a figure printed)
NUMERIC = {"abs", "float", "int", "max", "mean", "median", "min", "round", "sorted", "sum"}


def _reads_clock(expr: ast.AST, names: _TimeNames, tainted: set[str], *, into_calls: bool) -> bool:
    """Whether ``expr`` reads a clock: calls one, or uses a name in ``tainted``. Calls other than
    the clocks and :data:`NUMERIC` are entered only when ``into_calls``."""
    if _time_function(expr, names) in CLOCKS or (isinstance(expr, ast.Name) and expr.id in tainted):
        return True
    if isinstance(expr, ast.Call) and not into_calls:
        func = expr.func
        called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        if called not in NUMERIC:
            return False
    return any(_reads_clock(child, names, tainted, into_calls=into_calls) for child in ast.iter_child_nodes(expr))


def timed_asserts(source: str) -> list[int]:
    """Line numbers of the asserts that use a clock reading: a clock call anywhere in the assert,
    or a name holding seconds read from a clock (bound, in any scope of the module, from an
    expression of clock calls and such names through arithmetic, containers and NUMERIC calls)."""
    tree = ast.parse(source)
    names = _names(tree)
    bindings = [(node, _targets(node)) for node in ast.walk(tree) if _targets(node)]
    tainted: set[str] = set()
    while True:  # until no new name is bound from a clock reading
        grown = {name for node, targets in bindings
                 if node.value is not None and _reads_clock(node.value, names, tainted, into_calls=False)
                 for name in targets}
        if grown <= tainted:
            break
        tainted |= grown
    return [node.lineno for node in ast.walk(tree)
            if isinstance(node, ast.Assert) and _reads_clock(node.test, names, tainted, into_calls=True)]


def _modules() -> list[Path]:
    return sorted(p for p in TESTS.rglob("*.py") if ".venv" not in p.parts)


def test_few_sleeps_under_tests():
    counts = {str(p.relative_to(TESTS)): n for p in _modules() if (n := sleep_calls(p.read_text()))}
    assert sum(counts.values()) <= MAX_SLEEPS, counts


def test_no_assert_uses_a_clock_reading():
    found = {str(p.relative_to(TESTS)): lines for p in _modules() if (lines := timed_asserts(p.read_text()))}
    assert not found, f"asserts on wall-clock time (file: lines): {found}"


# -- the checks can fail ----------------------------------------------------------------------------

CALL = f"time.{SLEEP}"


@pytest.mark.parametrize("source, count", [
    (f"import time\n{CALL}(1)\n{CALL}(2)\n", 2),
    (f"import time as t\nt.{SLEEP}(1)\n", 1),
    (f"from time import {SLEEP} as nap\nnap(1)\n", 1),
    (f"import asyncio\nasync def f():\n    await asyncio.{SLEEP}(1)\n", 0),
    ("import time\nx = time.monotonic()\n", 0),
])
def test_the_sleep_counter_counts_calls_of_time_sleep(source, count):
    assert sleep_calls(source) == count


@pytest.mark.parametrize("source, lines", [
    ("import time\nt0 = time.perf_counter()\nwork()\nassert time.perf_counter() - t0 < 1\n", [4]),
    ("import time\nt0 = time.monotonic()\nelapsed = time.monotonic() - t0\nassert elapsed < 2, elapsed\n", [4]),
    (("from time import perf_counter as clock\ndef f():\n    a = clock()\n    b = clock()\n    wall = b - a\n"
     "    spent = [wall]\n    assert max(spent) < 4\n"), [7]),
    (("import time\ndef f(run):\n    deadline = time.time() + 5\n    while work():\n"
     "        assert time.time() < deadline\n"), [5]),
    ("import time\nt0 = time.monotonic()\nrecord(time.monotonic() - t0)\nassert count == 3\n", []),
    ("def f(run):\n    before = [r for r in run.results if r['ended'] < run.kill_time]\n    assert before\n", []),
    ("import time\nt0 = time.monotonic()\nwall = round(max([time.monotonic() - t0]), 2)\nassert wall < 1\n", [4]),
    ("import time\nstamp = time.strftime('%H', time.gmtime(time.time() - 1))\nassert listed(stamp) == 2\n", []),
    ("import time\nassert job.destruction <= time.time() + 5\n", [2]),
])
def test_the_clock_finder_flags_asserts_on_clock_readings(source, lines):
    assert timed_asserts(source) == lines
