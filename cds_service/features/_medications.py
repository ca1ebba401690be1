"""Medication helpers: which orders, statements and administrations match a ValueSet,
and in what sense ("drafted", "active", "ever given").

Definitions (issue 3, shared by every clinical feature):

- **drafted**: a MedicationRequest among ``record.draft_orders`` (the ordering session);
- **active**: a MedicationRequest with status ``active``/``on-hold``, a MedicationStatement
  with status ``active``, or a MedicationAdministration within the last
  ``SitePolicy.recent_administration_days`` days (no active order needed);
- **history**: any MedicationRequest (not draft), MedicationStatement or
  MedicationAdministration that is not void (entered-in-error, cancelled, not-done,
  not-taken).

A draft order's *planned date* is the first ``dosageInstruction.timing.event`` or
``timing.repeat.boundsPeriod.start``; an order that states neither is taken to be for the
evaluation day, and every feature value built on it says so (``date_assumed``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any

from cds_service.features._index import RAISES, dated, moment
from cds_service.features._memo import memo, scratch, shared
from cds_service.features._read import concept_key, effective, is_void, parse_date, parse_datetime, quantity
from cds_service.record import PatientRecord, Resource, reference_of

if TYPE_CHECKING:
    from cds_service.features._registry import FeatureContext

MEDICATION_TYPES = ("MedicationRequest", "MedicationStatement", "MedicationAdministration")

#: Unit spellings read as milligrams / micrograms (UCUM code or printed unit).
_MG = {"mg", "milligram", "milligrams"}
_UG = {"ug", "mcg", "µg", "μg", "microgram", "micrograms"}


def _medication_key(resource: Resource) -> tuple[Any, ...]:
    """What ValueSet membership of a medication resource depends on (terminology
    ``matches_medication``): its concept, its reference (and a contained Medication), its routes."""
    ref = resource.get("medicationReference") or {}
    contained = ()
    if isinstance(ref.get("reference"), str) and ref["reference"].startswith("#"):
        contained = tuple(
            (concept_key(c.get("code")), concept_key(c.get("form")),
             tuple(concept_key(i.get("itemCodeableConcept")) for i in c.get("ingredient") or ()))
            for c in resource.get("contained") or () if c.get("id") == ref["reference"][1:]
        )
    dosages = resource.get("dosageInstruction") or resource.get("dosage") or ()
    if isinstance(dosages, dict):
        dosages = (dosages,)
    routes = tuple([concept_key(d.get("route")) for d in dosages if isinstance(d, dict)])  # list: faster
    return (concept_key(resource.get("medicationCodeableConcept")), ref.get("reference"), ref.get("display"),
            contained, routes)


def _key_of(cache: dict[Any, Any], resource: Resource) -> tuple[tuple[Any, ...], int]:
    """The resource's :func:`_medication_key`, read once per resource of the record, and
    a small number standing for it in this record (cheaper to hash on every lookup). The
    entry holds the resource, so an id is only trusted for the object it was taken from."""
    slot = ("medkey", id(resource))
    seen = cache.get(slot)
    if seen is not None and seen[0] is resource:
        return seen[1], seen[2]
    key = _medication_key(resource)
    numbers = cache.setdefault("medkeys", {})
    number = numbers.setdefault(key, len(numbers))
    cache[slot] = (resource, key, number)
    return key, number


def matches(ctx: FeatureContext, valueset: str, resource: Resource, record: PatientRecord) -> bool:
    """``terminology.matches_medication``, cached per distinct medication for this record
    and, when the medication does not depend on the record (no reference other than to a
    contained Medication), across records too."""
    cache = scratch(record, ctx)
    key, number = _key_of(cache, resource)
    slot = ("med", valueset, number)
    hit = cache.get(slot)
    if hit is None:
        ref = key[1]
        if ref is None or (isinstance(ref, str) and ref.startswith("#")):
            common = shared(ctx.terminology)
            full = ("med", valueset, key)
            hit = common.get(full)
            if hit is None:
                hit = common[full] = bool(ctx.terminology.matches_medication(valueset, resource, record))
        else:
            hit = bool(ctx.terminology.matches_medication(valueset, resource, record))
        cache[slot] = hit
    return hit


@memo
def drafted(record: PatientRecord, ctx: FeatureContext, valueset: str) -> tuple[Resource, ...]:
    """Draft MedicationRequests of the session whose medication is in ``valueset``."""
    return tuple(
        o
        for o in record.draft_orders
        if o.get("resourceType") == "MedicationRequest" and matches(ctx, valueset, o, record)
    )


def is_selected(record: PatientRecord, order: Resource) -> bool:
    return reference_of(order) in set(record.selections)


@memo
def _active_candidates(record: PatientRecord, ctx: FeatureContext) -> tuple[tuple[Resource, bool], ...]:
    """The resources that are active whatever the medication (module docstring), in the
    order :func:`active` reports them, read once per record (not once per ValueSet); each
    with True when its date cannot be read (``effective`` raised: :func:`active` lets it
    raise again at that point, as the per-ValueSet scan did)."""
    today = ctx.now.date()
    window = ctx.policy.recent_administration_days
    out: list[tuple[Resource, bool]] = []
    for res in record.of_type("MedicationRequest"):
        if res.get("status") in ("active", "on-hold"):
            out.append((res, False))
    for res in record.of_type("MedicationStatement"):
        if res.get("status") == "active":
            out.append((res, False))
    for res, void, when in dated(record, ctx, "MedicationAdministration"):
        if void:
            continue
        if when is RAISES:
            out.append((res, True))
            continue
        if when is None or not 0 <= (today - when.date()).days <= window:  # type: ignore[union-attr]
            continue
        out.append((res, False))
    return tuple(out)


@memo
def active(record: PatientRecord, ctx: FeatureContext, valueset: str) -> tuple[Resource, ...]:
    """Active (not drafted) medication resources in ``valueset`` (module docstring)."""
    out: list[Resource] = []
    for res, unreadable in _active_candidates(record, ctx):
        if unreadable:
            effective(res)  # raises, as reading this resource's date always does
        if matches(ctx, valueset, res, record):
            out.append(res)
    return tuple(out)


@memo
def _history_candidates(
    record: PatientRecord, ctx: FeatureContext
) -> tuple[tuple[tuple[Resource, int], ...], tuple[tuple[int, Resource], ...]]:
    """The non-void, non-draft medication resources in history order, each with the
    number of its medication key, and one resource per distinct key (read once per
    record: the ValueSets asked about are then matched per distinct medication)."""
    cache = scratch(record, ctx)
    rows: list[tuple[Resource, int]] = []
    first: dict[int, Resource] = {}
    for rtype in MEDICATION_TYPES:
        for res in record.of_type(rtype):
            if is_void(res) or res.get("status") == "draft" or res.get("status") == "intended":
                continue
            _, number = _key_of(cache, res)
            rows.append((res, number))
            first.setdefault(number, res)
    return tuple(rows), tuple(first.items())


@memo
def history(record: PatientRecord, ctx: FeatureContext, valueset: str) -> tuple[Resource, ...]:
    """Every non-void, non-draft medication resource in ``valueset`` (module docstring)."""
    rows, distinct = _history_candidates(record, ctx)
    hits = {number for number, res in distinct if matches(ctx, valueset, res, record)}
    return tuple(res for res, number in rows if number in hits)


def medication_date(resource: Resource) -> date | None:
    """When a medication resource happened or was written (for evidence and ordering)."""
    when = effective(resource) or parse_datetime(resource.get("authoredOn"))
    return when.date() if when else None


@dataclass(frozen=True)
class Administration:
    """One dose given: its calendar day (as recorded) and the resource."""

    day: date
    reference: str


@memo
def administrations(
    record: PatientRecord, ctx: FeatureContext, valueset: str
) -> tuple[tuple[Administration, ...], tuple[str, ...]]:
    """Doses of ``valueset`` given up to now, oldest first, and notes on unusable ones.

    Counted: every MedicationAdministration that is not void (``stopped`` = partly
    given, still an exposure; ``unknown`` counted: fail towards more exposure).
    """
    given: list[Administration] = []
    notes: list[str] = []
    today = ctx.now.date()
    for res, void, when_read in dated(record, ctx, "MedicationAdministration"):
        if void or not matches(ctx, valueset, res, record):
            continue
        when = moment(res, when_read)
        if when is None:
            notes.append(f"{reference_of(res)} has no date and was not counted")
            continue
        if when.date() > today:
            notes.append(f"{reference_of(res)} is dated in the future and was not counted")
            continue
        given.append(Administration(when.date(), reference_of(res)))
    given.sort(key=lambda a: (a.day, a.reference))
    return tuple(given), tuple(notes)


def planned_date(order: Resource) -> date | None:
    """The day a draft order is for, when it says (module docstring)."""
    for dosage in order.get("dosageInstruction") or ():
        timing = dosage.get("timing") or {}
        for event in timing.get("event") or ():
            day = parse_date(event)
            if day:
                return day
        bounds = (timing.get("repeat") or {}).get("boundsPeriod") or {}
        day = parse_date(bounds.get("start"))
        if day:
            return day
    return None


@dataclass(frozen=True)
class Dose:
    """The dose a draft order asks for: mg and/or mg/m² (either may be missing)."""

    mg: float | None
    mg_per_m2: float | None
    problem: str | None = None


def _unit(text: str) -> str:
    return text.lower().replace(" ", "").replace("²", "2").replace("^2", "2").replace("{", "").replace("}", "")


def order_dose(order: Resource) -> Dose:
    """Read ``dosageInstruction[].doseAndRate[].doseQuantity`` as mg and mg/m².

    Micrograms are converted to mg (unit arithmetic only); any other unit is a problem.
    """
    mg = per_m2 = None
    unread: list[str] = []
    for dosage in order.get("dosageInstruction") or ():
        for dr in dosage.get("doseAndRate") or ():
            q = quantity(dr.get("doseQuantity"))
            if q is None:
                continue
            value, raw_unit = q
            unit = _unit(raw_unit)
            base, _, per = unit.partition("/")
            factor = 1.0 if base in _MG else 0.001 if base in _UG else None
            if factor is None:
                unread.append(raw_unit or "no unit")
            elif per == "" and mg is None:
                mg = round(value * factor, 6)
            elif per == "m2" and per_m2 is None:
                per_m2 = round(value * factor, 6)
            elif per not in ("", "m2"):
                unread.append(raw_unit)
    problem = None
    if mg is None:
        problem = (
            f"the order's dose unit cannot be read ({', '.join(unread)})" if unread
            else "the order states no dose in mg"
        )
    return Dose(mg, per_m2, problem)

