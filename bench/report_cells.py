"""The cells of bench/results.md: a section's table and how figures are written in it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Results = dict[str, Any]
KAFKA = "Apache Kafka"


@dataclass
class Section:
    """Commands, one table (header: cells joined by " | "), a note, the README's figures."""

    title: str
    header: str
    broker: str = ""
    commands: list[tuple[str, str]] = field(default_factory=list)
    rows: list[str] = field(default_factory=list)
    note: str = ""
    readme: list[tuple[str, str]] = field(default_factory=list)

    def row(self, *cells: object) -> None:
        self.rows.append(" | ".join(map(str, cells)))


def n(x: float | None) -> str:
    return "–" if x is None else f"{x:,.0f}"


def ratio(a: float | None, b: float | None, of: str = "") -> str:
    return f"×{a / b:.2f}{f' of {of}' if of else ''}" if a and b else ""


def listed(values: list[Any], fmt: Callable[[Any], str] = n) -> str:
    return ", ".join(fmt(v) for v in values)
