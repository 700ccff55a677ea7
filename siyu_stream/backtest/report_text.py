"""The backtest summary for the terminal: the numbers of summary.json as aligned text.

Rows where nothing differs are left out of the per-rule and per-gift tables (the files
have them all), so that a rule change reads in a screenful.
"""

from __future__ import annotations

from typing import Any

from siyu_stream.core.actions import yuan


def _money(fen: int, sign: bool = False) -> str:
    text = yuan(abs(fen))
    return ("+" if fen > 0 else "-" if fen < 0 else "") + text if sign else yuan(fen)


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}" if n == 1 else f"{n:,} {noun}s"


def _stats(numbers: dict[str, int]) -> str:
    return f"p50 {numbers['p50']:,} / p95 {numbers['p95']:,} / max {numbers['max']:,}"


def _go_live(run: dict[str, Any]) -> str:
    return f" --go-live {run['go_live']} --grant-since-days {run['grant_since_days']}"


def render(summary: dict[str, Any]) -> str:
    run = summary["run"]
    lines = [
        f"backtest: {run['new_rules']} vs {run['baseline_rules']} over "
        f"{', '.join(run['inputs'])} (--now {run['now']} --partitions {run['partitions']}"
        + (f" --until {run['until']}" if run["until"] else "")
        + (_go_live(run) if run.get("go_live") else "")
        + ")",
        f"  rules_version: baseline {summary['rules_version']['baseline']}, "
        f"new {summary['rules_version']['new']} (on every action each run emits)",
    ]
    for change in summary["rule_changes"]:
        old, new = (
            change[n] if change[n] is not None else "(not set)" for n in ("baseline", "new")
        )
        lines.append(f"  {change['key']}: {old} → {new}")
    events = summary["events"]
    runs = ["both"] if events["baseline"] == events["new"] else ["baseline", "new"]
    counts = [
        f"{name}: {e['ok']:,} ok, {e['duplicate']:,} duplicate, {e['rejected']:,} rejected"
        for name, e in zip(runs, (events["baseline"], events["new"]), strict=False)
    ]
    lines.append("events " + "; ".join(counts))
    total = summary["differences_total"]
    lines.append(
        f"differences: {total['added']:,} added, {total['removed']:,} removed, "
        f"{total['changed']:,} changed actions, {_count(total['customers'], 'customer')}"
    )
    rows = [r for r in summary["actions"] if r["added"] or r["removed"] or r["changed"]]
    rows += [r for r in summary["actions"] if r not in rows and r["baseline"] != r["new"]]
    if rows:
        lines.append("")
        head = ("rule", "kind", "baseline", "new", "added", "removed", "changed")
        lines.append(f"  {head[0]:<16}{head[1]:<12}" + "".join(f"{h:>10}" for h in head[2:]))
        for r in sorted(rows, key=lambda r: (r["rule"], r["kind"])):
            numbers = (r["baseline"], r["new"], r["added"], r["removed"], r["changed"])
            lines.append(
                f"  {r['rule']:<16}{r['kind']:<12}" + "".join(f"{n:>10,}" for n in numbers)
            )
    gifts = [g for g in summary["gift_cost"] if g["delta_fen"] or g["code"] == "total"]
    lines.append("")
    lines.append(f"  {'gift cost (yuan)':<22}{'baseline':>14}{'new':>14}{'Δ':>14}{'%':>9}")
    for g in gifts:
        pct = f"{g['delta_percent']:+.1f}%" if g["delta_percent"] is not None else "new"
        pct = pct if g["baseline_fen"] or g["new_fen"] else "-"
        lines.append(
            f"  {g['code']:<22}{_money(g['baseline_fen']):>14}{_money(g['new_fen']):>14}"
            f"{_money(g['delta_fen'], sign=True):>14}{pct:>9}"
        )
    lines.append("")
    contact, staff = summary["customer_reminders_7d"], summary["staff_reminders_per_day"]
    lines.append("customer-facing reminders per customer per rolling 7 days:")
    for name in ("baseline", "new"):
        lines.append(
            f"  {name:<9}{_stats(contact[name])} ({_count(contact[name]['customers'], 'customer')})"
        )
    held = summary["suppressed"]
    lines.append(
        "suppressed: "
        + (
            ", ".join(f"{r} {held['baseline'][r]:,} → {held['new'][r]:,}" for r in held["new"])
            or "none"
        )
    )
    lines.append("reminders per staff member per day:")
    for name in ("baseline", "new"):
        s = staff[name]
        lines.append(
            f"  {name:<9}{_stats(s)} ({s['staff']:,} staff, {s['unassigned']:,} unassigned)"
        )
    lines.append("customers at the end (baseline → new):")
    population = summary["population"]
    for dimension, values in population["baseline"].items():
        cells = []
        for value, old in values.items():
            new = population["new"][dimension][value]
            if old or new:
                cells.append(f"{value} {old:,}" + (f" → {new:,}" if new != old else ""))
        lines.append(f"  {dimension:<11}{', '.join(cells) or 'no customers'}")
    return "\n".join(lines)
