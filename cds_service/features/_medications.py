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

import itertools
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any, Final

from cds_service.features._index import RAISES, dated, moment
from cds_service.features._memo import memo, shared
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


#: Stands for "the medication key of this resource could not be read" (malformed input):
#: :func:`matches` then reads it again where it is asked, so the exception surfaces in the
#: feature that asked, as it always did, and not in every feature that reads medications.
_UNREADABLE: Final = -1


@dataclass(frozen=True, slots=True)
class _Numbering:
    """Every medication resource of the record and of the ordering session, numbered by
    its :func:`_medication_key` (equal numbers, equal ValueSet membership).

    Why: a record holds a few distinct medications given hundreds of times, and the
    features ask about a dozen ValueSets. Reading each resource's key once and asking the
    terminology once per (ValueSet, distinct medication) turns "resources x ValueSets"
    key reads into "resources + distinct x ValueSets" lookups.

    - ``number_of``: ``id(resource)`` -> (resource, number); the resource is kept so an
      id is only trusted for the object it was taken from;
    - ``keys`` / ``representative``: per number, its key and the first resource with it.
    """

    number_of: dict[int, tuple[Resource, int]]
    keys: tuple[tuple[Any, ...], ...]
    representative: tuple[Resource, ...]


@memo
def _numbering(record: PatientRecord, ctx: FeatureContext) -> _Numbering:
    numbers: dict[tuple[Any, ...], int] = {}
    representative: list[Resource] = []
    number_of: dict[int, tuple[Resource, int]] = {}
    for res in itertools.chain(*map(record.of_type, MEDICATION_TYPES), record.draft_orders):
        number_of[id(res)] = (res, _number(res, numbers, representative))
    return _Numbering(number_of, tuple(numbers), tuple(representative))


def _plain_concept(concept: Any) -> tuple[Any, ...] | None:
    """:func:`concept_key` of a dict with one coding (or none: the concept is read as its
    own coding, as ``concept_key`` does); None for any other shape."""
    if type(concept) is not dict:
        return () if concept is None else None
    codings = concept.get("coding")
    if type(codings) is not list:
        c = concept
    elif len(codings) == 1 and type(codings[0]) is dict:
        c = codings[0]
    else:
        return None
    return ((c.get("system"), c.get("code"), c.get("display")),), concept.get("text")


def _plain_key(res: Resource) -> tuple[Any, ...] | None:
    """:func:`_medication_key` of the common shape, read inline: a coded medication, no
    reference, dosages whose routes have at most one coding; None for anything else (then
    :func:`_medication_key` reads it). Why: a record holds hundreds of medication
    resources, and the general reader's calls cost ~1 us per resource."""
    if "medicationReference" in res:
        return None
    medication = _plain_concept(res.get("medicationCodeableConcept"))
    dosages = res.get("dosageInstruction") or res.get("dosage") or ()
    if type(dosages) is dict:
        dosages = (dosages,)
    elif type(dosages) is not list and dosages != ():
        return None
    routes = []
    for d in dosages:
        if type(d) is dict:
            route = _plain_concept(d.get("route"))
            if route is None:
                return None
            routes.append(route)
    if medication is None:
        return None
    return medication, None, None, (), tuple(routes)


def _number(res: Resource, numbers: dict[tuple[Any, ...], int], representative: list[Resource]) -> int:
    try:
        key = _plain_key(res) or _medication_key(res)
    except Exception:  # noqa: BLE001 - malformed: read again (and raise) where it is asked
        return _UNREADABLE
    number = numbers.get(key)
    if number is None:
        number = numbers[key] = len(numbers)
        representative.append(res)
    return number


#: Numbers for medication keys across records (never reused, so a number kept by one
#: record can never stand for another medication after the shared cache is cleared).
_GLOBAL_NUMBERS = itertools.count()


def _shareable(key: tuple[Any, ...]) -> bool:
    """Membership depends on the key alone (no reference other than to a contained Medication)."""
    ref = key[1]
    return ref is None or (isinstance(ref, str) and ref.startswith("#"))


def _shared_number(common: dict[tuple[Any, ...], Any], key: tuple[Any, ...]) -> int:
    number = common.get(("medid", key))
    if number is None:
        number = common[("medid", key)] = next(_GLOBAL_NUMBERS)
    return number


def _member(ctx: FeatureContext, valueset: str, key: tuple[Any, ...], res: Resource, record: PatientRecord,
            number: int | None = None) -> bool:
    """``terminology.matches_medication``, kept across records when :func:`_shareable`.

    The shared cache is keyed by a process-wide ``number`` per distinct key, so the nested
    key tuple is hashed once per record, not once per ValueSet asked."""
    if not _shareable(key):
        return bool(ctx.terminology.matches_medication(valueset, res, record))
    common = shared(ctx.terminology)
    full = ("med", valueset, _shared_number(common, key) if number is None else number)
    hit = common.get(full)
    if hit is None:
        hit = common[full] = bool(ctx.terminology.matches_medication(valueset, res, record))
    return hit


@memo
def _shared_numbers(record: PatientRecord, ctx: FeatureContext) -> tuple[int | None, ...]:
    """Per number of the record, its process-wide number when :func:`_shareable` (else None)."""
    common = shared(ctx.terminology)
    return tuple(_shared_number(common, key) if _shareable(key) else None for key in _numbering(record, ctx).keys)


@memo
def _hits(record: PatientRecord, ctx: FeatureContext, valueset: str) -> tuple[frozenset[int], frozenset[int]]:
    """The numbers (:class:`_Numbering`) of the medications in ``valueset``, and those whose
    membership raised (asked again, and so raising again, only where such a resource is asked)."""
    nb = _numbering(record, ctx)
    hits: set[int] = set()
    raised: set[int] = set()
    common = shared(ctx.terminology)
    for n, (key, number, res) in enumerate(zip(nb.keys, _shared_numbers(record, ctx), nb.representative,
                                              strict=True)):
        # what _member keeps across records, read here without the call (ten ValueSets ask)
        hit = common.get(("med", valueset, number)) if number is not None else None
        if hit is None:
            try:
                hit = _member(ctx, valueset, key, res, record, number)
            except Exception:  # noqa: BLE001 - see the docstring
                raised.add(n)
                continue
        if hit:
            hits.add(n)
    return frozenset(hits), frozenset(raised)


def _in(nb: _Numbering, hits: tuple[frozenset[int], frozenset[int]], ctx: FeatureContext, valueset: str,
        resource: Resource, record: PatientRecord) -> bool:
    """Whether ``resource`` is in ``valueset``, given the record's numbering and that
    ValueSet's :func:`_hits`; a resource outside the numbering, or unreadable, is read directly."""
    entry = nb.number_of.get(id(resource))
    if entry is not None and entry[0] is resource and entry[1] != _UNREADABLE and entry[1] not in hits[1]:
        return entry[1] in hits[0]
    return _member(ctx, valueset, _medication_key(resource), resource, record)


def matches(ctx: FeatureContext, valueset: str, resource: Resource, record: PatientRecord) -> bool:
    """Is the medication of ``resource`` in ``valueset``? (``terminology.matches_medication``,
    asked once per distinct medication of the record: :class:`_Numbering`.)"""
    return _in(_numbering(record, ctx), _hits(record, ctx, valueset), ctx, valueset, resource, record)


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
    nb, hits = _numbering(record, ctx), _hits(record, ctx, valueset)
    for res, unreadable in _active_candidates(record, ctx):
        if unreadable:
            effective(res)  # raises, as reading this resource's date always does
        if _in(nb, hits, ctx, valueset, res, record):
            out.append(res)
    return tuple(out)


@memo
def _history_rows(record: PatientRecord, ctx: FeatureContext) -> tuple[tuple[Resource, int | None], ...]:
    """The non-void, non-draft medication resources, in history order, each with its
    number (:class:`_Numbering`; None if it has none): read once per record, so asking
    about a ValueSet is one set test per resource (six ValueSets ask of every row)."""
    number_of = _numbering(record, ctx).number_of
    out = []
    for rtype in MEDICATION_TYPES:
        for res in record.of_type(rtype):
            if is_void(res) or res.get("status") == "draft" or res.get("status") == "intended":
                continue
            entry = number_of.get(id(res))
            out.append((res, entry[1] if entry is not None and entry[0] is res else None))
    return tuple(out)


@memo
def history(record: PatientRecord, ctx: FeatureContext, valueset: str) -> tuple[Resource, ...]:
    """Every non-void, non-draft medication resource in ``valueset`` (module docstring)."""
    hits = _hits(record, ctx, valueset)
    members, raised = hits
    out = []
    for res, number in _history_rows(record, ctx):
        if number is None or number == _UNREADABLE or number in raised:  # read it directly, as _in does
            if _in(_numbering(record, ctx), hits, ctx, valueset, res, record):
                out.append(res)
        elif number in members:
            out.append(res)
    return tuple(out)


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
    nb, hits = _numbering(record, ctx), _hits(record, ctx, valueset)
    for res, void, when_read in dated(record, ctx, "MedicationAdministration"):
        if void or not _in(nb, hits, ctx, valueset, res, record):
            continue
        when = moment(res, when_read)
        if when is None:
            notes.append("an administration with no date was not counted")
            continue
        if when.date() > today:
            notes.append(f"an administration dated in the future ({when.date().isoformat()}) was not counted")
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

