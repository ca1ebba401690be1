"""Render a card, one small mapping function per card part (STYLE.md §10).

The mapping is architecture.md §5.1 (HL7 "CDS Hooks and Clinical Reasoning" mapping,
fhir-knowledge.md §3.2); the card rules are CDS Hooks 2.0 §card-attributes
(https://cds-hooks.hl7.org/2.0/#card-attributes, cds-hooks.md §1.4):

==================  =========================================================  ==========
card part           from                                                       function
==================  =========================================================  ==========
summary             ``title`` / dynamicValue ``action.title``; < 140 chars     summary
detail              ``description`` / dynamicValue ``action.description`` +    detail
                    "Patient data" (evidence of every feature read, dated)
indicator           ``priority`` routine/urgent/stat -> info/warning/critical  indicator
source              ``documentation[0]`` label/display + url, ``code`` topic   source
suggestions         child actions (suggestions.py); ``selectionBehavior``      card
overrideReasons     CodeSystem override-reason, every concept, with display    override_reasons
links               ``documentation[1:]`` that have a url (type absolute, or   links
                    smart when marked with the ``cds-link-type`` extension)
extension           knowledge version, evidence, dynamicValue card.extension   extension
==================  =========================================================  ==========

``links``: CR puts every PlanDefinition.relatedArtifact on every card; here only the
action's own further ``documentation`` entries with a ``url`` become links, so a card
links to what it cites and nothing else.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from cds_service.errors import KnowledgeError
from cds_service.features import FeatureValue
from cds_service.knowledge.terms import (
    CARD_EXT_EVIDENCE,
    CARD_EXT_KNOWLEDGE_VERSION,
    EXT_CDS_LINK_TYPE,
    OVERRIDE_REASON_SYSTEM,
    PRIORITY_TO_INDICATOR,
    RULE_SYSTEM,
)

log = logging.getLogger("sact_cds.engine")

#: CDS Hooks: summary is "<140-character" (strictly less; Inferno fails at 140).
SUMMARY_LIMIT = 140
#: Fallback source label when an action documents no source.
DEFAULT_SOURCE_LABEL = "sact-cds"

#: The characters GFM could read as markup or HTML; each is escaped with a backslash.
_MD_CHARS = "\\`*_[]<>|#"
_MD_SPECIAL = re.compile(f"[{re.escape(_MD_CHARS)}]")
_MD_ESCAPES = str.maketrans({c: "\\" + c for c in _MD_CHARS})


def md(text: Any) -> str:
    """Escape patient-supplied text for GFM so it cannot become markup or HTML.

    Most text has nothing to escape, and a regex search says so in a fraction of the
    time any substitution takes (a card escapes every evidence line)."""
    text = " ".join(str(text).split())
    return text.translate(_MD_ESCAPES) if _MD_SPECIAL.search(text) else text


def check_summary(text: str | None) -> str | None:
    """The problem with ``text`` as a card summary, or None (for ``validate``)."""
    if not text or not str(text).strip():
        return "card summary (action title) is empty"
    if len(text) >= SUMMARY_LIMIT:
        return f"card summary (action title) has {len(text)} characters; CDS Hooks requires < {SUMMARY_LIMIT}"
    return None


def summary(text: str, *, rule: str = "") -> str:
    """The card summary; cut with an ellipsis at a word boundary only if too long.

    Titles are checked at load (:func:`check_summary`); a dynamicValue title can still be
    too long at run time, which is logged (rule code only) and cut.
    """
    text = " ".join(str(text).split())
    if len(text) < SUMMARY_LIMIT:
        return text
    log.warning("card summary of rule %s has %d characters; cut to < %d", rule, len(text), SUMMARY_LIMIT)
    cut = text[: SUMMARY_LIMIT - 2]
    if " " in cut[SUMMARY_LIMIT // 2 :]:
        cut = cut.rsplit(" ", 1)[0]
    return cut.rstrip(" ,;:.") + "…"


def indicator(priority: str) -> str:
    """FHIR request-priority -> CDS Hooks indicator (terms.PRIORITY_TO_INDICATOR)."""
    return PRIORITY_TO_INDICATOR[priority]


def source(
    documentation: Sequence[Mapping[str, Any]],
    *,
    plan_url: str,
    action_id: str | None,
    code: str,
    code_display: str | None = None,
) -> dict[str, Any]:
    """``{label, url, topic}``: label from ``documentation[0].label`` or ``.display``;
    url from ``documentation[0].url``, else the plan's canonical ``#``action id; topic =
    the rule code in CodeSystem sact-cds-rule."""
    doc = documentation[0] if documentation else {}
    label = doc.get("label") or doc.get("display") or DEFAULT_SOURCE_LABEL
    url = doc.get("url") or (f"{plan_url}#{action_id}" if action_id else plan_url)
    topic = {"system": RULE_SYSTEM, "code": code}
    if code_display:
        topic["display"] = code_display
    out: dict[str, Any] = {"label": label}
    if url and url.startswith(("http://", "https://")):
        out["url"] = url
    out["topic"] = topic
    return out


def links(documentation: Sequence[Mapping[str, Any]]) -> list[dict[str, str]]:
    """``documentation[1:]`` entries with an absolute url, as CDS Hooks links; an entry
    marked ``cds-link-type`` = ``smart`` is a SMART app link whose url may be relative to
    the service (the api layer makes it absolute and adds ``appContext``)."""
    out = []
    for doc in documentation[1:]:
        url = doc.get("url")
        label = doc.get("label") or doc.get("display") or url
        if _link_type(doc) == "smart" and isinstance(url, str) and url:
            out.append({"label": label, "url": url, "type": "smart"})
        elif isinstance(url, str) and url.startswith(("http://", "https://")):
            out.append({"label": label, "url": url, "type": "absolute"})
    return out


def _link_type(doc: Mapping[str, Any]) -> str | None:
    for ext in doc.get("extension") or ():
        if isinstance(ext, Mapping) and ext.get("url") == EXT_CDS_LINK_TYPE:
            return str(ext.get("valueCode"))
    return None


def evidence_lines(
    values: Mapping[str, FeatureValue], names: Iterable[str], cache: dict[str, tuple[str, ...]] | None = None
) -> list[str]:
    """One markdown bullet per datum behind the named features, deduplicated, in order;
    a dated datum shows its date; an unknown feature shows why it is unknown.

    ``cache`` (one per evaluation, by feature name) keeps each feature's bullets for the
    next card: most cards of a hook show the same few features."""
    lines: list[str] = []
    seen: set[str] = set()
    for name in names:
        own = cache.get(name) if cache is not None else None
        if own is None:
            own = _feature_lines(name, values.get(name))
            if cache is not None:
                cache[name] = own
        for line in own:
            if line not in seen:
                seen.add(line)
                lines.append(line)
    return lines


def _feature_lines(name: str, value: FeatureValue | None) -> tuple[str, ...]:
    """The bullets of one feature, before deduplication (evidence_lines)."""
    if value is None:
        return ()
    out = []
    for ev in value.evidence:
        text = ev.display if not ev.date or ev.date in ev.display else f"{ev.display} ({ev.date})"
        out.append(f"- {md(text)}")
    if value.status == "unknown":
        out.append(f"- {md(name)}: not known ({md(value.note or 'no reason given')})")
    return tuple(out)


def detail(description: str | None, *, evidence: Sequence[str] = (), sections: Iterable[tuple[str, Sequence[str]]] = ()) -> str:
    """GFM detail: what fired (the action's description), then **Patient data**, then
    any further titled sections (e.g. suggestions not offered)."""
    parts = [description.strip()] if description and description.strip() else []
    if evidence:
        parts.append("**Patient data**\n\n" + "\n".join(evidence))
    for title, lines in sections:
        if lines:
            parts.append(f"**{title}**\n\n" + "\n".join(lines))
    return "\n\n".join(parts)


def override_reasons(resources: Mapping[str, Mapping[str, Any]]) -> tuple[dict[str, str], ...]:
    """Every concept of CodeSystem override-reason as ``{code, system, display}``.

    Raises KnowledgeError if the CodeSystem is missing, empty or a concept has no display
    (CDS Hooks 2.0: the service MUST populate ``display`` of override reasons).
    """
    cs = resources.get(OVERRIDE_REASON_SYSTEM)
    if cs is None or cs.get("resourceType") != "CodeSystem":
        raise KnowledgeError("CodeSystem override-reason is missing", artifact=OVERRIDE_REASON_SYSTEM)
    out: list[dict[str, str]] = []

    def walk(concepts: Iterable[Mapping[str, Any]]) -> None:
        for c in concepts:
            if not c.get("display"):
                raise KnowledgeError(
                    f"override reason {c.get('code')!r} has no display", artifact=OVERRIDE_REASON_SYSTEM
                )
            out.append({"code": c["code"], "system": OVERRIDE_REASON_SYSTEM, "display": c["display"]})
            walk(c.get("concept") or ())

    walk(cs.get("concept") or ())
    if not out:
        raise KnowledgeError("CodeSystem override-reason has no concepts", artifact=OVERRIDE_REASON_SYSTEM)
    return tuple(out)


def evidence_extension(values: Mapping[str, FeatureValue], names: Iterable[str]) -> list[dict[str, Any]]:
    """``org.sact-cds.evidence``: the features the card read, with value and evidence."""
    out = []
    for name in names:
        value = values.get(name)
        if value is None:
            continue
        item: dict[str, Any] = {"feature": name, "status": value.status}
        if value.value is not None and value.value != [] and value.value != {} and value.value != "":
            item["value"] = value.value
        if value.evidence:
            item["evidence"] = [e.as_json() for e in value.evidence]
        if value.note:
            item["note"] = value.note
        out.append(item)
    return out


def extension(knowledge_version: str, evidence: list[dict[str, Any]], extra: Mapping[str, Any] = {}) -> dict[str, Any]:  # noqa: B006
    """Card ``extension``: knowledge version, evidence, then dynamicValue keys (non-empty)."""
    out: dict[str, Any] = {CARD_EXT_KNOWLEDGE_VERSION: knowledge_version}
    if evidence:
        out[CARD_EXT_EVIDENCE] = evidence
    for key, value in extra.items():
        if value not in (None, [], {}, ""):
            out[key] = value
    return out


def card(
    *,
    summary: str,
    detail: str,
    indicator: str,
    source: dict[str, Any],
    suggestions: list[dict[str, Any]],
    selection_behavior: str,
    override_reasons: Sequence[Mapping[str, str]],
    links: list[dict[str, str]],
    extension: dict[str, Any],
) -> dict[str, Any]:
    """Assemble a card, omitting empty optional parts (CDS Hooks: no ``[]``/``""``);
    ``selectionBehavior`` is present exactly when there are suggestions."""
    out: dict[str, Any] = {"uuid": str(uuid.uuid4()), "summary": summary}
    if detail:
        out["detail"] = detail
    out["indicator"] = indicator
    out["source"] = source
    if suggestions:
        out["suggestions"] = suggestions
        out["selectionBehavior"] = selection_behavior
    out["overrideReasons"] = [dict(r) for r in override_reasons]
    if links:
        out["links"] = links
    out["extension"] = extension
    return out

