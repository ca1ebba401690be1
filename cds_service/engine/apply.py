"""``ActivityDefinition/$apply`` for medication activities: a proposed MedicationRequest.

Follows CPG-on-FHIR 2.0.0 (CPGMedicationRequestActivity -> CPGMedicationRequest; see
shared/reference/fhir-knowledge.md §1.2, §5.2): the definition's dose per m² is kept as the
``calculated`` dose and the patient's dose is added as the ``ordered`` dose
(``dose-rate-type``, http://terminology.hl7.org/CodeSystem/dose-rate-type), with the data
it rests on in ``supportingInformation`` and ``instantiatesCanonical`` pointing back to the
pinned definition.

Rounding: the ordered dose is BSA × dose-per-m², rounded half-up to 0.01 of the unit
(0.01 mg) only to remove floating-point noise (0.8 × 1.2 = 0.96, not 0.9600000000000001).
Dose banding or rounding to a measurable volume is a local pharmacy policy that no source
here sets, so $apply does not do it.

Flat doses (no ``/m2`` unit) are copied as the definition gives them. ActivityDefinition
``dynamicValue`` is not applied: the engine refuses such definitions at load.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import TYPE_CHECKING, Any

import orjson

from cds_service.knowledge.terms import DOSE_RATE_TYPE, UCUM
from cds_service.record import PatientRecord

if TYPE_CHECKING:
    from cds_service.features import FeatureContext

#: HL7 terminology: dose-rate-type (calculated | ordered).
#: The case feature $apply takes the patient's BSA from (value in m², evidence = the
#: BSA Observation or the height/weight it was calculated from).
BSA_FEATURE = "bsa_m2"

_PER_M2 = ("/m2", "/m²", "/m^2")
_CENT = Decimal("0.01")


@dataclass(frozen=True)
class ApplyResult:
    """The proposed MedicationRequest and why it is incomplete, if it is."""

    resource: dict[str, Any]
    problems: tuple[str, ...] = ()


def _clone(value: Any) -> Any:
    """A deep copy of JSON data (the artifact must stay as loaded)."""
    return orjson.loads(orjson.dumps(value))


@functools.lru_cache(maxsize=64)
def iso_instant(now: datetime) -> str:
    """``now`` as a FHIR instant in UTC, seconds precision, with ``Z`` (naive = UTC).

    Cached: an evaluation formats its ``now`` for ``%now`` and for each proposed order,
    and ``strftime`` costs a few µs. Equal datetimes are the same instant (a naive one
    never equals an aware one), so they format alike."""
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    return now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _per_m2_unit(quantity: Mapping[str, Any] | None) -> str | None:
    """The unit a per-m² quantity becomes once multiplied by BSA (``mg/m2`` -> ``mg``)."""
    if not isinstance(quantity, Mapping):
        return None
    for key in ("code", "unit"):
        unit = quantity.get(key)
        if isinstance(unit, str):
            for suffix in _PER_M2:
                if unit.endswith(suffix) and len(unit) > len(suffix):
                    return unit[: -len(suffix)]
    return None


def _dose_entries(ad: Mapping[str, Any]) -> Iterable[Mapping[str, Any]]:
    for dosage in ad.get("dosage") or ():
        yield from dosage.get("doseAndRate") or ()


def needs_bsa(ad: Mapping[str, Any]) -> bool:
    """Whether the definition doses per m² (so $apply needs the patient's BSA)."""
    return any(
        _per_m2_unit(dr.get("doseQuantity")) or _per_m2_unit((dr.get("doseRange") or {}).get("low"))
        for dr in _dose_entries(ad)
    )


def canonical_of(ad: Mapping[str, Any]) -> str:
    """The pinned canonical ``url|version`` of an artifact (``url`` if unversioned)."""
    url, version = ad.get("url", ""), ad.get("version")
    return f"{url}|{version}" if version else url


def apply_with_problems(
    ad: Mapping[str, Any],
    record: PatientRecord,
    ctx: FeatureContext,
    bsa_m2: float | None,
    *,
    supporting: Sequence[str] = (),
) -> ApplyResult:
    """$apply, reporting what could not be filled in (see :func:`apply_activity`)."""
    problems: list[str] = []
    request: dict[str, Any] = {"resourceType": "MedicationRequest"}
    if ad.get("profile"):
        request["meta"] = {"profile": [ad["profile"]]}
    request["status"] = "draft"
    request["intent"] = "proposal"
    if ad.get("priority"):
        request["priority"] = ad["priority"]
    if ad.get("doNotPerform") is True:
        request["doNotPerform"] = True
    if "productCodeableConcept" in ad:
        request["medicationCodeableConcept"] = _clone(ad["productCodeableConcept"])
    elif "productReference" in ad:
        request["medicationReference"] = _clone(ad["productReference"])
    else:
        problems.append(f"{canonical_of(ad)} names no product")
    patient_id = (record.patient or {}).get("id")
    if patient_id:
        request["subject"] = {"reference": f"Patient/{patient_id}"}
    else:
        problems.append("the patient is not known, so the order has no subject")
    request["authoredOn"] = iso_instant(ctx.now)

    usable_bsa = (
        bsa_m2 if isinstance(bsa_m2, (int, float)) and not isinstance(bsa_m2, bool) and bsa_m2 > 0 else None
    )
    dosages = _clone(list(ad.get("dosage") or ()))
    used_bsa = False
    for dosage in dosages:
        entries: list[dict[str, Any]] = []
        for entry in dosage.get("doseAndRate") or ():
            entries.append(entry)
            quantity = entry.get("doseQuantity")
            unit = _per_m2_unit(quantity)
            if unit is None:
                if _per_m2_unit((entry.get("doseRange") or {}).get("low")):
                    problems.append("a dose range per m2 cannot be turned into an ordered dose")
                continue
            if usable_bsa is None:
                problems.append(
                    f"no body surface area is known, so the ordered dose cannot be calculated "
                    f"from {quantity.get('value')} {quantity.get('unit') or quantity.get('code')}"
                )
                continue
            if not isinstance(quantity.get("value"), (int, float)):
                problems.append("the dose per m2 has no numeric value")
                continue
            dose = (Decimal(str(usable_bsa)) * Decimal(str(quantity["value"]))).quantize(_CENT, ROUND_HALF_UP)
            entries.append(
                {
                    "type": {"coding": [{"system": DOSE_RATE_TYPE, "code": "ordered", "display": "Ordered"}]},
                    "doseQuantity": {"value": float(dose), "unit": unit, "system": UCUM, "code": unit},
                }
            )
            used_bsa = True
        if entries:
            dosage["doseAndRate"] = entries
    if dosages:
        request["dosageInstruction"] = dosages
    if used_bsa and supporting:
        request["supportingInformation"] = [{"reference": ref} for ref in dict.fromkeys(supporting)]
    request["instantiatesCanonical"] = [canonical_of(ad)]
    if problems:
        request["note"] = [{"text": "Not complete: " + "; ".join(problems)}]
    return ApplyResult(request, tuple(problems))


def apply_activity(
    ad: Mapping[str, Any],
    record: PatientRecord,
    ctx: FeatureContext,
    bsa_m2: float | None,
    *,
    supporting: Sequence[str] = (),
) -> dict[str, Any]:
    """Turn a medication ActivityDefinition into a proposed MedicationRequest.

    ``{resourceType, status: draft, intent: proposal, subject: Patient/<id>, authoredOn:
    ctx.now, medicationCodeableConcept: ad.productCodeableConcept, dosageInstruction:
    ad.dosage (+ the ordered dose), supportingInformation, instantiatesCanonical:
    [url|version]}``.

    For a dose in ``<unit>/m2`` the ``calculated`` entry is kept and an ``ordered`` entry
    ``bsa_m2 × dose`` in ``<unit>`` (UCUM) is added; ``supporting`` (references of the
    BSA Observation, or of the height and weight it came from) becomes
    ``supportingInformation``. Without a usable ``bsa_m2`` there is no ordered dose and
    ``note`` says why; :func:`apply_with_problems` returns the reasons separately.
    """
    return apply_with_problems(ad, record, ctx, bsa_m2, supporting=supporting).resource
