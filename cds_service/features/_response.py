"""Response to treatment, MRD and HSCT plans: mostly from the INO2 attestation form.

The INO2 QuestionnaireResponse (``Questionnaire/Ino2Attestation``) holds what no coded
record reliably says: ``response-status`` (CR | CRi | not-in-CR), ``mrd-negative`` and
``hsct-planned``, plus one boolean item per INO2 criterion code. Only a ``completed`` or
``amended`` response counts; the latest by ``authored`` wins.

Sources: INO2 / NZ treatment-duration policy (cycles depend on "CR or CRi", "MRD
negativity" and "proceeding to SCT"); NZ: "if CR or CRi achieved after a cycle of
treatment subsequent cycles should be given as per regimen for CR or CRi achieved".
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime
from typing import Any

from cds_service.features import _valuesets as vs
from cds_service.features._index import dated, moment
from cds_service.features._medications import administrations
from cds_service.features._memo import memo
from cds_service.features._read import in_valueset, is_asserted, is_void, parse_datetime, unavailable
from cds_service.features._registry import Evidence, FeatureContext, FeatureValue, feature
from cds_service.knowledge.terms import CRITERION_CODES, DESIGNATION_CARD_SHORT, RESPONSE_STATUS_SYSTEM
from cds_service.record import PatientRecord, Resource, reference_of

_COUNTS = frozenset({"completed", "amended"})
_RESPONSES = {"cr": "CR", "cri": "CRi", "not-in-cr": "not-in-CR"}


def _shown(ctx: FeatureContext, status: str) -> str:
    """How a card names a response status: the short word the CodeSystem response-status
    gives the concept (designation ``card-short``), e.g. "not in CR/CRi"; a status that is
    not a concept of it (the "CR/CRi" of a coded remission) as it is."""
    return ctx.terminology.designation(RESPONSE_STATUS_SYSTEM, status, DESIGNATION_CARD_SHORT) or status


def ino2_responses(record: PatientRecord) -> list[Resource]:
    """INO2 QuestionnaireResponses of any status, newest first."""
    out = []
    for qr in record.of_type("QuestionnaireResponse"):
        url = str(qr.get("questionnaire") or "").partition("|")[0]
        if url == vs.INO2_QUESTIONNAIRE and not is_void(qr):
            out.append(qr)
    return sorted(out, key=lambda q: str(parse_datetime(q.get("authored")) or ""), reverse=True)


def latest_ino2_response(record: PatientRecord) -> Resource | None:
    """The newest completed/amended INO2 QuestionnaireResponse."""
    return next((q for q in ino2_responses(record) if q.get("status") in _COUNTS), None)


def _walk(items: Iterable[dict[str, Any]]) -> Iterable[dict[str, Any]]:
    for item in items or ():
        yield item
        yield from _walk(item.get("item") or ())
        for answer in item.get("answer") or ():
            yield from _walk(answer.get("item") or ())


def answers(qr: Resource | None) -> dict[str, Any]:
    """linkId -> the first answer's value (boolean, code of a Coding, string, number)."""
    out: dict[str, Any] = {}
    if qr is None:
        return out
    for item in _walk(qr.get("item") or ()):
        link = item.get("linkId")
        for answer in item.get("answer") or ():
            for key, val in answer.items():
                if not key.startswith("value"):
                    continue
                if key == "valueCoding":
                    val = (val or {}).get("code")
                out.setdefault(link, val)
                break
            break
    return out


def form_date(qr: Resource | None) -> str | None:
    when = parse_datetime(qr.get("authored")) if qr else None
    return when.date().isoformat() if when else None


def _coded_remissions(record: PatientRecord, ctx: FeatureContext, after: date) -> list[tuple[datetime, Resource]]:
    """Complete remissions recorded in code after ``after`` and up to now: an Observation
    valued, or a Condition coded, in CompleteRemission."""
    found = []
    today = ctx.now.date()
    for obs, void, when_read in dated(record, ctx, "Observation"):
        when = moment(obs, when_read)
        if when and not void and after < when.date() <= today \
                and in_valueset(record, ctx, vs.COMPLETE_REMISSION, obs.get("valueCodeableConcept")):
            found.append((when, obs))
    for cond in record.of_type("Condition"):
        when = parse_datetime(cond.get("onsetDateTime")) or parse_datetime(cond.get("recordedDate"))
        if when and after < when.date() <= ctx.now.date() and not is_void(cond) \
                and in_valueset(record, ctx, vs.COMPLETE_REMISSION, cond.get("code")):
            found.append((when, cond))
    return found


def _form_responses(record: PatientRecord) -> tuple[list[tuple[date, str, Resource]], list[Resource]]:
    """(completed INO2 forms that answer ``response-status``: (day, status, form)) and the
    completed forms that leave it unanswered (not evidence: issue 10 c)."""
    answered, unanswered = [], []
    for qr in ino2_responses(record):
        if qr.get("status") not in _COUNTS:
            continue
        raw = answers(qr).get("response-status")
        status = _RESPONSES.get(str(raw).strip().lower()) if raw is not None else None
        when = parse_datetime(qr.get("authored"))
        if status and when:
            answered.append((when.date(), status, qr))
        else:
            unanswered.append(qr)
    return answered, unanswered


def _concept_name(res: Resource) -> str:
    concept = res.get("valueCodeableConcept") if res.get("resourceType") == "Observation" else res.get("code")
    concept = concept or {}
    return concept.get("text") or next((c.get("display") for c in concept.get("coding") or () if c.get("display")),
                                       "complete remission")


def _planned_hsct(record: PatientRecord, ctx: FeatureContext) -> list[Resource]:
    out = [
        r for r in record.of_type("ServiceRequest")
        if r.get("status") in ("active", "on-hold", "draft") and in_valueset(record, ctx, vs.HSCT, r.get("code"))
    ]
    out += [
        p for p in record.of_type("Procedure")
        if p.get("status") == "preparation" and in_valueset(record, ctx, vs.HSCT, p.get("code"))
    ]
    return out


def prior_hsct(record: PatientRecord, ctx: FeatureContext) -> list[Resource]:
    """HSCTs that took place: completed Procedures, or Conditions (history-of) in the HSCT ValueSet."""
    out = [
        p for p in record.of_type("Procedure")
        if p.get("status") in ("completed", "in-progress") and in_valueset(record, ctx, vs.HSCT, p.get("code"))
    ]
    out += [
        c for c in record.of_type("Condition")
        if is_asserted(c) and in_valueset(record, ctx, vs.HSCT, c.get("code"))
    ]
    return out


@feature("response_status")
@memo
def response_status(record: PatientRecord, ctx: FeatureContext) -> FeatureValue:
    """Remission status (CR | CRi | not-in-CR) and MRD negativity, from the latest answered evidence.

    Evidence (issue 10 c): every completed INO2 form that *answers* ``response-status``,
    and every complete remission coded in the record (Observation value or Condition in
    CompleteRemission) dated after the first inotuzumab dose (judgement: a coded remission
    before inotuzumab is not a response to it). The latest by date wins, whichever kind it
    is; a form that leaves the item unanswered is not evidence and hides nothing. A form
    and a coded remission on the same day that disagree make the response unknown (fail
    visible). MRD negativity comes from the latest completed form that answers it.
    Value: ``status``, ``in_cr_cri``, ``mrd_negative`` (each None when not known),
    ``form_date`` (latest completed form), ``source`` (what the response came from, as the
    card names it), ``source_date``.
    """
    qr = latest_ino2_response(record)
    answered, unanswered = _form_responses(record)
    candidates: list[tuple[date, int, str, str, str | None]] = []  # (day, rank, status, source, reference)
    for day, status, form in answered:
        candidates.append((day, 0, status, f"the INO2 form of {day.isoformat()}", reference_of(form)))
    admins, _ = administrations(record, ctx, vs.INOTUZUMAB)
    if admins:
        for when, res in _coded_remissions(record, ctx, admins[0].day):
            kind = "observation" if res.get("resourceType") == "Observation" else "diagnosis"
            candidates.append((when.date(), 1, "CR/CRi",
                               f"a recorded remission ({kind} '{_concept_name(res)}' of {when.date().isoformat()})",
                               reference_of(res)))
    mrd = next((v for f in ino2_responses(record) if f.get("status") in _COUNTS
                for v in (answers(f).get("mrd-negative"),) if isinstance(v, bool)), None)
    evidence: list[Evidence] = []
    status = source = source_date = None
    conflict = None
    if candidates:
        latest_day = max(c[0] for c in candidates)
        newest = [c for c in candidates if c[0] == latest_day]
        in_cr = {c[2] != "not-in-CR" for c in newest}
        if len(in_cr) > 1:
            conflict = (f"the records of {latest_day.isoformat()} disagree ("
                        + "; ".join(f"{_shown(ctx, c[2])} from {c[3]}" for c in newest) + ")")
            evidence.extend(Evidence(f"Response {_shown(ctx, c[2])} from {c[3]}", c[4], c[0].isoformat()) for c in newest)
        else:
            day, _, status, source, ref = sorted(newest, key=lambda c: c[1])[0]
            source_date = day.isoformat()
            evidence.append(Evidence(f"Response to treatment {_shown(ctx, status)}, from {source}", ref, source_date))
    for form in unanswered:
        when = form_date(form)
        if when and (source_date is None or when > source_date):
            evidence.append(Evidence(f"INO2 form of {when} does not record the response (not counted as evidence)",
                                     reference_of(form), when))
    if mrd is not None:
        evidence.append(Evidence(f"MRD negative: {_yes_no(mrd)} (INO2 form)"))
    value = {
        "status": status,
        "in_cr_cri": None if status is None else status != "not-in-CR",
        "mrd_negative": mrd,
        "form_date": form_date(qr),
        "source": source,
        "source_date": source_date,
    }
    if status is not None:
        return FeatureValue("met", value, tuple(evidence))
    if conflict:
        why = conflict
    else:
        why = "no completed INO2 form" if qr is None else "no INO2 form or record states the response"
        if unavailable(record, "QuestionnaireResponse"):
            why = "the INO2 form could not be read"
    note = f"Response to treatment unknown: {why}. Record the response (CR, CRi, or not in CR/CRi) on the INO2 form."
    return FeatureValue("unknown", value, tuple(evidence), note)


@feature("ino2_form_answers")
def ino2_form_answers(record: PatientRecord, ctx: FeatureContext) -> FeatureValue:
    """Which INO2 criteria the latest completed INO2 form answers (yes or no) and which it
    leaves unanswered.

    Whether answering would settle a criterion is ``ino2_criteria``'s ``form_can_settle``
    (the eligibility card's link condition); this feature only says what the form answers,
    so the card can tell "the form already answers it" from "the form is silent, but an
    answer would not settle it". Never unknown: a form that is missing or cannot be read
    answers nothing. Value: ``form_date``, ``answered``, ``unanswered`` (criterion codes,
    form order). No evidence of its own: the eligibility card names the form already.
    """
    qr = latest_ino2_response(record)
    given = answers(qr)
    answered = [code for code in CRITERION_CODES if isinstance(given.get(code), bool)]
    value = {
        "form_date": form_date(qr),
        "answered": answered,
        "unanswered": [code for code in CRITERION_CODES if code not in answered],
    }
    return FeatureValue("met" if qr is not None else "not_met", value)


@feature("hsct_planned")
@memo
def hsct_planned(record: PatientRecord, ctx: FeatureContext) -> FeatureValue:
    """Is the patient proceeding to haematopoietic stem cell transplant?

    INO2/NZ: the cycle limits differ "for those patients proceeding to a stem cell
    transplant (SCT)". True from the INO2 form's ``hsct-planned``, or an active/draft
    ServiceRequest or a Procedure in preparation coded as HSCT; False only from the form.
    Value: True | False | None (unknown).
    """
    qr = latest_ino2_response(record)
    given = answers(qr)
    planned = given.get("hsct-planned") if isinstance(given.get("hsct-planned"), bool) else None
    evidence = []
    if planned is not None:
        evidence.append(Evidence(f"INO2 form of {form_date(qr)}: HSCT planned {_yes_no(planned)}",
                                 reference_of(qr), form_date(qr)))
    requests = _planned_hsct(record, ctx)
    if requests:
        planned = True
        evidence += [Evidence("HSCT planned (request recorded)", reference_of(r)) for r in requests]
    if planned is None:
        return FeatureValue.unknown("Whether HSCT is planned is not recorded: answer 'hsct-planned' on the INO2 form.")
    return FeatureValue("met" if planned else "not_met", planned, tuple(evidence))


def _yes_no(value: Any) -> str:
    return "yes" if value is True else "no" if value is False else "not recorded"
