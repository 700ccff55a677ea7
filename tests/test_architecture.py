"""The package's shape: packages by role with imports flowing one way (edges -> live /
replay / backtest -> event time and observation -> core), the core pure (no Kafka, wall
clock, logging or I/O in the rule modules) and importing only the standard library and its
codecs, nothing importing Faust, no import cycle, and only the worker driving the processor."""

from __future__ import annotations

import ast
import graphlib
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "siyu_stream"
RULE_MODULES = ["rules", "step", "timers", "policy", "state", "actions", "events", "clock"]
FORBIDDEN_IMPORTS = {"faust", "aiokafka", "mode", "logging", "time", "os", "socket", "asyncio"}
FORBIDDEN_CALLS = {"now", "utcnow", "today", "open", "print", "monotonic"}


def test_rule_modules_import_nothing_impure() -> None:
    for name in RULE_MODULES:
        tree = ast.parse((PACKAGE / "core" / f"{name}.py").read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                roots = {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                roots = {(node.module or "").split(".")[0]}
            else:
                continue
            assert not roots & FORBIDDEN_IMPORTS, f"{name}.py imports {roots & FORBIDDEN_IMPORTS}"


def test_rule_modules_call_no_clock_or_io() -> None:
    for name in RULE_MODULES:
        tree = ast.parse((PACKAGE / "core" / f"{name}.py").read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                func = node.func
                called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                assert called not in FORBIDDEN_CALLS, f"{name}.py calls {called}()"


def test_replay_and_cli_load_no_aiokafka() -> None:
    # replay and the CLI load no broker client: the CLI imports it only for the commands
    # that talk to Kafka
    code = (
        "import sys, siyu_stream.replay.run, siyu_stream.cli; "
        "bad = [m for m in sys.modules if m.split('.')[0] == 'aiokafka']; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


# ---------------------------------------------------------------- the import graph


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    name = test.attr if isinstance(test, ast.Attribute) else getattr(test, "id", "")
    return name == "TYPE_CHECKING"


def _imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement, at any depth (a function's lazy import is still a dependency),
    except those under `if TYPE_CHECKING:`, which never run."""
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        children: list[ast.AST] = list(ast.iter_child_nodes(node))
        if isinstance(node, ast.If) and _is_type_checking(node):
            children = list(node.orelse)
        for child in children:
            visit(child)

    visit(tree)
    return found


def _import_graph(package: Path) -> dict[str, set[str]]:
    """Module -> the modules of the same package it imports (dotted names; the package's
    `__init__` is the package name). `from pkg import x` counts as importing `pkg.x` when
    x is a module, else `pkg` itself."""
    modules = {
        ".".join((package.name, *path.relative_to(package).with_suffix("").parts)).removesuffix(
            ".__init__"
        ): path
        for path in sorted(package.rglob("*.py"))
    }

    def module_of(name: str) -> str:
        # `import pkg.a.b` or `from pkg.a import f`: the longest prefix that is a module
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name

    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        # relative imports resolve against the module's package (itself, for an __init__)
        home = module if path.name == "__init__.py" else module.rpartition(".")[0]
        edges: set[str] = set()
        for node in _imports(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = importlib.util.resolve_name("." * node.level + (node.module or ""), home)
                targets = [f"{base}.{alias.name}" for alias in node.names]
            edges |= {module_of(target) for target in targets}
        graph[module] = edges - {"", module}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    try:
        tuple(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as error:
        cycle: list[str] = error.args[1]
        return cycle
    return None


def test_import_graph_reader_sees_every_form(tmp_path: Path) -> None:
    """The checks below rest on _import_graph: it must find each import form, and a cycle."""
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    files = {
        "__init__.py": "VERSION = 1\n",
        "a.py": "from pkg import b\nfrom pkg import VERSION\n",
        "b.py": "import pkg.sub.c\nfrom typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from pkg import a\n",
        "sub/__init__.py": "from . import c\n",
        "sub/c.py": "def f():\n    from ..d import g\n",
        "d.py": "from .a import x\n",
    }
    for name, text in files.items():
        (package / name).write_text(text)
    graph = _import_graph(package)
    assert graph == {
        "pkg": set(),
        "pkg.a": {"pkg.b", "pkg"},
        "pkg.b": {"pkg.sub.c"},
        "pkg.sub": {"pkg.sub.c"},
        "pkg.sub.c": {"pkg.d"},
        "pkg.d": {"pkg.a"},
    }
    cycle = _cycle(graph)
    assert cycle is not None
    assert set(cycle) == {"pkg.a", "pkg.b", "pkg.sub.c", "pkg.d"}
    graph["pkg.d"] = set()
    assert _cycle(graph) is None


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    found = _import_graph(PACKAGE)
    assert "siyu_stream.live.processor" in found and "siyu_stream.live.worker" in found
    return found


def test_nothing_imports_faust() -> None:
    # the worker runs on aiokafka alone; a Faust import would fail only where Faust is
    # missing, so check the source, not the interpreter's modules
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in _imports(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                roots = {alias.name.split(".")[0] for alias in node.names}
            else:
                roots = {(node.module or "").split(".")[0]} if not node.level else set()
            assert "faust" not in roots, f"{path.relative_to(PACKAGE.parent)} imports faust"


def test_import_graph_has_no_cycle(graph: dict[str, set[str]]) -> None:
    cycle = _cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(reversed(cycle or []))


def test_only_the_live_package_drives_the_processor(graph: dict[str, set[str]]) -> None:
    # the processor is the worker's runtime; the web, metrics and demo layers read the
    # worker through view.WorkerView instead
    importers = {module for module, edges in graph.items() if "siyu_stream.live.processor" in edges}
    assert importers == {"siyu_stream.live.commit", "siyu_stream.live.restore"}


# ---------------------------------------------------------------- packages by role

# The room of each top-level module: configuration is read by every layer above the core,
# the rest are edges (commands and tools) that may use anything.
TOP_LEVEL = {
    "build": "config",
    "settings": "config",
    "topology": "config",
    "demo": "edge",
    "simulate": "edge",
    "traffic": "edge",
}
# Which rooms each room may import (its own always). Imports flow one way, downwards.
MAY_IMPORT: dict[str, set[str]] = {
    "core": set(),
    "config": {"core"},
    "eventtime": {"core"},
    "observe": {"core", "config", "eventtime"},
    "kafka": {"core", "config"},
    "replay": {"core", "config", "eventtime", "observe"},
    "backtest": {"core", "config", "eventtime", "observe", "replay"},
    "live": {"core", "config", "eventtime", "observe", "kafka"},
    "bootstrap": {"core", "config", "eventtime", "observe", "kafka", "replay", "live"},
    "notify": {"core", "config", "observe", "kafka"},
    "edge": {
        "core",
        "config",
        "eventtime",
        "observe",
        "kafka",
        "replay",
        "backtest",
        "live",
        "bootstrap",
        "notify",
    },
}
# the command line is an edge that may also use the other edges (the demo)
MAY_IMPORT["cli"] = MAY_IMPORT["edge"] | {"edge"}
# What the core may import besides itself: the standard library and its codecs.
CORE_THIRD_PARTY = {"msgspec", "orjson", "fastjsonschema"}
MAX_TOP_LEVEL_MODULES = 8
MAX_LINES = 450
LONG_ON_PURPOSE = {"siyu_stream.simulate"}  # its docstring says why


def _room(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return "edge"  # the package's own __init__
    if len(parts) == 2 and (PACKAGE / f"{parts[1]}.py").is_file():
        return TOP_LEVEL[parts[1]]
    return parts[1]


def test_every_module_has_a_room() -> None:
    tops = {path.stem for path in PACKAGE.glob("*.py")} - {"__init__"}
    assert tops == set(TOP_LEVEL), "give each top-level module a room in TOP_LEVEL"
    assert len(tops) + 1 <= MAX_TOP_LEVEL_MODULES
    packages = {path.parent.name for path in PACKAGE.glob("*/__init__.py")}
    assert packages == set(MAY_IMPORT) - {"config", "edge"}


def _against_layering(graph: dict[str, set[str]]) -> list[str]:
    return [
        f"{module} ({_room(module)}) imports {target} ({_room(target)})"
        for module, targets in graph.items()
        for target in targets
        if _room(target) != _room(module) and _room(target) not in MAY_IMPORT[_room(module)]
    ]


def test_imports_flow_one_way(graph: dict[str, set[str]]) -> None:
    wrong = _against_layering(graph)
    assert not wrong, "imports against the layering:\n" + "\n".join(wrong)


def test_layering_check_catches_an_upward_import(graph: dict[str, set[str]]) -> None:
    # the check above must fail on an upward import, not pass because it reads nothing
    for module, target in [
        ("siyu_stream.core.step", "siyu_stream.eventtime.partition"),
        ("siyu_stream.eventtime.merge", "siyu_stream.observe.observer"),
        ("siyu_stream.replay.engine", "siyu_stream.live.worker"),
        ("siyu_stream.live.worker", "siyu_stream.replay.engine"),
        ("siyu_stream.observe.view", "siyu_stream.kafka.admin"),
        ("siyu_stream.settings", "siyu_stream.cli"),
    ]:
        bad = {**graph, module: graph[module] | {target}}
        assert _against_layering(bad) == [
            f"{module} ({_room(module)}) imports {target} ({_room(target)})"
        ]


def test_core_imports_only_stdlib_and_codecs() -> None:
    allowed = set(sys.stdlib_module_names) | CORE_THIRD_PARTY | {"siyu_stream"}
    for path in sorted((PACKAGE / "core").glob("*.py")):
        for node in _imports(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                names = [node.module or ""] if not node.level else ["siyu_stream.core"]
            for name in names:
                assert name.split(".")[0] in allowed, f"core/{path.name} imports {name}"
                if name.startswith("siyu_stream"):
                    assert name.startswith("siyu_stream.core"), f"core/{path.name} imports {name}"


def test_modules_stay_small() -> None:
    for path in sorted(PACKAGE.rglob("*.py")):
        module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        lines = len(path.read_text().splitlines())
        assert module in LONG_ON_PURPOSE or lines <= MAX_LINES, f"{module}: {lines} lines"
