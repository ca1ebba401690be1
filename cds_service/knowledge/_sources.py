"""The source documents as pages a clinician can open, with an anchor per line.

A card's ``source.url`` points at the passage its rule quotes (the first
``source-statement`` of the rule action): ``sources/<page>#L<line>``, served by the
service as readable HTML (api/sources.py). The documents carry no patient data.

Every file lookup goes through :func:`source_file`, so the package can later read the
documents through the knowledge resolver (wheel data) instead of the repository.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

#: The repository this package lives in (where provenance/ is found today).
_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class SourcePage:
    """One served source document: its page name, document label and title."""

    page: str
    document: str  # the source-statement `document` code
    file: str  # relative to the knowledge root
    title: str


PAGES: tuple[SourcePage, ...] = (
    SourcePage("ino2", "INO2", "provenance/sources/nhs-cdf-ino2-criteria.txt",
               "NHS England Cancer Drugs Fund form INO2 (CDF list v1.361)"),
    SourcePage("nz-regimen", "NZ", "provenance/sources/nz-regimen-inotuzumab-not-in-cr.txt",
               "NZ SACT regimen library: inotuzumab ozogamicin, cycle 1 and cycles for patients not in CR/CRi"),
    SourcePage("clinical-reference", "SmPC", "provenance/clinical-reference.md",
               "sact-cds clinical reference (Besponsa label and other cited facts)"),
)
_BY_PAGE = {p.page: p for p in PAGES}
_BY_DOCUMENT = {p.document: p for p in PAGES}
#: Where the pages are served, relative to the service's base URL.
PAGES_PATH = "sources"


def source_file(relative: str) -> Path:
    """The file of a source document. The one place that knows where they live."""
    return _ROOT / relative


@lru_cache(maxsize=8)
def _lines(page: str) -> tuple[str, ...]:
    try:
        text = source_file(_BY_PAGE[page].file).read_text(encoding="utf-8")
    except OSError:
        return ()
    return tuple(text.splitlines())


def _normal(text: str) -> str:
    return " ".join(text.replace("\u00a0", " ").split())


def _line_of(page: SourcePage, quote: str) -> int | None:
    want = _normal(quote)
    if not want:
        return None
    for number, line in enumerate(_lines(page.page), 1):
        if want in _normal(line):
            return number
    return None


def passage_link(document: str, quote: str) -> str | None:
    """``sources/<page>#L<n>`` for the first line of ``document`` that holds ``quote``
    (whitespace normalised); the page without an anchor if the quote is not found; None
    for a document that is not served."""
    page = _BY_DOCUMENT.get(document)
    if page is None or not _normal(quote):
        return None
    number = _line_of(page, quote)
    return f"{PAGES_PATH}/{page.page}" + (f"#L{number}" if number else "")


def citation_link(citation: str) -> str | None:
    """``sources/<page>#L<n>`` of the first served page with a line holding ``citation``
    (a card's documentation citation names no document), else None."""
    for page in PAGES:
        number = _line_of(page, citation)
        if number:
            return f"{PAGES_PATH}/{page.page}#L{number}"
    return None


_BOLD = re.compile(r"\*\*(.+?)\*\*")
_CODE = re.compile(r"`([^`]+)`")


def _inline(text: str) -> str:
    out = html.escape(text)
    out = _BOLD.sub(r"<strong>\1</strong>", out)
    return _CODE.sub(r"<code>\1</code>", out)


_STYLE = """body{font:16px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}
p,li,h1,h2,h3,h4{margin:.2rem 0;padding:.1rem .3rem;border-radius:3px}
:target{background:#fff3a8;outline:2px solid #e0b000}
a.n{color:#999;font-size:.75rem;text-decoration:none;margin-right:.5rem}
.note{color:#555;border-left:3px solid #ccc;padding-left:.6rem}"""


def page_html(page: str) -> str | None:
    """The document as an HTML page, one element per line with ``id="L<n>"``; None if
    there is no such page."""
    meta = _BY_PAGE.get(page)
    if meta is None:
        return None
    body = []
    for number, raw in enumerate(_lines(page), 1):
        line = raw.strip()
        if not line:
            continue
        anchor = f'id="L{number}"'
        mark = f'<a class="n" href="#L{number}">{number}</a>'
        heading = re.match(r"^(#{1,4})\s+(.*)$", line)
        if heading:
            level = len(heading.group(1))
            body.append(f"<h{level} {anchor}>{mark}{_inline(heading.group(2))}</h{level}>")
        elif line.startswith(("- ", "* ", "• ")):
            body.append(f"<p {anchor}>{mark}• {_inline(line[2:])}</p>")
        else:
            body.append(f"<p {anchor}>{mark}{_inline(line)}</p>")
    title = html.escape(meta.title)
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
        f"<style>{_STYLE}</style></head><body><h1>{title}</h1>"
        '<p class="note">A copy of the source the decision-support cards cite; the highlighted '
        "line is the passage a card links to. Other pages: "
        + ", ".join(f'<a href="{p.page}">{html.escape(p.title)}</a>' for p in PAGES if p.page != page)
        + ".</p>"
        + "\n".join(body)
        + "</body></html>"
    )


def index_html() -> str:
    """The list of source pages."""
    items = "".join(f'<li><a href="{PAGES_PATH}/{p.page}">{html.escape(p.title)}</a></li>' for p in PAGES)
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Sources</title>'
        f"<style>{_STYLE}</style></head><body><h1>Sources of the decision-support cards</h1>"
        f"<ul>{items}</ul></body></html>"
    )
