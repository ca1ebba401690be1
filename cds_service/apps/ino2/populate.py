"""SDC ``$populate`` for the INO2 Questionnaire: the card's own findings as pre-filled answers.

HL7 SDC (R4) ``Questionnaire/$populate`` returns a QuestionnaireResponse with the answers the
server can give from what it knows of the subject. Here "what it knows" is exactly what the
eligibility card knows: each criterion's status comes from the ``ino2_criteria`` case
feature, so a form and a card can never disagree (DESIGN.md, "Where the next parts go"):

- ``met`` -> ``true``, ``unmet`` -> ``false``, ``unknown`` -> no answer;
- each answer carries the ``populate-evidence`` extension (fhir_profiles/): the finding in
  words, then one entry per datum behind it with its reference ("ECOG 1 on 2026-11-29");
  an answer carried over from an earlier signed INO2 form cites that form;
- ``monotherapy`` is answered only when the caller gave the draft orders: an EHR keeps
  unsigned orders in the ordering session, not on its FHIR server, so without them "no other
  anti-cancer agent is drafted" is not something the record shows;
- ``response-status`` and ``mrd-negative`` are never pre-filled: they describe the cycle just
  given, and an earlier form's answer is no evidence of the current one;
- ``hsct-planned`` is ``true`` only from a transplant request or procedure in preparation.

Pure: (engine, record, now) -> Populated; the HTTP operation and the SMART app call it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cds_service.engine.apply import iso_instant
from cds_service.features import Evidence, FeatureContext, FeatureValue
from cds_service.features.ino2_form import answers, criterion_evidence, form_date, latest_ino2_response
from cds_service.knowledge.terms import INO2_QUESTIONNAIRE, STRUCTURE_DEFINITION_BASE
from cds_service.record import PatientRecord, reference_of

#: The extension on a pre-filled answer (StructureDefinition-populate-evidence.json).
EXT_POPULATE_EVIDENCE = f"{STRUCTURE_DEFINITION_BASE}/populate-evidence"
PROFILE = f"{STRUCTURE_DEFINITION_BASE}/SactIno2QuestionnaireResponse"

#: Items the record never answers, and what the form says instead.
NOT_PRE_FILLED = {
    "response-status": "Not pre-filled: the response to the cycle just given is the clinician's assessment.",
    "mrd-negative": "Not pre-filled: MRD status after the last cycle is the clinician's assessment.",
}
NO_DRAFTS = ("Not pre-filled: the orders being drafted are not visible here; confirm that no other "
             "anti-cancer agent is given with inotuzumab.")


@dataclass(frozen=True)
class Fill:
    """One item: the answer the record gives (None = none), why, and the data read for it
    (shown beside an unanswered item too, as a hint, never as an answer)."""

    link_id: str
    answer: bool | None
    reason: str
    evidence: tuple[Evidence, ...] = ()


@dataclass(frozen=True)
class Populated:
    """The in-progress response plus what the form shows beside each item."""

    response: dict[str, Any]
    fills: Mapping[str, Fill]
    issues: tuple[str, ...] = field(default_factory=tuple)


def questionnaire_of(engine: Any) -> dict[str, Any]:
    """The loaded INO2 Questionnaire (KeyError if the knowledge has none)."""
    return dict(engine.kb.resources[INO2_QUESTIONNAIRE])


def canonical_of(questionnaire: Mapping[str, Any]) -> str:
    """``url|version``: what ``QuestionnaireResponse.questionnaire`` names."""
    version = questionnaire.get("version")
    return f"{questionnaire['url']}|{version}" if version else str(questionnaire["url"])


def evidence_line(ev: Evidence) -> str:
    """The readable line of one datum, dated as the card dates it."""
    return ev.display if not ev.date or ev.date in ev.display else f"{ev.display} on {ev.date}"


def evidence_extension(reason: str, evidence: tuple[Evidence, ...]) -> list[dict[str, Any]]:
    """``populate-evidence`` entries: the finding, then each datum with its reference."""
    out = [{"url": EXT_POPULATE_EVIDENCE, "extension": [{"url": "line", "valueString": reason}]}]
    for ev in evidence:
        parts: list[dict[str, Any]] = [{"url": "line", "valueString": evidence_line(ev)}]
        if ev.reference and not ev.reference.endswith("/"):
            parts.append({"url": "source", "valueReference": {"reference": ev.reference}})
        out.append({"url": EXT_POPULATE_EVIDENCE, "extension": parts})
    return out


def _safe(engine: Any, name: str, record: PatientRecord, ctx: FeatureContext) -> FeatureValue | None:
    """A case feature by name; None if it fails (the items it would fill stay empty)."""
    try:
        value = engine.registry.get(name)(record, ctx)
    except Exception:  # noqa: BLE001 - fail visible: the item stays unanswered, an issue says why
        return None
    return value if isinstance(value, FeatureValue) else None


def fills_for(engine: Any, record: PatientRecord, now: datetime, *, drafts_known: bool) -> tuple[dict[str, Fill], list[str]]:
    """Each Questionnaire item's pre-fill, from the card's features."""
    ctx = FeatureContext(now, engine.kb.terminology, engine.policy, engine.regimens)
    issues: list[str] = []
    fills: dict[str, Fill] = {}
    criteria = _safe(engine, "ino2_criteria", record, ctx)
    qr = latest_ino2_response(record)
    on_form = answers(qr)
    if criteria is None or not isinstance(criteria.value, dict):
        issues.append("The INO2 criteria could not be evaluated from the record; nothing was pre-filled.")
    else:
        for c in criteria.value.get("criteria") or ():
            code, status, reason = c["code"], c["status"], c["reason"]
            if code == "monotherapy" and status == "met" and not drafts_known:
                fills[code] = Fill(code, None, NO_DRAFTS)
                continue
            answer = True if status == "met" else False if status == "unmet" else None
            evidence = criterion_evidence(record, ctx, code)
            if qr is not None and on_form.get(code) is answer is not None:  # the signed form it repeats
                evidence += (Evidence(f"INO2 form signed {form_date(qr)}", reference_of(qr), None),)
            fills[code] = Fill(code, answer, reason, evidence)
    for link, why in NOT_PRE_FILLED.items():
        fills[link] = Fill(link, None, why)
    hsct = _safe(engine, "hsct_planned", record, ctx)
    requests = tuple(e for e in (hsct.evidence if hsct else ()) if str(e.reference).startswith(
        ("ServiceRequest/", "Procedure/")))
    if hsct is not None and hsct.value is True and requests:
        fills["hsct-planned"] = Fill("hsct-planned", True, "A transplant is requested or in preparation.", requests)
    else:
        fills["hsct-planned"] = Fill("hsct-planned", None, "Not pre-filled: no transplant request in the record.")
    return fills, issues


def response_of(
    questionnaire: Mapping[str, Any],
    subject: str,
    values: Mapping[str, Any],
    *,
    status: str,
    authored: str,
    evidence: Mapping[str, Fill] | None = None,
    author: str | None = None,
) -> dict[str, Any]:
    """A QuestionnaireResponse to ``questionnaire``: every item in its order, answered from
    ``values`` (linkId -> bool, or an answerOption code for a choice); an answer equal to
    its pre-fill keeps the pre-fill's evidence."""
    items = []
    for q in questionnaire.get("item") or ():
        link = q["linkId"]
        item: dict[str, Any] = {"linkId": link}
        if q.get("text"):
            item["text"] = q["text"]
        value = values.get(link)
        answer = _answer(q, value)
        if answer is not None:
            fill = (evidence or {}).get(link)
            if fill is not None and fill.answer is not None and fill.answer == value:
                answer["extension"] = evidence_extension(fill.reason, fill.evidence)
            item["answer"] = [answer]
        items.append(item)
    out: dict[str, Any] = {
        "resourceType": "QuestionnaireResponse",
        "meta": {"profile": [PROFILE]},
        "questionnaire": canonical_of(questionnaire),
        "status": status,
        "subject": {"reference": subject},
        "authored": authored,
    }
    if author:
        out["author"] = {"reference": author}
    out["item"] = items
    return out


def _answer(q: Mapping[str, Any], value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if q.get("type") == "boolean" and isinstance(value, bool):
        return {"valueBoolean": value}
    if q.get("type") == "choice":
        for option in q.get("answerOption") or ():
            coding = option.get("valueCoding") or {}
            if coding.get("code") == value:
                return {"valueCoding": dict(coding)}
    return None


def populate(engine: Any, record: PatientRecord, now: datetime, *, drafts_known: bool) -> Populated:
    """The in-progress INO2 response for ``record`` at ``now`` (SDC $populate)."""
    questionnaire = questionnaire_of(engine)
    fills, issues = fills_for(engine, record, now, drafts_known=drafts_known)
    subject = reference_of(record.patient) if record.patient else "Patient/"
    values = {link: f.answer for link, f in fills.items() if f.answer is not None}
    response = response_of(
        questionnaire, subject, values, status="in-progress", authored=iso_instant(now), evidence=fills
    )
    return Populated(response, fills, tuple(issues))
