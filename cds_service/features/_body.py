"""Age and body surface area, and the ordered inotuzumab dose per m².

BSA is taken only from a recorded BSA Observation (BodySurfaceArea: LOINC 8277-6,
clinical.md §2.5). It is **not** computed from height and weight: no BSA formula
(Mosteller, Du Bois, ...) is in the project's sources, so none is encoded; a missing BSA
is a visible problem, never a guessed one. Height, weight and BSA older than
``SitePolicy.bsa_max_age_days`` on the day of the dose count as missing (issue 3,
bsa-dose). The mg/m² the regimen prescribes for each day lives in the rule
PlanDefinition; here only the order's own numbers are read.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from cds_service.features import _valuesets as vs
from cds_service.features._course import course
from cds_service.features._labs import observations
from cds_service.features._orders import ino_draft_doses
from cds_service.features._read import date_bounds, fmt, quantity
from cds_service.features._memo import memo
from cds_service.features._registry import Evidence, FeatureContext, FeatureValue, feature
from cds_service.features._response import response_status
from cds_service.record import PatientRecord, reference_of

_M2 = {"m2", "m^2", "m²", "[m2]"}


def full_years(born: date, on: date) -> int:
    """Completed years of life on ``on`` (a 29 February birthday counts from 1 March)."""
    return on.year - born.year - ((on.month, on.day) < (born.month, born.day))


@feature("patient_age")
@memo
def patient_age(record: PatientRecord, ctx: FeatureContext) -> FeatureValue:
    """Age in completed years from ``Patient.birthDate`` on the evaluation day.

    INO2 is for "a child" (no age given; site policy ``child_age_limit_years``,
    clinical.md §4.1). A partial birthDate gives a range: ``years_min``/``years_max``;
    ``years`` is set only when both agree. Unknown without a usable birthDate.
    """
    birth = (record.patient or {}).get("birthDate")
    bounds = date_bounds(birth)
    if bounds is None:
        return FeatureValue.unknown("Age unknown: the patient's date of birth is not recorded.")
    today = ctx.now.date()
    oldest, youngest = full_years(bounds[0], today), full_years(bounds[1], today)
    value = {"years": oldest if oldest == youngest else None, "years_min": youngest,
             "years_max": oldest, "birth_date": birth}
    ev = Evidence(f"Born {birth}: aged {youngest if oldest == youngest else f'{youngest}-{oldest}'} years",
                  f"Patient/{(record.patient or {}).get('id', '')}", birth)
    if oldest != youngest:
        return FeatureValue("unknown", value, (ev,), f"Age is {youngest} or {oldest}: the date of birth is partial.")
    return FeatureValue("met", value, (ev,))


def _latest(record: PatientRecord, ctx: FeatureContext, valueset: str, label: str, on: date,
            problems: list[str], evidence: list[Evidence]) -> tuple[Any, date | None]:
    found = observations(record, ctx, valueset)
    if not found:
        problems.append(f"no {label} recorded")
        return None, None
    when, obs = found[0]
    age = (on - when.date()).days
    limit = ctx.policy.bsa_max_age_days
    q = quantity(obs.get("valueQuantity"))
    shown = f"{fmt(q[0])} {q[1]}" if q else "no value"
    days = f"{age} day{'' if age == 1 else 's'}"
    evidence.append(Evidence(f"{label.capitalize()} {shown} on {when.date().isoformat()} ({days} before the dose)",
                             reference_of(obs), when.date().isoformat()))
    if age > limit:
        problems.append(f"{label} is {age} days old on the day of the dose (site limit {limit} days)")
    return obs, when.date()


def body_measurements(record: PatientRecord, ctx: FeatureContext, on: date) -> tuple[dict[str, Any], list[Evidence]]:
    """BSA (m²) and the dates of height, weight and BSA, with problems (module docstring)."""
    problems: list[str] = []
    evidence: list[Evidence] = []
    value: dict[str, Any] = {"bsa_m2": None, "max_age_days": ctx.policy.bsa_max_age_days}
    for key, valueset, label in (("height", vs.BODY_HEIGHT, "height"), ("weight", vs.BODY_WEIGHT, "weight")):
        _, day = _latest(record, ctx, valueset, label, on, problems, evidence)
        value[f"{key}_date"] = day.isoformat() if day else None
    obs, day = _latest(record, ctx, vs.BODY_SURFACE_AREA, "body surface area", on, problems, evidence)
    value["bsa_date"] = day.isoformat() if day else None
    if obs is not None:
        q = quantity(obs.get("valueQuantity"))
        if q is None or q[1].lower().replace(" ", "") not in _M2 or q[0] <= 0:
            problems.append(f"body surface area {reference_of(obs)} is not a value in m²")
        elif day is not None and (on - day).days <= ctx.policy.bsa_max_age_days:
            value["bsa_m2"] = q[0]
    value["problems"] = problems
    return value, evidence


@feature("bsa_dose")
def bsa_dose(record: PatientRecord, ctx: FeatureContext) -> FeatureValue:
    """The selected inotuzumab doses with the patient's BSA and the ordered dose per m².

    NZ regimen entry: inotuzumab is dosed in mg/m² ("0.8 mg/m²" day 1, "0.5 mg/m²" days
    8 and 15); issue 3: warn when the ordered dose differs from BSA × mg/m² for that day
    by more than the site tolerance, or when height/weight/BSA is missing or too old.
    Value: ``doses`` (each: order, date, dose_mg, stated_mg_m2 (the mg/m² the order
    itself states, else None), bsa_m2, mg_per_m2 = dose_mg / bsa_m2, cycle_number,
    day_of_cycle, in_cr_cri: the response, for the day-1 dose of later cycles), ``bsa_m2``,
    dates, ``problems`` (what stops the check), ``tolerance_percent``. The rule compares
    mg_per_m2 with the day's mg/m². Always ``met`` when a dose is selected: what cannot be
    checked is listed in ``problems`` (and is None in the dose), never hidden.
    """
    c = course(record, ctx)
    if not c.selected:
        return FeatureValue("not_met", {"doses": [], "problems": []}, (), "no inotuzumab dose is selected")
    drafts = {d.reference: d for d in ino_draft_doses(record, ctx)}
    on = max(ctx.now.date(), max(p.day for p in c.selected))
    value, evidence = body_measurements(record, ctx, on)
    problems: list[str] = value["problems"]
    response = response_status(record, ctx).value or {}
    bsa = value["bsa_m2"]
    doses = []
    for p in c.selected:
        dose = drafts[p.reference].dose
        if dose.problem:
            problems.append(f"{p.reference}: {dose.problem}")
        known_cycle = c.problem is None
        if dose.mg_per_m2 is None and (not known_cycle or (p.day_of_cycle == 1 and p.cycle_number > 1
                                                           and response.get("in_cr_cri") is None)):
            problems.append(
                f"{p.reference} states no dose in mg/m², and the mg/m² for that day is unknown "
                + ("(the cycle cannot be placed: " + str(c.problem) + ")" if not known_cycle
                   else "(day 1 of a later cycle: the response, CR/CRi or not, is not recorded)")
            )
        doses.append({
            "order": p.reference,
            "date": p.day.isoformat(),
            "dose_mg": dose.mg,
            "stated_mg_m2": dose.mg_per_m2,
            "bsa_m2": bsa,
            "mg_per_m2": round(dose.mg / bsa, 6) if dose.mg is not None and bsa else None,
            "cycle_number": p.cycle_number if known_cycle else None,
            "day_of_cycle": p.day_of_cycle if known_cycle else None,
            "in_cr_cri": response.get("in_cr_cri"),
        })
    value.update({"doses": doses, "tolerance_percent": ctx.policy.bsa_dose_tolerance_percent})
    # Problems are part of the value (the rule shows them); the doses that can be checked
    # still are, so the feature is known either way.
    note = ("BSA dose check incomplete: " + "; ".join(problems) + ".") if problems else None
    return FeatureValue("met", value, tuple(evidence), note)


@feature("bsa_m2")
def bsa_m2(record: PatientRecord, ctx: FeatureContext) -> FeatureValue:
    """The patient's body surface area in m², for ``$apply`` of per-m² doses.

    From a recorded BSA Observation no older than ``SitePolicy.bsa_max_age_days`` on the
    day of the selected dose (else today); never computed from height and weight (module
    docstring). Value: the BSA as a number; evidence: the BSA Observation.
    """
    drafts = [d for d in ino_draft_doses(record, ctx) if d.selected]
    on = max([ctx.now.date(), *(d.day for d in drafts)])
    value, evidence = body_measurements(record, ctx, on)
    bsa = value["bsa_m2"]
    shown = tuple(e for e in evidence if "surface" in e.display.lower())
    if bsa is None:
        why = "; ".join(p for p in value["problems"] if "surface" in p) or "no usable body surface area"
        return FeatureValue.unknown(f"BSA unknown: {why}. Record a current BSA (m²).", *shown)
    return FeatureValue("met", bsa, shown)
