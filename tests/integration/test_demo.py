"""`siyu-stream demo` from the outside: actions flow, and it stops cleanly."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from siyu_stream.broker import free_port

pytestmark = pytest.mark.integration


def test_demo_shows_actions_flowing_and_stops_cleanly(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "siyu_stream.cli",
            "demo",
            "--duration",
            "8",
            "--every",
            "2",
            "--rate",
            "100",
            "--workdir",
            str(tmp_path / "demo"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={"PATH": "/usr/bin:/bin", "SIYU_WEB_PORT": str(free_port())},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = [line for line in result.stdout.splitlines() if line.startswith("[")]
    assert len(lines) >= 3
    gifts = [int(m.replace(",", "")) for m in re.findall(r"gift ([\d,]+)", lines[-1])]
    changes = [int(m.replace(",", "")) for m in re.findall(r"change ([\d,]+)", lines[-1])]
    assert gifts and changes and changes[0] > 0
    assert "demo stopped: broker saved and stopped" in result.stdout
