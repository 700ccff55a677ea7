"""The core stays pure: no Kafka, Faust, wall clock, logging or I/O in the rule modules."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "siyu_stream"
RULE_MODULES = ["rules", "step", "timers", "policy", "state", "actions", "events", "clock"]
FORBIDDEN_IMPORTS = {"faust", "aiokafka", "mode", "logging", "time", "os", "socket", "asyncio"}
FORBIDDEN_CALLS = {"now", "utcnow", "today", "open", "print", "monotonic"}


def test_rule_modules_import_nothing_impure() -> None:
    for name in RULE_MODULES:
        tree = ast.parse((PACKAGE / f"{name}.py").read_text())
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
        tree = ast.parse((PACKAGE / f"{name}.py").read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                func = node.func
                called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                assert called not in FORBIDDEN_CALLS, f"{name}.py calls {called}()"


def test_replay_loads_neither_faust_nor_aiokafka() -> None:
    code = (
        "import sys, siyu_stream.replay, siyu_stream.cli; "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('faust', 'aiokafka')]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
