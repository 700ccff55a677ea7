"""`siyu-stream demo` from the outside: actions flow, the API needs the printed token, and
Ctrl-C stops it cleanly."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from siyu_stream.kafka.embedded import free_port

pytestmark = pytest.mark.integration
# Bounds so that a broken demo fails instead of hanging; they are not timing claims.
MAX_LINES = 200
MAX_LOOKUPS = 100


def lookup(url: str, token: str | None) -> tuple[int, dict[str, object]]:
    request = urllib.request.Request(url)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_demo_shows_actions_flowing_guards_the_api_and_stops_cleanly(tmp_path: Path) -> None:
    errors_file = tmp_path / "demo.stderr"  # a file, not a pipe nobody reads while it runs
    demo = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "siyu_stream.cli",
            "demo",
            "--every",
            "1",
            "--rate",
            "100",
            "--workdir",
            str(tmp_path / "demo"),
        ],
        stdout=subprocess.PIPE,
        stderr=errors_file.open("w"),
        text=True,
        env={"PATH": "/usr/bin:/bin", "SIYU_WEB_PORT": str(free_port())},  # no SIYU_API_TOKEN
    )
    assert demo.stdout is not None
    try:
        seen: list[str] = []
        curl: re.Match[str] | None = None
        # Read until the curl line is out and a summary shows state changes: then the
        # worker runs and has processed events.
        for line in demo.stdout:
            seen.append(line)
            curl = curl or re.search(r'curl -H "Authorization: Bearer (\S+)" (\S+)', line)
            changes = re.search(r"change ([\d,]+)", line)
            if curl and changes and int(changes.group(1).replace(",", "")) > 0:
                break
            assert len(seen) < MAX_LINES, "".join(seen)
        assert curl is not None, "".join(seen)
        token, url = curl.groups()
        for _ in range(MAX_LOOKUPS):  # the example customer's first event may still be queued
            status, body = lookup(url, token)
            if status != 404:
                break
            time.sleep(0.2)
        assert status == 200, body
        assert url.endswith(f"/customers/{body['customer_id']}")
        assert lookup(url, None)[0] == 401
        assert lookup(url, token + "x")[0] == 401
    finally:
        demo.send_signal(signal.SIGINT)  # Ctrl-C
        rest, _ = demo.communicate(timeout=120)
    assert demo.returncode == 0, "".join(seen) + rest + errors_file.read_text()
    lines = [line for line in [*seen, *rest.splitlines()] if line.startswith("[")]
    gifts = [int(m.replace(",", "")) for m in re.findall(r"gift ([\d,]+)", lines[-1])]
    changes = [int(m.replace(",", "")) for m in re.findall(r"change ([\d,]+)", lines[-1])]
    assert gifts and changes and changes[0] > 0
    # the notifier ran beside the worker: what it counts as sent is in its file
    [sent] = [int(m.replace(",", "")) for m in re.findall(r"notify: sent ([\d,]+)", lines[-1])]
    out = (tmp_path / "demo" / "notify.out").read_text().splitlines()
    assert len(out) >= sent and all(line.startswith("notify stdout: {") for line in out)
    assert "demo stopped: broker saved and stopped" in rest
