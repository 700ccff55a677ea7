"""The backtest report as one self-contained HTML page, rendered from the summary alone.

For an operations manager who forwards it: inline CSS and SVG (`svgchart`), no script
and no network. The charts' numbers are embedded as JSON (`<script type="application/json"
id="siyu-data">`, inert data, never run) so that a test, or a curious reader, can check
them against summary.json.
"""

from __future__ import annotations

from html import escape
from typing import Any

import orjson

from siyu_stream.backtest.svgchart import Series, bar_chart, line_chart
from siyu_stream.core.actions import yuan

BASELINE_COLOR, NEW_COLOR = "#8b95a1", "#1c64f2"
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
MAX_GROUPS = 40
"""Groups of differences shown; diff.jsonl has every action."""

CSS = """
body{margin:0;background:#f4f6f9;color:#1f2733;font:14px/1.45 Helvetica,Arial,sans-serif}
main{max-width:1100px;margin:0 auto;padding:24px 28px 48px}
h1{font-size:24px;margin:0 0 4px}h2{font-size:17px;margin:32px 0 10px}
.sub{color:#5b6472;margin:0}.cards{display:flex;gap:12px;margin:20px 0 4px;flex-wrap:wrap}
.card{flex:1 1 180px;background:#fff;border:1px solid #dde2e8;border-radius:8px;padding:12px 14px}
.card b{display:block;font-size:22px;margin:2px 0}.card span{color:#5b6472;font-size:12px}
.k{font-size:12px;color:#5b6472;text-transform:uppercase;letter-spacing:.04em}
.charts{display:grid;grid-template-columns:1fr 1fr;gap:12px}
figure{margin:0;background:#fff;border:1px solid #dde2e8;border-radius:8px;padding:10px}
figcaption{font-weight:bold;font-size:13px;margin:0 0 4px}
.legend{font-size:12px;color:#5b6472;margin:6px 0 0}.legend i{display:inline-block;width:18px;
height:0;border-top:3px solid;vertical-align:middle;margin:0 5px 0 12px}
table{border-collapse:collapse;width:100%;background:#fff;border:1px solid #dde2e8}
th,td{padding:6px 9px;border-bottom:1px solid #eceff3;text-align:left;vertical-align:top}
th{background:#f0f2f5;font-size:12px;color:#4a5260}td.n,th.n{text-align:right;
font-variant-numeric:tabular-nums}tr.hot td{background:#fffbea}
.badge{border-radius:10px;padding:1px 8px;font-size:12px;color:#fff}
.added{background:#2f9e44}.removed{background:#e03131}.changed{background:#e8590c}
.ex{font-size:12px;color:#3d4553;margin:0 0 6px}.ex q{color:#1f2733}
.up{color:#c92a2a}.down{color:#2b8a3e}footer{margin-top:32px;color:#5b6472;font-size:12px}
code{background:#eceff3;padding:0 4px;border-radius:3px}
.pop{display:grid;grid-template-columns:repeat(4,1fr);gap:12px;align-items:start}
.diff td:nth-child(3){width:24%}.diff td:nth-child(6){width:44%}
"""


def _day(iso: str) -> str:
    return f"{MONTHS[int(iso[5:7]) - 1]} {int(iso[8:10])}"


def _when(rfc3339: str) -> str:
    """`2026-05-06T13:07:21Z` as `2026-05-06 13:07 UTC`: the minute is enough to find it."""
    return f"{rfc3339[:10]} {rfc3339[11:16]} UTC"


def _percent(gift: dict[str, Any]) -> str:
    if gift["delta_percent"] is not None:
        return f"{gift['delta_percent']:+.1f} %"
    return "new" if gift["new_fen"] else "—"  # nothing before: no ratio


def _setting(value: Any) -> str:
    """A rules value; None is a key the file does not set (a gift code: worth nothing)."""
    return "(not set)" if value is None else str(value)


def _money(fen: float) -> str:
    return f"¥{yuan(int(fen))}"


def _signed(n: int, money: bool = False) -> str:
    text = _money(abs(n)) if money else f"{abs(n):,}"
    return f"+{text}" if n > 0 else f"-{text}" if n < 0 else "0"


def _delta(old: int, new: int, money: bool = False, tone: bool = True) -> str:
    """Change as text; with `tone`, red when it rises (more cost, more contact), green when
    it falls."""
    css = ("up" if new > old else "down" if new < old else "") if tone else ""
    return f'<span class="{css}">{_signed(new - old, money)}</span>'


def _table(head: list[str], rows: list[list[str]], numeric: set[int], hot: list[bool]) -> str:
    cells = "".join(
        f'<th class="n">{h}</th>' if i in numeric else f"<th>{h}</th>" for i, h in enumerate(head)
    )
    body = []
    for row, flag in zip(rows, hot, strict=True):
        tds = "".join(
            f'<td class="n">{c}</td>' if i in numeric else f"<td>{c}</td>"
            for i, c in enumerate(row)
        )
        body.append(f'<tr class="hot">{tds}</tr>' if flag else f"<tr>{tds}</tr>")
    return f"<table><tr>{cells}</tr>{''.join(body)}</table>"


def _pair(series: dict[str, list[int]], names: dict[str, str]) -> list[Series]:
    return [
        Series("baseline", names["baseline"], series["baseline"], BASELINE_COLOR, wide=True),
        Series("new", names["new"], series["new"], NEW_COLOR),
    ]


def _charts(summary: dict[str, Any], names: dict[str, str]) -> str:
    data = summary["series"]
    days = [_day(d) for d in data["days"]]
    figures = []
    titles = {
        "gift": "Gifts",
        "reminder": "Reminders delivered",
        "change": "State changes",
        "suppressed": "Reminders held back (suppressed)",
    }
    for kind, per_run in data["actions_per_day"].items():
        chart = line_chart(f"{titles[kind]} per day", days, _pair(per_run, names))
        figures.append(f"<figure><figcaption>{titles[kind]} per day</figcaption>{chart}</figure>")
    if data["weeks"]:
        weeks = [f"wk {_day(w)}" for w in data["weeks"]]
        chart = bar_chart(
            "Gift cost per week (yuan)",
            weeks,
            _pair(data["gift_fen_per_week"], names),
            fmt=lambda v: f"¥{v / 100:,.0f}",
        )
        figures.append(f"<figure><figcaption>Gift cost per week</figcaption>{chart}</figure>")
    if data["staff_max_per_day"]:
        chart = line_chart(
            "Reminders of the busiest staff member per day",
            days,
            _pair(data["staff_max_per_day"], names),
        )
        figures.append(
            "<figure><figcaption>Reminders of the busiest staff member per day"
            f"</figcaption>{chart}</figure>"
        )
    legend = (
        f'<p class="legend">'
        f'<i style="border-color:{BASELINE_COLOR};border-top-width:6px;opacity:.55"></i>'
        f"baseline: {escape(names['baseline'])}"
        f'<i style="border-color:{NEW_COLOR}"></i>new: {escape(names["new"])}'
        f" · days in {escape(summary['zone'])}</p>"
    )
    return f'{legend}<div class="charts">{"".join(figures)}</div>'


def _cards(summary: dict[str, Any]) -> str:
    total = summary["differences_total"]
    gifts = summary["gift_cost"][-1]
    contact = summary["customer_reminders_7d"]
    staff = summary["staff_reminders_per_day"]
    held = {n: sum(summary["suppressed"][n].values()) for n in ("baseline", "new")}
    pct = gifts["delta_percent"]
    cards = [
        (
            "Actions that differ",
            f"{total['added'] + total['removed'] + total['changed']:,}",
            f"{total['added']:,} added · {total['removed']:,} removed · "
            f"{total['changed']:,} changed · {total['customers']:,} customers",
        ),
        (
            "Gift cost",
            _money(gifts["new_fen"]),
            f"baseline {_money(gifts['baseline_fen'])} · {_signed(gifts['delta_fen'], True)}"
            + (f" ({pct:+.1f} %)" if pct is not None else ""),
        ),
        (
            "Messages to a customer in 7 days",
            f"p95 {contact['new']['p95']} · max {contact['new']['max']}",
            f"baseline p95 {contact['baseline']['p95']} · max {contact['baseline']['max']} "
            "(customer-facing reminders)",
        ),
        ("Reminders held back", f"{held['new']:,}", f"baseline {held['baseline']:,}"),
        (
            "Busiest staff day",
            f"{staff['new']['max']:,} reminder{'s' if staff['new']['max'] != 1 else ''}",
            f"baseline {staff['baseline']['max']:,} · median staff day "
            f"{staff['baseline']['p50']} → {staff['new']['p50']}",
        ),
    ]
    return (
        '<div class="cards">'
        + "".join(
            f'<div class="card"><div class="k">{escape(k)}</div><b>{escape(v)}</b>'
            f"<span>{escape(s)}</span></div>"
            for k, v, s in cards
        )
        + "</div>"
    )


def _differences(summary: dict[str, Any]) -> str:
    rows, hot = [], []
    for group in summary["differences"][:MAX_GROUPS]:
        examples = []
        for ex in group["examples"]:
            before = f"<q>{escape(ex['baseline_because'])}</q>" if ex["baseline_because"] else "—"
            after = f"<q>{escape(ex['new_because'])}</q>" if ex["new_because"] else "—"
            who = f"<b>{escape(ex['customer_id'])}</b> {escape(_when(ex['occurred_at']))}"
            examples.append(f'<p class="ex">{who}<br>before: {before}<br>after: {after}</p>')
        change = group["change"]
        rows.append(
            [
                escape(group["rule"]),
                f'<span class="badge {change}">{change}</span>',
                escape(group["what"]),
                f"{group['actions']:,}",
                f"{group['customers']:,}",
                "".join(examples),
            ]
        )
        hot.append(False)
    more = len(summary["differences"]) - MAX_GROUPS
    note = f"<p class='sub'>{more} more groups in diff.jsonl.</p>" if more > 0 else ""
    if not rows:
        return "<p>No action differs: both rule sets emit exactly the same actions.</p>"
    head = ["Rule", "Change", "What", "Actions", "Customers", "Examples (before / after)"]
    return _table(head, rows, {3, 4}, hot).replace("<table>", '<table class="diff">', 1) + note


def _numbers(summary: dict[str, Any]) -> str:
    parts = []
    head = ["Rule", "Kind", "Baseline", "New", "Added", "Removed", "Changed"]
    rows = [
        [
            escape(r["rule"]),
            escape(r["kind"]),
            f"{r['baseline']:,}",
            f"{r['new']:,}",
            f"{r['added']:,}",
            f"{r['removed']:,}",
            f"{r['changed']:,}",
        ]
        for r in summary["actions"]
    ]
    hot = [
        r["baseline"] != r["new"] or bool(r["added"] or r["removed"] or r["changed"])
        for r in summary["actions"]
    ]
    parts.append("<h2>Actions per rule and kind</h2>" + _table(head, rows, {2, 3, 4, 5, 6}, hot))
    head = ["Gift", "Baseline", "New", "Baseline cost", "New cost", "Δ", "Δ %"]
    rows = [
        [
            escape(g["code"]),
            f"{g['baseline_count']:,}",
            f"{g['new_count']:,}",
            _money(g["baseline_fen"]),
            _money(g["new_fen"]),
            _delta(g["baseline_fen"], g["new_fen"], money=True),
            _percent(g),
        ]
        for g in summary["gift_cost"]
    ]
    hot = [g["delta_fen"] != 0 for g in summary["gift_cost"]]
    parts.append("<h2>Gift cost by code</h2>" + _table(head, rows, {1, 2, 3, 4, 5, 6}, hot))
    rows, hot = [], []
    for label, key in (
        ("Customer-facing reminders per customer, rolling 7 days", "customer_reminders_7d"),
        ("Reminders per staff member per day", "staff_reminders_per_day"),
    ):
        for stat in ("p50", "p95", "max"):
            old, new = (summary[key][n][stat] for n in ("baseline", "new"))
            rows.append([f"{label}: {stat}", f"{old:,}", f"{new:,}", _delta(old, new)])
            hot.append(old != new)
    for reason in summary["suppressed"]["baseline"]:
        old, new = (summary["suppressed"][n][reason] for n in ("baseline", "new"))
        rows.append(
            [
                f"Reminders held back: {escape(reason)}",
                f"{old:,}",
                f"{new:,}",
                _delta(old, new, tone=False),
            ]
        )
        hot.append(old != new)
    head = ["Measure", "Baseline", "New", "Δ"]
    parts.append("<h2>Contact pressure and staff load</h2>" + _table(head, rows, {1, 2, 3}, hot))
    tables = []
    for dimension, values in summary["population"]["baseline"].items():
        rows, hot = [], []
        for value, old in values.items():
            new = summary["population"]["new"][dimension][value]
            rows.append([escape(value), f"{old:,}", f"{new:,}", _delta(old, new, tone=False)])
            hot.append(old != new)
        head = [escape(dimension.capitalize()), "Baseline", "New", "Δ"]
        tables.append(_table(head, rows, {1, 2, 3}, hot))
    parts.append(
        "<h2>Customers at the end, by layer, tier, health and membership</h2>"
        f'<div class="pop">{"".join(tables)}</div>'
    )
    return "".join(parts)


def _go_live(run: dict[str, Any]) -> str:
    """The go-live sentence of the run line, if the run had one."""
    if not run.get("go_live"):
        return ""
    return (
        f", going live at <code>{escape(run['go_live'])}</code> (gifts and reminders due "
        f"before it withheld; gifts earned in the {run['grant_since_days']} days before it "
        "granted)"
    )


def render(summary: dict[str, Any]) -> str:
    run = summary["run"]
    names = {"baseline": run["baseline_rules"], "new": run["new_rules"]}
    events = summary["events"]["new"]
    days = summary["series"]["days"]
    span = f"{days[0]} to {days[-1]}" if days else "no actions"
    rules = [
        [escape(c["key"]), escape(_setting(c["baseline"])), escape(_setting(c["new"]))]
        for c in summary["rule_changes"]
    ]
    rules_table = (
        _table(["Key", "Baseline", "New"], rules, set(), [False] * len(rules))
        if rules
        else "<p>The two rules files set the same values.</p>"
    )
    data = orjson.dumps(summary["series"]).replace(b"</", b"<\\/").decode()
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Backtest: {escape(names["new"])} vs {escape(names["baseline"])}</title>
<style>{CSS}</style></head><body><main>
<h1>Rule change backtest: {escape(names["new"])} vs {escape(names["baseline"])}</h1>
<p class="sub">Both rule sets ran over the same history ({escape(", ".join(run["inputs"]))}:
{sum(events.values()):,} events, actions {escape(span)}), {run["partitions"]} partitions,
<code>--now {escape(run["now"])}</code>{
        f" <code>--until {escape(run['until'])}</code>" if run["until"] else ""
    }{_go_live(run)}. An action is <b>added</b> when only the new rules emit it,
<b>removed</b> when only the baseline does, and <b>changed</b> when both emit it for the same
firing (rule, customer and cause) with different content, for example a reminder the new
contact policy holds back.</p>
{_cards(summary)}
<h2>What changed in the rules</h2>{rules_table}
<h2>Over time</h2>{_charts(summary, names)}
<h2>Differences</h2>{_differences(summary)}
{_numbers(summary)}
<footer>Every differing action with both versions: <code>diff.jsonl</code>; every number
on this page: <code>summary.json</code>. Generated by <code>siyu-stream backtest</code>.
</footer>
<script type="application/json" id="siyu-data">{data}</script>
</main></body></html>
"""
