"""The HTML replay report: one section per scenario, cards drawn the way an EHR shows them.

Self-contained (inline CSS, no scripts, no external assets) so it can be mailed to
clinicians. Card ``detail`` is GitHub-Flavored Markdown rendered by markdown-it-py with raw
HTML disabled (it is escaped) and markdown-it's link validation (no ``javascript:``);
every other string is escaped with :func:`html.escape`.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from markdown_it import MarkdownIt

from cds_service.replay._compare import rule_of

if TYPE_CHECKING:
    from cds_service.replay.run import ScenarioResult

_MD = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False}).enable(
    ["table", "strikethrough"]
)
_ORDER = {"critical": 0, "warning": 1, "info": 2}

CSS = """
body{font-family:-apple-system,Segoe UI,Roboto,Helvetica,Arial,sans-serif;margin:2rem auto;max-width:60rem;color:#222;line-height:1.4}
h1{font-size:1.5rem}h2{font-size:1.2rem;margin:0}
table.summary{border-collapse:collapse;margin:1rem 0}table.summary td,table.summary th{border:1px solid #ccc;padding:.3rem .6rem;text-align:left}
section.scenario{border:1px solid #ddd;border-radius:6px;padding:1rem;margin:1.5rem 0}
.status{display:inline-block;font-weight:bold;border-radius:3px;padding:.1rem .5rem;margin-right:.5rem;color:#fff}
.status-passed{background:#2e7d32}.status-failed{background:#c62828}.status-error{background:#6a1b9a}.status-shown{background:#00838f}
.meta{color:#666;font-size:.85rem;margin:.3rem 0 1rem}
.card{display:flex;border:1px solid #ccc;border-radius:4px;margin:.6rem 0;background:#fafafa}
.bar{width:8px;border-radius:4px 0 0 4px;flex:none}
.bar-critical{background:#d32f2f}.bar-warning{background:#f9a825}.bar-info{background:#1976d2}
.card-body{padding:.6rem .9rem;flex:1;min-width:0}
.card-summary{font-weight:bold}.indicator{font-size:.75rem;text-transform:uppercase;color:#555;margin-right:.4rem}
.card-detail{font-size:.92rem}.card-detail table{border-collapse:collapse}.card-detail td,.card-detail th{border:1px solid #ccc;padding:.2rem .4rem}
.source{font-size:.8rem;color:#555}
.suggestions button{margin:.3rem .4rem 0 0;padding:.3rem .7rem;border:1px solid #1976d2;border-radius:3px;background:#fff;color:#1976d2;font-size:.85rem}
.card-links{margin:.3rem 0 0;font-size:.85rem}.card-link{color:#1976d2;text-decoration:underline;margin-right:.8rem}
.card-link-type{color:#666;font-size:.75rem;margin-left:.3rem}
.diff{margin-top:1rem}.diff h3{font-size:1rem;margin:.2rem 0}
ul.diffs li{color:#c62828}.ok{color:#2e7d32}.error{color:#6a1b9a;white-space:pre-wrap}
pre.expect{background:#f4f4f4;padding:.5rem;font-size:.8rem;overflow-x:auto}
.notes{font-size:.8rem;color:#666}
"""


def render_markdown(text: str) -> str:
    """Safe HTML for a card's GFM ``detail``: raw HTML escaped, unsafe links dropped."""
    return _MD.render(text)


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def card_html(card: Mapping[str, Any]) -> str:
    indicator = str(card.get("indicator", "info"))
    source = card.get("source") or {}
    label = _e(source.get("label", ""))
    url = source.get("url")
    source_html = (
        f'<a href="{_e(url)}" rel="noopener noreferrer">{label}</a>'
        if isinstance(url, str) and url.startswith(("https://", "http://"))
        else label
    )
    suggestions = "".join(
        f'<button type="button" disabled>{_e(s.get("label", ""))}</button>' for s in card.get("suggestions") or ()
    )
    # links as an EHR shows them: link text, not buttons (a suggestion is a button); not
    # followed from the report (a SMART link needs an EHR launch)
    links = "".join(
        f'<span class="card-link">{_e(link.get("label", ""))}</span>'
        f'<span class="card-link-type">({_e(link.get("type", ""))} link)</span>'
        for link in card.get("links") or ()
    )
    return (
        f'<div class="card card-{_e(indicator)}"><div class="bar bar-{_e(indicator)}"></div><div class="card-body">'
        f'<div><span class="indicator">{_e(indicator)}</span><span class="card-summary">{_e(card.get("summary", ""))}</span></div>'
        f'<div class="card-detail">{render_markdown(str(card.get("detail", "")))}</div>'
        + (f'<div class="suggestions">{suggestions}</div>' if suggestions else "")
        + (f'<div class="card-links">{links}</div>' if links else "")
        + f'<div class="source">Source: {source_html} · rule <code>{_e(rule_of(card))}</code></div>'
        "</div></div>"
    )


def _expectation_json(expected: Any) -> str:
    if expected is None:
        return ""
    doc: dict[str, Any] = {
        "cards": [
            {k: v for k, v in {
                "rule": c.rule, "indicator": c.indicator, "contains": list(c.contains),
                "criteria": dict(c.criteria), "suggestions": list(c.suggestions),
            }.items() if v} | ({"links": list(c.links)} if c.links is not None else {})
            for c in expected.cards
        ]
    }
    if expected.absent:
        doc["absent"] = list(expected.absent)
    if expected.only:
        doc["only"] = True
    return json.dumps(doc, indent=2)


def scenario_html(index: int, result: ScenarioResult) -> str:
    cards = sorted(result.cards, key=lambda c: _ORDER.get(str(c.get("indicator")), 9))
    when = result.now.strftime("%Y-%m-%d %H:%M UTC") if result.now else "—"
    parts = [
        f'<section class="scenario" id="s{index}">',
        f'<h2><span class="status status-{_e(result.status)}">{_e(result.status)}</span>{_e(result.title)}</h2>',
        f'<div class="meta">{_e(result.path)} · evaluated at {_e(when)} · {len(result.cards)} card(s)</div>',
    ]
    if result.error:
        parts.append(f'<p class="error">{_e(result.error)}</p>')
    parts.extend(card_html(c) for c in cards)
    if not cards and not result.error:
        parts.append("<p><em>No cards.</em></p>")
    parts.append('<div class="diff"><h3>Expectations</h3>')
    if result.expected is None:
        parts.append("<p>None given: cards shown only.</p>")
    else:
        if result.diffs:
            parts.append('<ul class="diffs">' + "".join(f"<li>✗ {_e(d)}</li>" for d in result.diffs) + "</ul>")
        elif result.status == "passed":
            parts.append('<p class="ok">✓ every expectation met</p>')
        parts.append(f'<details><summary>expected</summary><pre class="expect">{_e(_expectation_json(result.expected))}</pre></details>')
    parts.append("</div>")
    if result.notes:
        parts.append('<ul class="notes">' + "".join(f"<li>{_e(n)}</li>" for n in result.notes) + "</ul>")
    parts.append("</section>")
    return "\n".join(parts)


def html_report(results: Sequence[ScenarioResult], *, generated: str) -> str:
    counts = {s: sum(r.status == s for r in results) for s in ("passed", "failed", "error", "shown")}
    rows = "".join(
        f'<tr><td><span class="status status-{_e(r.status)}">{_e(r.status)}</span></td>'
        f'<td><a href="#s{i}">{_e(r.title)}</a></td><td>{len(r.cards)}</td></tr>'
        for i, r in enumerate(results)
    )
    body = "\n".join(scenario_html(i, r) for i, r in enumerate(results))
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>sact-cds replay report</title><style>{CSS}</style></head><body>"
        f"<h1>sact-cds replay report</h1><p class=\"meta\">Generated {_e(generated)} · "
        f"{len(results)} scenario(s): {counts['passed']} passed, {counts['failed']} failed, "
        f"{counts['error']} error(s), {counts['shown']} without expectations</p>"
        f'<table class="summary"><tr><th>status</th><th>scenario</th><th>cards</th></tr>{rows}</table>'
        f"{body}</body></html>\n"
    )
