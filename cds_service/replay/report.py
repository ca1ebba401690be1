"""Show replay results: rich text grouped by indicator, JSON, JUnit XML and HTML.

The JUnit file follows the schema CI systems read (Jenkins/GitLab/GitHub ``testsuite`` /
``testcase`` with ``failure``, ``error`` and ``skipped``); the HTML report is in
:mod:`cds_service.replay._html`.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console, Group
from rich.markdown import Markdown
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from cds_service.replay import stats
from cds_service.replay._compare import rule_of
from cds_service.replay._html import html_report
from cds_service.replay.run import ScenarioResult

#: most urgent first, as EHRs sort cards
INDICATOR_ORDER = ("critical", "warning", "info")
INDICATOR_STYLE = {"critical": "bold red", "warning": "yellow", "info": "blue"}
STATUS_STYLE = {"passed": "bold green", "failed": "bold red", "error": "bold magenta", "shown": "cyan"}


def by_indicator(cards: Iterable[Mapping[str, Any]]) -> list[tuple[str, list[Mapping[str, Any]]]]:
    """Cards grouped by indicator, most urgent first (unknown indicators last)."""
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for card in cards:
        groups.setdefault(str(card.get("indicator", "?")), []).append(card)
    order = [i for i in INDICATOR_ORDER if i in groups] + sorted(set(groups) - set(INDICATOR_ORDER))
    return [(i, groups[i]) for i in order]


def summary_counts(results: Sequence[ScenarioResult]) -> Counter[str]:
    return Counter(r.status for r in results)


# ---------------------------------------------------------------- rich


def card_panel(card: Mapping[str, Any]) -> Panel:
    indicator = str(card.get("indicator", "?"))
    style = INDICATOR_STYLE.get(indicator, "white")
    parts: list[Any] = []
    if card.get("detail"):
        parts.append(Markdown(str(card["detail"])))
    suggestions = card.get("suggestions") or []
    if suggestions:
        line = Text("Suggestions: ", style="bold")
        for s in suggestions:
            line.append(f"[ {s.get('label', '')} ] ", style="reverse")
        parts.append(line)
    for link in card.get("links") or ():
        parts.append(Text(f"Link ({link.get('type', '')}): {link.get('label', '')}", style="underline"))
    source = card.get("source") or {}
    parts.append(Text(f"Source: {source.get('label', '')}  rule {rule_of(card)}", style="dim"))
    return Panel(
        Group(*parts),
        title=Text(f"{indicator.upper()}  {card.get('summary', '')}", style=style),
        title_align="left",
        border_style=style,
    )


def print_result(console: Console, result: ScenarioResult, *, show_cards: bool = True) -> None:
    style = STATUS_STYLE.get(result.status, "white")
    console.print(Text.assemble((f"{result.status.upper():7}", style), " ", (result.title, "bold"), f"  ({result.path})"))
    if result.error:
        console.print(Text(f"    {result.error}", style="magenta"))
    for note in result.notes:
        console.print(Text(f"    note: {note}", style="dim"))
    if show_cards:
        if not result.cards and not result.error:
            console.print(Text("    no cards", style="dim"))
        for indicator, cards in by_indicator(result.cards):
            console.print(Text(f"  {indicator} ({len(cards)})", style=INDICATOR_STYLE.get(indicator, "white")))
            for card in cards:
                console.print(card_panel(card))
    for diff in result.diffs:
        console.print(Text(f"    ✗ {diff}", style="red"))


def print_summary(console: Console, results: Sequence[ScenarioResult]) -> None:
    counts = summary_counts(results)
    table = Table(title="Replay summary", show_header=True)
    for name in ("scenarios", "passed", "failed", "error", "no expectations"):
        table.add_column(name, justify="right")
    table.add_row(
        str(len(results)),
        Text(str(counts["passed"]), style="green"),
        Text(str(counts["failed"]), style="red" if counts["failed"] else ""),
        Text(str(counts["error"]), style="magenta" if counts["error"] else ""),
        str(counts["shown"]),
    )
    console.print(table)
    for r in results:
        if r.status in ("failed", "error"):
            console.print(Text(f"{r.status}: {r.title} ({r.path})", style=STATUS_STYLE[r.status]))


def print_stats(console: Console, results: Sequence[ScenarioResult]) -> None:
    """The alert burden table (``replay --stats``): cards per hook call by indicator."""
    table = Table(title="Alert burden: cards per hook call", show_header=True)
    for name in ("hook", "calls", "per call", "crit", "warn", "info", "max", "0 cards", "unavail"):
        table.add_column(name, justify="left" if name == "hook" else "right")
    for s in stats.burden((r.hook or "?", r.cards) for r in results if r.status != "error"):
        table.add_row(s.hook, str(s.calls), f"{s.per_call:.2f}", f"{s.critical:.2f}", f"{s.warning:.2f}",
                      f"{s.info:.2f}", str(s.max_cards), str(s.no_card), str(s.with_data_unavailable))
    console.print(table)


# ---------------------------------------------------------------- JSON


def as_json(results: Sequence[ScenarioResult], *, with_stats: bool = False) -> str:
    counts = summary_counts(results)
    doc: dict[str, Any] = {
        "summary": {
            "scenarios": len(results),
            "passed": counts["passed"],
            "failed": counts["failed"],
            "error": counts["error"],
            "shown": counts["shown"],
        },
        "results": [r.as_json() for r in results],
    }
    if with_stats:
        doc["stats"] = [s.as_json() for s in stats.burden((r.hook or "?", r.cards) for r in results if r.status != "error")]
    return json.dumps(doc, indent=2, ensure_ascii=False)


# ---------------------------------------------------------------- JUnit


def junit_xml(results: Sequence[ScenarioResult], *, suite: str = "sact-cds replay") -> str:
    """A JUnit XML report: one ``testcase`` per scenario (``classname`` = its folder).

    failed -> ``failure`` (one line per diff), error -> ``error``, no expectations ->
    ``skipped``; the cards returned go to ``system-out``.
    """
    counts = summary_counts(results)
    total = sum(r.seconds for r in results)
    root = ET.Element("testsuites", name=suite, tests=str(len(results)), failures=str(counts["failed"]),
                      errors=str(counts["error"]), skipped=str(counts["shown"]), time=f"{total:.3f}")
    testsuite = ET.SubElement(root, "testsuite", name=suite, tests=str(len(results)),
                              failures=str(counts["failed"]), errors=str(counts["error"]),
                              skipped=str(counts["shown"]), time=f"{total:.3f}")
    for r in results:
        case = ET.SubElement(testsuite, "testcase", name=r.title,
                             classname="replay." + (r.path.parent.name or "scenarios"),
                             file=str(r.path), time=f"{r.seconds:.3f}")
        if r.status == "failed":
            failure = ET.SubElement(case, "failure", message=f"{len(r.diffs)} expectation(s) not met",
                                    type="ExpectationMismatch")
            failure.text = "\n".join(str(d) for d in r.diffs)
        elif r.status == "error":
            error = ET.SubElement(case, "error", message=(r.error or "error").splitlines()[0], type="ReplayError")
            error.text = r.error
        elif r.status == "shown":
            ET.SubElement(case, "skipped", message="no expectations in the scenario: cards shown only")
        out = ET.SubElement(case, "system-out")
        out.text = "\n".join(
            f"[{c.get('indicator')}] {rule_of(c)}: {c.get('summary', '')}" for c in r.cards
        ) + ("\n" + "\n".join(f"note: {n}" for n in r.notes) if r.notes else "")
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def write_junit(path: Path, results: Sequence[ScenarioResult]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(junit_xml(results), encoding="utf-8")


def write_html(path: Path, results: Sequence[ScenarioResult], *, generated: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(html_report(results, generated=generated), encoding="utf-8")


def progress_bar() -> Any:
    """The progress bar shown while a folder replays (on stderr, so --json stays clean)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
        console=Console(stderr=True), transient=True,
    )
