"""Traceability: which artifact element encodes which line of which source document.

Why: every dose, timing, threshold and policy in the knowledge must trace to a line of a
source (architecture.md §1.1), and nothing a source says may be silently left out. The
artifacts say where they come from with the ``source-statement`` extension (document label
+ verbatim quote); this module collects those extensions from every JSON artifact, finds
each quote's line(s), and checks that every non-blank line of the two source documents
(INO2, NZ) is either quoted by some artifact or listed with a reason in
``provenance/unmapped-source-lines.json``. ``cds-service trace`` renders the result as
``docs/traceability.md`` (see ``cds_service.commands.trace``).

How a quote maps to lines: a quote is a verbatim substring of one line. If it is a whole
line (ignoring surrounding whitespace) it maps to exactly the lines equal to it, so
``"Day: 1"`` does not also claim ``"Day: 15"`` and ``"21"`` claims only the cycle-length
line; otherwise it maps to every line that contains it, so a quote of a row the NZ entry
repeats (days 1, 8 and 15; cycle 1 and cycles 2-3) maps every copy.

Pure functions over a repository root; nothing here writes files.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cds_service.knowledge._checks import Problem
from cds_service.knowledge.terms import EXT_SOURCE_STATEMENT
from cds_service.resources import data_root

#: The checkout (or the installed copy of its files): the default root for `cds-service trace`.
REPO_ROOT = data_root()

#: Source document label (architecture.md §1) -> file, relative to the repository root.
DOCUMENT_PATHS: Mapping[str, str] = {
    "INO2": "provenance/sources/nhs-cdf-ino2-criteria.txt",
    "NZ": "provenance/sources/nz-regimen-inotuzumab-not-in-cr.txt",
    "SmPC": "provenance/clinical-reference.md",
}
#: The documents whose every non-blank line must be accounted for (the two sources).
COVERED_DOCUMENTS: tuple[str, ...] = ("INO2", "NZ")
ARTIFACT_DIRS: tuple[str, ...] = ("plan_definitions", "fhir_profiles")
UNMAPPED_FILE = "provenance/unmapped-source-lines.json"
TRACE_FILE = "docs/traceability.md"


@dataclass(frozen=True)
class SourceDocument:
    """One source document, as lines (line numbers are 1-based)."""

    label: str
    path: str
    lines: tuple[str, ...]

    def locate(self, quote: str) -> tuple[int, ...]:
        """The line numbers a quote maps to (see the module docstring); () if none."""
        if not quote.strip():
            return ()
        containing = [n for n, line in enumerate(self.lines, 1) if quote in line]
        whole = [n for n in containing if self.lines[n - 1].strip() == quote.strip()]
        return tuple(whole or containing)


@dataclass(frozen=True)
class SourceStatement:
    """One ``source-statement`` extension and the element that carries it.

    ``element`` is FHIRPath-like from the resource root, with action/item ids in
    parentheses for readability: ``PlanDefinition.action[0](cycle-1).relatedAction[0]``.
    ``order`` is the document order within its file, for a stable listing.
    """

    file: str
    artifact: str
    element: str
    document: str
    quote: str
    order: int
    lines: tuple[int, ...] = ()


@dataclass(frozen=True)
class NotARule:
    """A source line that encodes nothing, with the reason (unmapped-source-lines.json)."""

    document: str
    line: str
    reason: str


@dataclass(frozen=True)
class Trace:
    """Every located source statement, the lines stated to carry no rule, and problems."""

    documents: Mapping[str, SourceDocument]
    statements: tuple[SourceStatement, ...]
    not_rules: tuple[NotARule, ...]
    problems: tuple[Problem, ...]
    _by_line: Mapping[tuple[str, int], tuple[SourceStatement, ...]] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        by_line: dict[tuple[str, int], list[SourceStatement]] = {}
        for statement in self.statements:
            for number in statement.lines:
                by_line.setdefault((statement.document, number), []).append(statement)
        index = {key: tuple(found) for key, found in by_line.items()}
        object.__setattr__(self, "_by_line", index)

    def encoded_by(self, document: str, number: int) -> list[SourceStatement]:
        """The statements that quote line ``number`` of ``document``."""
        return list(self._by_line.get((document, number), ()))

    def reason_for(self, document: str, number: int) -> str | None:
        """The stated reason a line carries no rule, if it is listed."""
        text = self.documents[document].lines[number - 1].strip()
        for entry in self.not_rules:
            if entry.document == document and entry.line == text:
                return entry.reason
        return None

    def uncovered(self) -> list[tuple[str, int, str]]:
        """Non-blank lines of the covered documents neither quoted nor listed with a reason."""
        missing = []
        for label in COVERED_DOCUMENTS:
            for number, line in enumerate(self.documents[label].lines, 1):
                if line.strip() and not self.encoded_by(label, number):
                    if self.reason_for(label, number) is None:
                        missing.append((label, number, line.strip()))
        return missing


def load_documents(root: Path) -> dict[str, SourceDocument]:
    """Read the source documents named in ``DOCUMENT_PATHS`` under ``root``."""
    documents = {}
    for label, relative in DOCUMENT_PATHS.items():
        text = (root / relative).read_text(encoding="utf-8")
        documents[label] = SourceDocument(label, relative, tuple(text.splitlines()))
    return documents


def _label(node: Any) -> str:
    if isinstance(node, dict):
        for key in ("id", "linkId"):
            if isinstance(node.get(key), str):
                return f"({node[key]})"
    return ""


def _walk(node: Any, path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield (element path, source-statement extension) for every one under ``node``."""
    if isinstance(node, list):
        for index, item in enumerate(node):
            yield from _walk(item, f"{path}[{index}]{_label(item)}")
        return
    if not isinstance(node, dict):
        return
    for key, value in node.items():
        if key == "extension" and isinstance(value, list):
            for index, extension in enumerate(value):
                if isinstance(extension, dict) and extension.get("url") == EXT_SOURCE_STATEMENT:
                    yield path, extension
                else:
                    yield from _walk(extension, f"{path}.extension[{index}]")
        else:
            yield from _walk(value, f"{path}.{key}")


def _parts(extension: dict[str, Any]) -> tuple[str | None, str | None]:
    values: dict[str, Any] = {}
    for part in extension.get("extension") or []:
        if isinstance(part, dict):
            values[part.get("url")] = part.get("valueCode", part.get("valueString"))
    document, quote = values.get("document"), values.get("quote")
    return (document if isinstance(document, str) else None,
            quote if isinstance(quote, str) else None)


def _spacing_hint(document: SourceDocument, quote: str) -> str:
    """Say so when only the spacing differs: the NZ copy uses no-break spaces (U+00A0)."""
    plain = " ".join(quote.split())
    for number, line in enumerate(document.lines, 1):
        if plain and plain in " ".join(line.split()):
            return (f" (line {number} matches apart from spacing: copy the quote from the file, "
                    "which uses no-break spaces, written \\u00a0 in JSON)")
    return ""


def iter_artifact_files(root: Path) -> list[Path]:
    """Every JSON file under the artifact directories, in a stable order."""
    files: list[Path] = []
    for directory in ARTIFACT_DIRS:
        files.extend(sorted((root / directory).rglob("*.json")))
    return files


def collect_statements(
    root: Path, documents: Mapping[str, SourceDocument]
) -> tuple[list[SourceStatement], list[Problem]]:
    """Every source statement in the artifacts, located; and every problem found doing so."""
    statements: list[SourceStatement] = []
    problems: list[Problem] = []
    for path in iter_artifact_files(root):
        file = path.relative_to(root).as_posix()
        try:
            resource = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            problems.append(Problem(file, "", f"cannot read JSON: {error}"))
            continue
        if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
            continue  # not a FHIR resource (e.g. a JSON Schema)
        resource_type = resource["resourceType"]
        artifact = f"{resource_type}/{resource.get('id', '?')}"
        for order, (element, extension) in enumerate(_walk(resource, resource_type)):
            document, quote = _parts(extension)
            if document is None or quote is None:
                problems.append(Problem(
                    file, element, "source-statement needs a `document` code and a `quote` string"))
                continue
            if document not in documents:
                problems.append(Problem(
                    file, element,
                    f"unknown document {document!r} (expected one of {', '.join(documents)})"))
                continue
            lines = documents[document].locate(quote)
            if not lines:
                problems.append(Problem(
                    file, element,
                    f"quote not found verbatim in {document} ({documents[document].path}): "
                    f"{quote!r}{_spacing_hint(documents[document], quote)}"))
                continue
            statements.append(
                SourceStatement(file, artifact, element, document, quote, order, lines))
    return statements, problems


def load_not_rules(
    root: Path, documents: Mapping[str, SourceDocument]
) -> tuple[list[NotARule], list[Problem]]:
    """Read ``unmapped-source-lines.json``; an entry must name a line of its document."""
    path = root / UNMAPPED_FILE
    if not path.exists():
        return [], []
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))["entries"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        return [], [Problem(UNMAPPED_FILE, "", f"cannot read entries: {error}")]
    not_rules: list[NotARule] = []
    problems: list[Problem] = []
    for index, entry in enumerate(entries):
        element = f"entries[{index}]"
        try:
            item = NotARule(str(entry["document"]), str(entry["line"]), str(entry["reason"]))
        except (KeyError, TypeError):
            problems.append(Problem(UNMAPPED_FILE, element, "needs document, line, reason"))
            continue
        document = documents.get(item.document)
        if document is None or item.document not in COVERED_DOCUMENTS:
            problems.append(Problem(
                UNMAPPED_FILE, element, f"document must be one of {', '.join(COVERED_DOCUMENTS)}"))
        elif not item.reason.strip():
            problems.append(Problem(UNMAPPED_FILE, element, "the reason is empty"))
        elif item.line not in {line.strip() for line in document.lines}:
            problems.append(Problem(
                UNMAPPED_FILE, element, f"no line of {item.document} is {item.line!r}"))
        else:
            not_rules.append(item)
    return not_rules, problems


def build_trace(root: Path = REPO_ROOT) -> Trace:
    """Collect, locate and cross-check everything; problems are returned, never raised."""
    documents = load_documents(root)
    statements, problems = collect_statements(root, documents)
    not_rules, more = load_not_rules(root, documents)
    problems.extend(more)
    trace = Trace(documents, tuple(statements), tuple(not_rules), ())
    for entry in not_rules:
        lines = [n for n, line in enumerate(documents[entry.document].lines, 1)
                 if line.strip() == entry.line]
        quoted_by = {s.artifact for n in lines for s in trace.encoded_by(entry.document, n)}
        if quoted_by:
            problems.append(Problem(
                UNMAPPED_FILE, f"{entry.document} line {entry.line!r}",
                f"listed as not a rule but quoted by {', '.join(sorted(quoted_by))}"))
    return Trace(documents, tuple(statements), tuple(not_rules), tuple(problems))


# --------------------------------------------------------------------------- docs/traceability.md

_DOCUMENT_TITLES: Mapping[str, str] = {
    "INO2": "NHS England CDF list v1.361, form INO2",
    "NZ": "NZ SACT regimen library, inotuzumab ozogamicin, cycle 1 and cycles for patients "
    "not in CR or CRi",
    "SmPC": "label facts summarised in the clinical reference, §1",
}
_MARKDOWN_SPECIALS = "\\`*_<>|[]"


def _cell(text: str) -> str:
    """Escape text for a GFM table cell, so source text renders as written."""
    return "".join(f"\\{c}" if c in _MARKDOWN_SPECIALS else c for c in text)


def _element(statement: SourceStatement) -> str:
    path = statement.element.partition(".")[2] or "(root)"
    return f"`{statement.artifact}` {_cell(path)}"


def _numbers(lines: tuple[int, ...]) -> str:
    return ", ".join(str(n) for n in lines)


def render_markdown(trace: Trace) -> str:
    """docs/traceability.md: deterministic (sorted, no dates), so CI can diff it."""
    statements = sorted(trace.statements, key=lambda s: (s.file, s.order))
    out = [
        "# Traceability: source statements and knowledge artifacts",
        "",
        "<!-- Generated by `cds-service trace`. Do not edit by hand: run `cds-service trace` "
        "to regenerate; CI runs `cds-service trace --check`. -->",
        "",
        "Generated by `cds-service trace` from the `source-statement` extensions of every "
        "artifact under `plan_definitions/` and `fhir_profiles/` and from "
        f"`{UNMAPPED_FILE}`. **Do not edit by hand.**",
        "",
        "A quote that is a whole source line maps to the identical line(s); any other quote maps "
        "to every line that contains it (the NZ entry repeats its rows for days 1, 8 and 15 and "
        "for cycles 2-3). Blank lines are omitted.",
        "",
        "| Document | File | Lines (non-blank) | Encoded | Not a rule | Unmapped |",
        "|---|---|---|---|---|---|",
    ]
    uncovered = trace.uncovered()
    for label in COVERED_DOCUMENTS:
        document = trace.documents[label]
        numbers = [n for n, line in enumerate(document.lines, 1) if line.strip()]
        encoded = sum(1 for n in numbers if trace.encoded_by(label, n))
        missing = sum(1 for doc, _, _ in uncovered if doc == label)
        out.append(f"| {label} | `{document.path}` | {len(numbers)} | {encoded} | "
                   f"{len(numbers) - encoded - missing} | {missing} |")
    out += ["", f"{len(statements)} source statements in "
            f"{len({s.file for s in statements})} artifacts.", "",
            "## 1. Source lines → artifact elements", ""]
    for index, label in enumerate(COVERED_DOCUMENTS, 1):
        document = trace.documents[label]
        out += [f"### 1.{index} {label}: {_DOCUMENT_TITLES[label]}", "",
                f"`{document.path}`", "", "| Line | Source text | Encoded by |", "|---|---|---|"]
        for number, line in enumerate(document.lines, 1):
            if not line.strip():
                continue
            encoded_by = sorted(trace.encoded_by(label, number), key=lambda s: (s.file, s.order))
            if encoded_by:
                targets = "<br>".join(dict.fromkeys(_element(s) for s in encoded_by))
            elif (reason := trace.reason_for(label, number)) is not None:
                targets = f"not a rule: {_cell(reason)}"
            else:
                targets = (f"**UNMAPPED**: not quoted by any artifact, "
                           f"not listed in `{UNMAPPED_FILE}`")
            out.append(f"| {number} | {_cell(line.strip())} | {targets} |")
        out.append("")
    out += ["## 2. Artifact elements → source lines", ""]
    for file in sorted({s.file for s in statements}):
        in_file = [s for s in statements if s.file == file]
        out += [f"### `{in_file[0].artifact}`", "", f"`{file}`", "",
                "| Element | Source | Line(s) | Quote |", "|---|---|---|---|"]
        for s in in_file:
            path = s.element.partition(".")[2] or "(root)"
            out.append(f"| {_cell(path)} | {s.document} (`{trace.documents[s.document].path}`) | "
                       f"{_numbers(s.lines)} | {_cell(s.quote)} |")
        out.append("")
    return "\n".join(out)
