"""The backtest's report.html: its charts carry the summary's numbers, it needs nothing from
the network, and a real browser (Debian `chromium`, headless) draws it."""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
import tempfile
import zlib
from pathlib import Path
from typing import Any

import orjson
import pytest

from siyu_stream.backtest.report_html import NEW_COLOR
from siyu_stream.backtest.svgchart import scale
from siyu_stream.cli import main

DATA = Path(__file__).resolve().parent / "data"
KINDS = ("gift", "reminder", "change", "suppressed")


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str, Path]:
    out = tmp_path_factory.mktemp("backtest")
    args = ["backtest", str(DATA / "lifecycle.jsonl"), "--rules"]
    args += [str(DATA / "lifecycle.backtest.toml"), "--now", "2026-06-01T00:00:00Z"]
    args += ["--until", "2026-12-31T00:00:00Z", "--partitions", "4", "--out", str(out)]
    assert main(args) == 0
    summary = orjson.loads((out / "summary.json").read_bytes())
    return summary, (out / "report.html").read_text(encoding="utf-8"), out / "report.html"


def _data(html: str) -> Any:
    found = re.search(r'<script type="application/json" id="siyu-data">(.*?)</script>', html, re.S)
    assert found is not None
    return orjson.loads(found.group(1))


def test_the_embedded_chart_data_are_the_summarys_numbers(
    report: tuple[dict[str, Any], str, Path],
) -> None:
    summary, html, _ = report
    series = _data(html)
    assert series == summary["series"]
    for run in ("baseline", "new"):
        for kind in KINDS:
            total = sum(r[run] for r in summary["actions"] if r["kind"] == kind)
            assert sum(series["actions_per_day"][kind][run]) == total, (run, kind)
        assert sum(series["gift_fen_per_week"][run]) == summary["gift_cost"][-1][f"{run}_fen"]
        busiest = summary["staff_reminders_per_day"][run]["max"]
        assert max(series["staff_max_per_day"][run]) == busiest
    assert summary["differences_total"]["changed"] > 0  # the charts have something to show


def test_each_chart_draws_every_day_or_week_of_both_runs(
    report: tuple[dict[str, Any], str, Path],
) -> None:
    summary, html, _ = report
    days, weeks = len(summary["series"]["days"]), len(summary["series"]["weeks"])
    for run in ("baseline", "new"):
        lines = re.findall(rf'<polyline data-series="{run}" points="([^"]*)"', html)
        assert len(lines) == len(KINDS) + 1  # actions per kind, busiest staff member
        assert all(len(points.split()) == days for points in lines)
        bars = re.search(rf'<g data-series="{run}"[^>]*>(.*?)</g>', html, re.S)
        assert bars is not None and bars.group(1).count("<rect") == weeks


def test_the_report_is_self_contained(report: tuple[dict[str, Any], str, Path]) -> None:
    summary, html, _ = report
    assert not re.search(r"<(link|img|iframe)\b|<script(?![^>]*application/json)|@import", html)
    urls = set(re.findall(r"https?://[^\s\"'<>]+", html))
    assert urls == {"http://www.w3.org/2000/svg"}  # a namespace name, never fetched
    for group in summary["differences"]:  # every group with its sample's because texts
        for example in group["examples"]:
            for because in (example["baseline_because"], example["new_because"]):
                assert because is None or because.replace("<", "&lt;") in html


def test_value_axes_have_whole_round_steps() -> None:
    # (step, intervals): at most five gridlines above zero, steps 1, 2 or 5 x 10^k
    assert scale(0) == (1, 1)
    assert scale(2) == (1, 2)
    assert scale(11) == (5, 3)
    assert scale(50) == (10, 5)
    assert scale(51) == (20, 3)
    assert scale(760_000) == (200_000, 4)  # fen: ¥2,000 gridlines up to ¥8,000


# ---------------------------------------------------------------- a real browser


def _pixels(png: bytes) -> tuple[int, int, int, bytes]:
    """(width, height, bytes per pixel, unfiltered rows) of an 8-bit RGB(A) PNG."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", b""
    while pos < len(png):
        (size,) = struct.unpack(">I", png[pos : pos + 4])
        kind, body = png[pos + 4 : pos + 8], png[pos + 8 : pos + 8 + size]
        pos += size + 12
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat += body
    width, height, depth, color = struct.unpack(">IIBB", header[:10])
    assert depth == 8 and color in (2, 6), (depth, color)
    bpp = 3 if color == 2 else 4
    raw, stride = zlib.decompress(idat), width * bpp
    rows, previous = bytearray(), bytearray(stride)
    for y in range(height):
        kind, line = (
            raw[y * (stride + 1)],
            bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)]),
        )
        for i in range(stride):
            left = line[i - bpp] if i >= bpp else 0
            up, corner = previous[i], previous[i - bpp] if i >= bpp else 0
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                near = left if pa <= pb and pa <= pc else up if pb <= pc else corner
                line[i] = (line[i] + near) & 0xFF
        rows += line
        previous = line
    return width, height, bpp, bytes(rows)


@pytest.mark.deploy
def test_chromium_draws_the_report(report: tuple[dict[str, Any], str, Path]) -> None:
    binary = shutil.which("chromium")
    if binary is None:
        pytest.fail(
            "`chromium` not found: install the Debian package `chromium` "
            "(apt-get install chromium; make tools installs it)"
        )
    _, _, page = report
    with tempfile.TemporaryDirectory() as profile:
        shot = Path(profile) / "report.png"
        args = [binary, "--headless", "--no-sandbox", "--disable-gpu"]
        args += ["--disable-background-networking", "--disable-component-update"]
        args += ["--disable-sync", "--no-first-run", f"--user-data-dir={profile}/p"]
        args += [f"--screenshot={shot}", "--window-size=1000,1600", page.as_uri()]
        done = subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)
        assert shot.is_file(), done.stderr
        width, height, bpp, rows = _pixels(shot.read_bytes())
    assert (width, height) == (1000, 1600)
    pixels = [rows[i : i + 3] for i in range(0, len(rows), bpp)]
    colors = set(pixels)
    assert len(colors) > 100  # text, cards, badges and charts; a blank page has one
    blue = bytes.fromhex(NEW_COLOR[1:])
    # the new rules' lines and bars were drawn (measured: ~3,300 pixels; the legend has 54)
    assert pixels.count(blue) > 1_000
