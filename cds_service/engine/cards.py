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
                    smart when marked with the ``cds-link-type`` extension);
                    ``cds-link-condition`` false -> not offered,
                    ``cds-link-orders`` -> ``appContext`` draftOrders
extension           knowledge version, evidence, dynamicValue card.extension   extension
==================  =========================================================  ==========

``links``: CR puts every PlanDefinition.relatedArtifact on every card; here only the
action's own further ``documentation`` entries with a ``url`` become links, so a card
links to what it cites and nothing else. A link offered only when it can help declares
a FHIRPath ``cds-link-condition`` (e.g. the INO2 form link: only while a criterion is not
documented), and a SMART link names the draft orders its app is about with
``cds-link-orders``; _rules.py compiles both into dynamic values under private card
extension keys, and :func:`card` applies them here and takes them off the card.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from cds_service.engine._plan import LINK_OFFERED, LINK_ORDERS, LINK_VALUE_KEY, link_value_key
from cds_service.errors import KnowledgeError
from cds_service.features import FeatureValue
from cds_service.knowledge._sources import PAGES_PATH, citation_link, passage_link
from cds_service.knowledge.terms import (
    CARD_EXT_EVIDENCE,
    CARD_EXT_KNOWLEDGE_VERSION,
    EXT_CDS_LINK_ORDERS,
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

#: The characters that would become markup inside a bullet line of our own: code spans,
#: emphasis with ``*``, links, and an HTML tag start. ``_`` (intraword), ``>``, ``#`` and
#: ``|`` are harmless mid-line and are left alone, so card text shows no needless backslashes.
_MD_CHARS = "\\`*[]"
_MD_SPECIAL = re.compile(f"[{re.escape(_MD_CHARS)}]|<(?=[A-Za-z/!?])")
_MD_ESCAPES = str.maketrans({c: "\\" + c for c in _MD_CHARS})


#: Card order: most urgent first (CDS Hooks leaves order to the service; most EHRs keep it).
SEVERITY_RANK = {"critical": 0, "warning": 1, "info": 2}
#: What a card says where a check failed for a reason that is not missing data (the
#: exception, with its traceback, is in the log).
NOT_CHECKED = "could not be checked"
#: Card parts a dynamicValue may fill, as a clinician would name them.
PART_NAMES = {
    "action.title": "the summary",
    "action.description": "the explanation",
    "action.priority": "the urgency",
}
#: Case features in clinical words (a card never shows a feature name).
FEATURE_LABELS = {
    "patient_age": "Age",
    "bsa_dose": "Dose against body surface area",
    "bsa_m2": "Body surface area (height and weight)",
    "ino2_criteria": "INO2 funding criteria",
    "ino2_form_answers": "Questions answered on the INO2 form",
    "response_status": "Response to treatment (CR/CRi or not)",
    "hsct_planned": "Whether a stem cell transplant is planned",
    "azole_conflict": "Azole antifungals with inotuzumab",
    "other_sact": "Other anti-cancer medicines",
    "vod_risk": "Risk factors for liver toxicity (VOD/SOS)",
    "liver_function": "Liver tests (bilirubin, AST, ALT)",
    "blood_counts": "Blood counts (neutrophils, platelets)",
    "cycle": "Cycle and day of this dose",
    "dose_schedule": "Day of this dose in the cycle",
    "treatment_break": "Time since the previous cycle",
    "ino_drafted": "The inotuzumab order",
    "premedication_missing": "Premedication",
}
_EXCEPTION_TEXT = re.compile(r"\(?\b[A-Z][A-Za-z]*(Error|Exception)\b[^)]*\)?")


def feature_label(name: str) -> str:
    """A case feature in clinical words (an unlisted one: its name without underscores)."""
    return FEATURE_LABELS.get(name) or name.replace("_", " ").capitalize()


def plain_note(note: str | None) -> str:
    """A data note fit for a card: never exception text (that goes to the log)."""
    if not note:
        return "not documented"
    if _EXCEPTION_TEXT.search(note) or "could not be computed" in note:
        return NOT_CHECKED
    return note


@functools.lru_cache(maxsize=256)
def passage(statements: tuple[tuple[str, str], ...], citation: str | None = None) -> str | None:
    """The served page and line of the passage a card cites: its documentation's
    ``citation`` (the passage its source label names), else the first quoted
    ``source-statement`` that can be found."""
    if citation:
        link = citation_link(citation)
        if link:
            return link
    for document, quote in statements:
        link = passage_link(document, quote)
        if link:
            return link
    return None


def md(text: Any) -> str:
    """Escape patient-supplied text for GFM so it cannot become markup or HTML.

    Most text has nothing to escape, and a regex search says so in a fraction of the
    time any substitution takes (a card escapes every evidence line)."""
    text = " ".join(str(text).split())
    if not _MD_SPECIAL.search(text):
        return text
    return re.sub(r"<(?=[A-Za-z/!?])", "&lt;", text.translate(_MD_ESCAPES))


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
    statements: tuple[tuple[str, str], ...] = (),
) -> dict[str, Any]:
    """``{label, url, topic}``: label from ``documentation[0].label`` or ``.display``;
    url = the served page of the passage the rule quotes first (``sources/<page>#L<n>``,
    made absolute by the API), else ``documentation[0].url``, else the plan's canonical
    ``#``action id; topic = the rule code in CodeSystem sact-cds-rule."""
    doc = documentation[0] if documentation else {}
    label = doc.get("label") or doc.get("display") or DEFAULT_SOURCE_LABEL
    # never the project's canonical URLs: a clinician cannot read them
    url = passage(statements, doc.get("citation") if isinstance(doc.get("citation"), str) else None) or doc.get("url")
    topic = {"system": RULE_SYSTEM, "code": code}
    if code_display:
        topic["display"] = code_display
    out: dict[str, Any] = {"label": label}
    if url and url.startswith(("http://", "https://", f"{PAGES_PATH}/")):
        out["url"] = url
    out["topic"] = topic
    return out


#: Private key of a link until :func:`card`: the index of its documentation entry.
_LINK_INDEX = "_documentation"


def links(documentation: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """``documentation[1:]`` entries with an absolute url, as CDS Hooks links; an entry
    marked ``cds-link-type`` = ``smart`` is a SMART app link whose url may be relative to
    the service (the api layer makes it absolute and adds the hook instance to
    ``appContext``). A SMART link that declares ``cds-link-orders`` starts with an
    ``appContext`` naming no order; :func:`card` fills in the orders the expression gives."""
    out: list[dict[str, Any]] = []
    for i, doc in enumerate(documentation[1:], start=1):
        url = doc.get("url")
        label = doc.get("label") or doc.get("display") or url
        if _extension(doc, EXT_CDS_LINK_TYPE) == "smart" and isinstance(url, str) and url:
            link: dict[str, Any] = {"label": label, "url": url, "type": "smart"}
            if _extension(doc, EXT_CDS_LINK_ORDERS) is not None:
                link["appContext"] = _orders_context([])
            out.append({**link, _LINK_INDEX: i})
        elif isinstance(url, str) and url.startswith(("http://", "https://")):
            out.append({"label": label, "url": url, "type": "absolute", _LINK_INDEX: i})
    return out


def _extension(doc: Mapping[str, Any], url: str) -> Any:
    """The value of ``doc``'s extension ``url`` (None when absent)."""
    for ext in doc.get("extension") or ():
        if isinstance(ext, Mapping) and ext.get("url") == url:
            return str(ext["valueCode"]) if "valueCode" in ext else ext.get("valueExpression")
    return None


def _orders_context(orders: Iterable[Any]) -> str:
    return json.dumps({"draftOrders": [o for o in orders if isinstance(o, str)]}, separators=(",", ":"))


def _apply_link_values(links: list[dict[str, Any]], extension: dict[str, Any]) -> list[dict[str, Any]]:
    """Take the link values (LINK_VALUE_KEY) off ``extension`` and apply them: a link whose
    condition is false is not offered; a condition that gave no answer (an error, unknown
    data) leaves the link offered, as the card says part of it could not be checked. A
    link's orders become its ``appContext``."""
    values = {key: extension.pop(key) for key in [k for k in extension if k.startswith(LINK_VALUE_KEY)]}
    out = []
    for link in links:
        i = link.pop(_LINK_INDEX, None)
        if i is None:
            out.append(link)
            continue
        if values.get(link_value_key(i, LINK_OFFERED)) == [False]:
            continue
        orders = values.get(link_value_key(i, LINK_ORDERS))
        if orders is not None and "appContext" in link:
            link["appContext"] = _orders_context(orders if isinstance(orders, list) else [orders])
        out.append(link)
    return out


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


#: Features that are the context of every card, not a finding: the order being signed.
#: Their evidence is not repeated on each card (the prescriber is looking at the order);
#: when they are unknown, the card still says so.
CONTEXT_FEATURES = frozenset({"ino_drafted"})


def _feature_lines(name: str, value: FeatureValue | None) -> tuple[str, ...]:
    """The bullets of one feature, before deduplication (evidence_lines)."""
    if value is None or (name in CONTEXT_FEATURES and value.status != "unknown"):
        return ()
    out = []
    for ev in value.evidence:
        text = ev.display if not ev.date or ev.date in ev.display else f"{ev.display} ({ev.date})"
        out.append(f"- {md(text)}")
    if value.status == "unknown":
        out.append(f"- {md(feature_label(name))}: not known ({md(plain_note(value.note))})")
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
    links: list[dict[str, Any]],
    extension: dict[str, Any],
) -> dict[str, Any]:
    """Assemble a card, omitting empty optional parts (CDS Hooks: no ``[]``/``""``);
    ``selectionBehavior`` is present exactly when there are suggestions; the links'
    condition and orders values are applied and taken off ``extension``."""
    links = _apply_link_values(links, extension)
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

