"""The package layers point down (interp <- procedural_tasks <- analyses), with no import cycles, no module
importing a command-line module but the ``ftmech`` dispatcher, no file over the size limit, and a package that
imports torch only when a module that needs it is used.

The import graph is read from the source with ``ast`` (imports inside functions included), so a lazy import
cannot hide an upward arrow.
"""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAYERS = ("interp", "procedural_tasks", "analyses")  # each may import only itself and the ones before it
DISPATCHER = "analyses.cli"
MAX_LINES = 500


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module -> the project modules it imports (``from pkg import mod`` resolves to ``pkg.mod``)."""
    files = {module_name(p, root): p for top in LAYERS for p in (root / top).rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                candidates = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                candidates = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
            else:
                continue
            for candidate in candidates:
                while candidate and candidate not in files:
                    candidate = candidate.rpartition(".")[0]
                if candidate and candidate != name:
                    targets.add(candidate)
                    break
        graph[name] = targets
    return graph


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    """Upward imports (a lower layer importing a higher one) and imports of CLI modules."""
    rank = {top: i for i, top in enumerate(LAYERS)}
    found = []
    for source, targets in graph.items():
        for target in targets:
            if rank[target.split(".")[0]] > rank[source.split(".")[0]]:
                found.append(f"upward: {source} -> {target}")
            is_cli = target.rpartition(".")[2] in ("cli",) or target.endswith("_cli")
            if is_cli and source != DISPATCHER:
                found.append(f"imports a command-line module: {source} -> {target}")
    return sorted(found)


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_layers_point_down_and_no_module_imports_a_cli() -> None:
    assert layer_violations(import_graph(ROOT)) == []


def test_no_import_cycles() -> None:
    assert cycles(import_graph(ROOT)) == []


def test_no_file_over_the_size_limit() -> None:
    tops = (*LAYERS, "tests", "benchmarks", "scripts")
    sizes = {p: len(p.read_text().splitlines()) for top in tops for p in (ROOT / top).rglob("*.py")}
    assert {str(p.relative_to(ROOT)): n for p, n in sizes.items() if n > MAX_LINES} == {}


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for top in LAYERS:
        (tmp_path / top).mkdir(exist_ok=True)
        (tmp_path / top / "__init__.py").touch()
    return tmp_path


def test_checker_finds_an_upward_import_a_lazy_one_a_cli_import_and_a_cycle(tmp_path) -> None:
    root = _tree(
        tmp_path,
        {
            "interp/a.py": "def f():\n    from analyses.study import g\n",
            "interp/b.py": "import interp.c\n",
            "interp/c.py": "from interp import b\n",
            "procedural_tasks/task.py": "from analyses import study\n",
            "analyses/study.py": "from analyses.tracr.cli import main\n",
            "analyses/tracr/__init__.py": "",
            "analyses/tracr/cli.py": "",
            "analyses/cli.py": "from analyses.tracr import cli\n",
        },
    )
    graph = import_graph(root)
    assert layer_violations(graph) == [
        "imports a command-line module: analyses.study -> analyses.tracr.cli",
        "upward: interp.a -> analyses.study",
        "upward: procedural_tasks.task -> analyses.study",
    ]
    assert cycles(graph) == [["interp.b", "interp.c"]]


@pytest.mark.parametrize("source", ["import interp\n", "from interp.b import x\n"])
def test_checker_accepts_downward_imports(tmp_path, source) -> None:
    root = _tree(tmp_path, {"interp/b.py": "x = 1\n", "analyses/study.py": source})
    graph = import_graph(root)
    assert layer_violations(graph) == [] and cycles(graph) == []


def test_the_package_resolves_its_exports_on_first_use_and_imports_no_torch_itself() -> None:
    code = (
        "import sys, interp, interp.config, interp.errors, analyses.cli\n"
        "assert 'torch' not in sys.modules, 'importing interp or the command line loaded torch'\n"
        "assert sorted(interp.__all__) == sorted(interp._EXPORTS)\n"
        "missing = [name for name in interp.__all__ if getattr(interp, name, None) is None]\n"
        "assert not missing, missing\n"
        "assert interp.build_model is __import__('interp.models').models.build_model\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, capture_output=True, text=True)
