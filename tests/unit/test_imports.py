"""The package's shape: imports run one way (no cycle, lazy imports included) and no module is huge."""

from __future__ import annotations

import ast
import functools
import os
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"
PACKAGE = "specsweep"
MAX_LINES = 500


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted((SRC / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


@functools.cache  # parsing every module is most of this file's time; the tests only read the graph
def import_graph() -> dict[str, frozenset[str]]:
    """module -> the specsweep modules it imports anywhere in its body (function-level too)."""
    modules = _modules()
    graph: dict[str, frozenset[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                    base = ".".join(anchor + ([base] if base else []))
                # "from . import plots" names a module; "from .model import Report" names a class
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                           for alias in node.names]
            else:
                continue
            edges |= {t for t in targets if t in modules and t != name}
        graph[name] = frozenset(edges)
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_cycle():
    graph = import_graph()
    assert "specsweep.report.model" in graph and "specsweep.analysis.cells" in graph["specsweep.analysis"]
    cycle = _cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_report_layers_import_downwards_only():
    graph = import_graph()
    report = {m for m in graph if m.startswith("specsweep.report.")}
    assert graph["specsweep.report.plots"] & report == {"specsweep.report.model"}
    assert not any(m.startswith("specsweep.report") for m in graph["specsweep.report.model"])
    for module in ("specsweep.analysis", "specsweep.store", "specsweep.records"):
        assert not any(m.startswith("specsweep.report") for m in graph[module] | set().union(
            *(graph[m] for m in graph if m.startswith(module + "."))))


def test_no_module_is_huge():
    sizes = {name: len(path.read_text().splitlines()) for name, path in _modules().items()}
    assert not {name: n for name, n in sizes.items() if n > MAX_LINES}


def test_no_test_module_imports_another():
    """Shared test helpers live in helper modules (tests/cli_support.py, tests/records.py …),
    never in a test module: importing one runs its tests' module-level code and hides coupling."""
    offenders = []
    for path in sorted((SRC.parent / "tests").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else \
                [a.name for a in node.names] if isinstance(node, ast.Import) else []
            offenders += [f"{path.name}: {n}" for n in names if n.rpartition(".")[2].startswith("test_")]
    assert offenders == []


def test_the_command_line_starts_without_the_heavy_libraries():
    """Every ``specsweep`` start imports the CLI and builds its parser; scipy.stats (about a second),
    matplotlib, numpy and httpx (the sweep machinery, 0.45 s when building the parser imported the
    demo's sweep) are for the commands that use them and are imported there, lazily."""
    heavy = ("scipy.stats", "matplotlib", "numpy", "httpx")
    code = ("import sys, specsweep.cli; specsweep.cli.build_parser(); "
            f"print([m for m in {heavy!r} if m in sys.modules])")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
