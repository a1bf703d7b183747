"""The ssn package's imports form no cycle, deferred (function-level) imports included."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "ssn"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Module -> the package's modules it imports anywhere in its code. ``from a import
    b`` counts as an import of the submodule ``a.b`` where there is one, else of ``a``."""
    modules = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        imported = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                for alias in node.names:
                    submodule = f"{node.module}.{alias.name}"
                    imported.add(submodule if submodule in modules else node.module)
        graph[name] = {module for module in imported if module in modules and module != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    found, state, path = [], {}, []

    def visit(module: str) -> None:
        state[module], _ = "open", path.append(module)
        for target in sorted(graph[module]):
            if state.get(target) == "open":
                found.append(path[path.index(target):] + [target])
            elif target not in state:
                visit(target)
        state[module], _ = "done", path.pop()

    for module in sorted(graph):
        if module not in state:
            visit(module)
    return found


def test_the_package_import_graph_has_no_cycle():
    assert cycles(import_graph()) == []


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == [["a", "b", "c", "a"]]


def test_the_graph_covers_the_batch_inference_package():
    """The batch-inference modules are in the graph, and the old homes only re-export."""
    graph = import_graph()
    infer = {name for name in graph if name.startswith("ssn.infer.")}
    assert {"ssn.infer.job", "ssn.infer.records", "ssn.infer.inputs", "ssn.infer.outputs",
            "ssn.infer.engines", "ssn.infer.task", "ssn.infer.run"} <= infer
    assert "ssn.infer.run" in graph["ssn.batch"] and "ssn.infer.engines" in graph["ssn.engines"]
    assert not any(module.startswith(("ssn.batch", "ssn.engines")) or module == "ssn.cli.infer"
                   for name in infer for module in graph[name])
    assert graph["ssn.color"] & {"ssn.threads"} and "ssn.engines" not in graph["ssn.color"]


# Modules that a worker process imports before it sets its thread count: none may load Caffe.
CAFFE_FREE = ["ssn.threads", "ssn.infer", "ssn.infer.job", "ssn.infer.records",
              "ssn.infer.inputs", "ssn.infer.outputs", "ssn.infer.engines", "ssn.engines",
              "ssn.cli.infer"]


@pytest.mark.slow
def test_the_batch_modules_other_than_the_task_import_without_caffe():
    code = ("import sys\n"
            f"for name in {CAFFE_FREE!r}:\n"
            "    __import__(name)\n"
            "print(sorted(m for m in sys.modules if m == 'caffe' or m.startswith('caffe.')))\n"
            "import ssn.infer.task\n"
            "print('caffe' in sys.modules)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=PACKAGE.parent, check=True)
    assert result.stdout.split("\n")[:2] == ["[]", "True"]  # the task module does load it
