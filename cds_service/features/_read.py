"""Lenient readers shared by the clinical features: dates, quantities, names, availability.

No clinical facts here. FHIR dates arrive as ``date``, partial dates (``2019``,
``2019-04``) or ``dateTime`` with or without offset; each is read without raising.
A naive dateTime is taken as UTC; a partial date is read as its first day, and callers
that must not guess (age) use :func:`date_bounds`. Day counts between events use the
calendar date *as recorded* (the clinical day), not the UTC day.
"""

from __future__ import annotations

import calendar
import functools
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime
from typing import Any

from cds_service.features._memo import shared
from cds_service.record import PatientRecord, Resource, reference_of

_PARTIAL = re.compile(r"^(\d{4})(?:-(\d{2}))?$")

#: Statuses that mean a resource does not describe something that happened/holds.
VOID_STATUSES = frozenset({"entered-in-error", "cancelled", "not-done", "not-taken", "revoked"})


def parse_datetime(value: Any) -> datetime | None:
    """A FHIR date/dateTime/instant as an aware datetime (naive -> UTC); None if unreadable."""
    if not isinstance(value, str) or not value:
        return None
    return _parse_datetime(value)


@functools.lru_cache(maxsize=16384)
def _parse_datetime(value: str) -> datetime | None:
    # Cached: a record repeats the same dates hundreds of times (a panel of six results
    # per day) and datetimes are immutable; bounded, so hostile input cannot grow it.
    text = value.strip()
    partial = _PARTIAL.match(text)
    if partial:
        return datetime(int(partial[1]), int(partial[2] or 1), 1, tzinfo=UTC)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def parse_date(value: Any) -> date | None:
    """The calendar date of a FHIR date/dateTime, as recorded (no timezone shift)."""
    moment = parse_datetime(value)
    return moment.date() if moment else None


def date_bounds(value: Any) -> tuple[date, date] | None:
    """Earliest and latest calendar day a (possibly partial) FHIR date can stand for."""
    if not isinstance(value, str):
        return None
    partial = _PARTIAL.match(value.strip())
    if partial:
        year = int(partial[1])
        if partial[2]:
            month = int(partial[2])
            if not 1 <= month <= 12:
                return None
            return date(year, month, 1), date(year, month, calendar.monthrange(year, month)[1])
        return date(year, 1, 1), date(year, 12, 31)
    day = parse_date(value)
    return (day, day) if day else None


def effective(resource: Mapping[str, Any]) -> datetime | None:
    """When an Observation/Procedure/MedicationAdministration/-Statement took place."""
    for key in ("effectiveDateTime", "effectiveInstant", "performedDateTime", "occurrenceDateTime"):
        moment = parse_datetime(resource.get(key))
        if moment:
            return moment
    for key in ("effectivePeriod", "performedPeriod", "occurrencePeriod"):
        period = resource.get(key) or {}
        moment = parse_datetime(period.get("start")) or parse_datetime(period.get("end"))
        if moment:
            return moment
    return parse_datetime(resource.get("issued")) or parse_datetime(resource.get("recordedDate"))


def day_of(moment: datetime | None) -> str | None:
    return moment.date().isoformat() if moment else None


def is_void(resource: Mapping[str, Any]) -> bool:
    return str(resource.get("status", "")).lower() in VOID_STATUSES


#: Condition.clinicalStatus codes that mean "not ongoing"; verificationStatus codes that
#: mean "not true" (FHIR R4 condition-clinical / condition-ver-status).
INACTIVE_CLINICAL = frozenset({"inactive", "resolved", "remission"})
NOT_TRUE = frozenset({"refuted", "entered-in-error"})


def coded_status(resource: Mapping[str, Any], element: str) -> str:
    """The first code of a CodeableConcept element such as ``clinicalStatus`` ('' if none)."""
    concept = resource.get(element) or {}
    for coding in concept.get("coding") or () if isinstance(concept, Mapping) else ():
        if isinstance(coding, Mapping) and coding.get("code"):
            return str(coding["code"])
    return ""


def is_asserted(condition: Mapping[str, Any]) -> bool:
    """A Condition that is not void and not refuted."""
    return not is_void(condition) and coded_status(condition, "verificationStatus") not in NOT_TRUE


def concept_key(concept: Any) -> tuple[Any, ...]:
    """A hashable key for a CodeableConcept/Coding: equal keys, equal ValueSet membership."""
    # isinstance(x, dict) first: parsed JSON is dicts, and the Mapping ABC check is slow
    if not (isinstance(concept, dict) or isinstance(concept, Mapping)):
        return ()
    codings = concept.get("coding")
    if not isinstance(codings, list):
        codings = [concept]
    elif len(codings) == 1 and type(codings[0]) is dict:  # the common case, without a loop
        c = codings[0]
        return ((c.get("system"), c.get("code"), c.get("display")),), concept.get("text")
    # a list comprehension, not a generator: one key per resource of the record is read
    return (
        tuple([
            (c.get("system"), c.get("code"), c.get("display"))
            for c in codings if isinstance(c, dict) or isinstance(c, Mapping)
        ]),
        concept.get("text"),
    )


def in_valueset(record: PatientRecord, ctx: Any, valueset: str, concept: Any,
                key: tuple[Any, ...] | None = None) -> bool:
    """``ctx.terminology.contains``, cached per distinct concept (``key``: its
    :func:`concept_key`, when the caller has it already) across records: membership
    depends on the concept and the compiled knowledge only (``_memo.shared``)."""
    common = shared(ctx.terminology)
    full = ("vs", valueset, concept_key(concept) if key is None else key)
    hit = common.get(full)
    if hit is None:
        hit = common[full] = bool(ctx.terminology.contains(valueset, concept))
    return hit


def concept_text(concept: Any) -> str:
    """A short human name for a CodeableConcept."""
    if not isinstance(concept, Mapping):
        return "unnamed"
    if concept.get("text"):
        return str(concept["text"])
    for coding in concept.get("coding") or ():
        if isinstance(coding, Mapping) and (coding.get("display") or coding.get("code")):
            return str(coding.get("display") or coding.get("code"))
    return "unnamed"


def medication_name(resource: Mapping[str, Any], record: PatientRecord | None = None) -> str:
    """The medication a MedicationRequest/-Administration/-Statement names."""
    if resource.get("medicationCodeableConcept"):
        return concept_text(resource["medicationCodeableConcept"])
    ref = (resource.get("medicationReference") or {}).get("reference")
    if isinstance(ref, str):
        if ref.startswith("#"):
            for contained in resource.get("contained") or ():
                if contained.get("id") == ref[1:]:
                    return concept_text(contained.get("code"))
        elif record is not None:
            med = record.resolve(ref)
            if med:
                return concept_text(med.get("code"))
    return (resource.get("medicationReference") or {}).get("display") or "unnamed medication"


def quantity(value: Any) -> tuple[float, str] | None:
    """(value, unit) of a Quantity; the unit is the UCUM code if given, else the unit text."""
    if not isinstance(value, Mapping) or not isinstance(value.get("value"), (int, float)):
        return None
    if isinstance(value.get("value"), bool):
        return None
    unit = str(value.get("code") or value.get("unit") or "").strip()
    return float(value["value"]), unit


def fmt(number: float | None, places: int = 2) -> str:
    """A number for card text without float noise (0.8 not 0.8000000001)."""
    if number is None:
        return "?"
    text = f"{number:.{places}f}".rstrip("0").rstrip(".")
    return text or "0"


def days_between(earlier: date, later: date) -> int:
    return (later - earlier).days


def unavailable(record: PatientRecord, *resource_types: str) -> list[str]:
    """Messages of record notes saying data of these types could not be had.

    Prefetch keys are named for their content (architecture.md §5, STYLE.md §10), so a
    note whose key or message names the type (``medicationAdministrations``) concerns it.
    """
    wanted = [re.sub(r"[^a-z]", "", t.lower()) for t in resource_types]
    out = []
    for note in record.notes:
        if note.kind in ("unsupported", "other-patient"):  # this patient's data of the type is there
            continue
        key = re.sub(r"[^a-z]", "", f"{note.key} {note.message}".lower())
        if any(w in key for w in wanted):
            out.append(note.message)
    return out


def refs(resources: Iterable[Resource]) -> list[str]:
    return [reference_of(r) for r in resources]
