"""Age and body surface area, and the ordered inotuzumab dose per m².

BSA is taken from a recorded BSA Observation (BodySurfaceArea: LOINC 8277-6,
clinical.md §2.5). Whether it may be calculated from height and weight is the site policy
``bsa_formula``: no BSA formula is in the project's sources, so the default is ``none``
(a missing BSA is a visible problem, never a guessed one, and where height and weight are
recorded the card says exactly that); ``mosteller`` (cited in the policy's help) derives
it when no usable BSA is recorded, and the card shows the derived BSA and the formula.
Height, weight and BSA older than ``SitePolicy.bsa_max_age_days`` on the day of the dose
count as missing, and physically impossible values (``plausible_*``) are never used (issue 3,
bsa-dose). The mg/m² the regimen prescribes for each dose is read from the regimen
PlanDefinitions (``ctx.regimens``: knowledge/_regimen.py), never written here; the rule
PlanDefinition compares the order with it.
"""

from __future__ import annotations

import math
from datetime import date
from typing import TYPE_CHECKING, Any

from cds_service.features import _valuesets as vs
from cds_service.features._course import course
from cds_service.features._labs import observations
from cds_service.features._memo import memo
from cds_service.features._orders import ino_draft_doses
from cds_service.features._policy import plausible_range
from cds_service.features._read import date_bounds, fmt, quantity
from cds_service.features._registry import Evidence, FeatureContext, FeatureValue, feature
from cds_service.features._response import response_status
from cds_service.record import PatientRecord, reference_of

if TYPE_CHECKING:
    from cds_service.features._course import Placement
    from cds_service.knowledge import RegimenSchedule

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
    implausible = _implausible_birth(bounds, today, oldest, ctx.policy.plausible_age_max_years)
    if implausible:
        ev = Evidence(f"Date of birth {birth}: {implausible}", f"Patient/{(record.patient or {}).get('id', '')}", birth)
        return FeatureValue("unknown", {"years": None, "years_min": None, "years_max": None, "birth_date": birth,
                                        "implausible": implausible}, (ev,),
                            f"Age unknown: the date of birth {birth} is implausible ({implausible}). "
                            "Correct the date of birth in the record.")
    value = {"years": oldest if oldest == youngest else None, "years_min": youngest,
             "years_max": oldest, "birth_date": birth}
    ev = Evidence(f"Born {birth}: aged {youngest if oldest == youngest else f'{youngest}-{oldest}'} years",
                  f"Patient/{(record.patient or {}).get('id', '')}", birth)
    if oldest != youngest:
        return FeatureValue("unknown", value, (ev,), f"Age is {youngest} or {oldest}: the date of birth is partial.")
    return FeatureValue("met", value, (ev,))


@feature("patient_is_adult")
def patient_is_adult(record: PatientRecord, ctx: FeatureContext) -> FeatureValue:
    """True only when the patient is certainly at or above ``SitePolicy.child_age_limit_years``.

    Decides whether a suggestion may carry a dose the sources give only for adults (the NZ
    premedication doses are flat adult doses; clinical.md §1.6 cites no paediatric dose): an
    unknown, partial or implausible age counts as a child (no dose), so this is never
    ``unknown``. Value: True | False.
    """
    age = patient_age(record, ctx)
    limit = ctx.policy.child_age_limit_years
    youngest = (age.value or {}).get("years_min")
    adult = isinstance(youngest, int) and youngest >= limit
    return FeatureValue("met" if adult else "not_met", adult, age.evidence)


def _implausible_birth(bounds: tuple[date, date], today: date, oldest: int, limit: int) -> str | None:
    """Why a birth date cannot be a living patient's (SitePolicy.plausible_age_max_years), or None."""
    if bounds[0] > today:
        return "it is in the future"
    if oldest > limit:
        return f"an age of {oldest} years is above the plausible maximum of {limit}"
    return None


#: Units read for height (to cm) and weight (to kg): unit arithmetic only.
_TO_CM = {"cm": 1.0, "m": 100.0, "mm": 0.1, "[in_i]": 2.54, "in": 2.54}
_TO_KG = {"kg": 1.0, "g": 0.001, "[lb_av]": 0.45359237, "lb": 0.45359237}


def _latest(record: PatientRecord, ctx: FeatureContext, valueset: str, label: str, on: date,
            problems: list[str], evidence: list[Evidence], *, report_missing: bool = True) -> tuple[Any, date | None]:
    found = observations(record, ctx, valueset)
    if not found:
        if report_missing:
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


def _measure(obs: Any, label: str, units: dict[str, float], unit_name: str, policy_range: str,
             problems: list[str], implausible: list[str]) -> float | None:
    """The measurement in ``unit_name`` if it can be read and is physically possible, else
    None with the reason in ``problems`` (SitePolicy plausible_*: fail visible)."""
    q = quantity(obs.get("valueQuantity"))
    factor = units.get(q[1].strip().lower()) if q else None
    if q is None or factor is None:
        shown = f"{fmt(q[0])} {q[1]}".rstrip() if q else "without a value"
        problems.append(f"{label} {shown} cannot be read as {unit_name}")
        return None
    value = round(q[0] * factor, 4)
    low, high = plausible_range(policy_range)
    if not low <= value <= high:
        implausible.append(f"{label} {fmt(q[0])} {q[1]}")
        problems.append(f"{label} {fmt(q[0])} {q[1]} is implausible (outside {policy_range} {unit_name}): "
                        "correct it in the record")
        return None
    return value


def mosteller_m2(height_cm: float, weight_kg: float) -> float:
    """BSA = sqrt(height cm × weight kg / 3600) (Mosteller RD, N Engl J Med 1987;317:1098),
    to 0.01 m² (SitePolicy.bsa_formula = mosteller)."""
    return round(math.sqrt(height_cm * weight_kg / 3600), 2)


def body_measurements(record: PatientRecord, ctx: FeatureContext, on: date) -> tuple[dict[str, Any], list[Evidence]]:
    """BSA (m²) and the dates of height, weight and BSA, with problems (module docstring).

    ``bsa_status``: ``recorded`` (a usable BSA Observation), ``derived`` (no usable BSA,
    height and weight under SitePolicy.bsa_formula), ``height-weight-only`` (no usable
    BSA, current plausible height and weight, formula ``none``: the card says so, never
    "missing"), ``unusable`` (anything else: ``problems`` says what).
    """
    policy = ctx.policy
    evidence: list[Evidence] = []
    limit = policy.bsa_max_age_days
    value: dict[str, Any] = {"bsa_m2": None, "max_age_days": limit, "bsa_status": "unusable",
                             "bsa_formula": policy.bsa_formula, "height_cm": None, "weight_kg": None}
    size: dict[str, float | None] = {}
    size_refs: list[str] = []
    size_problems: list[str] = []
    implausible: list[str] = []  # the data named in the card summary
    for key, valueset, units, unit_name, allowed in (
        ("height", vs.BODY_HEIGHT, _TO_CM, "cm", policy.plausible_height_cm),
        ("weight", vs.BODY_WEIGHT, _TO_KG, "kg", policy.plausible_weight_kg),
    ):
        obs, day = _latest(record, ctx, valueset, key, on, size_problems, evidence)
        value[f"{key}_date"] = day.isoformat() if day else None
        size[key] = None
        if obs is not None:
            size[key] = _measure(obs, key, units, unit_name, allowed, size_problems, implausible)
            size_refs.append(reference_of(obs))
        if day is not None and (on - day).days > limit:
            size[key] = None
    value["height_cm"], value["weight_kg"] = size["height"], size["weight"]
    bsa_problems: list[str] = []
    obs, day = _latest(record, ctx, vs.BODY_SURFACE_AREA, "body surface area", on, bsa_problems, evidence)
    value["bsa_date"] = day.isoformat() if day else None
    if obs is not None:
        q = quantity(obs.get("valueQuantity"))
        low, high = plausible_range(policy.plausible_bsa_m2)
        if q is None or q[1].lower().replace(" ", "") not in _M2:
            bsa_problems.append(f"body surface area {reference_of(obs)} is not a value in m²")
        elif not low <= q[0] <= high:
            implausible.append(f"body surface area {fmt(q[0])} m²")
            bsa_problems.append(f"body surface area {fmt(q[0])} m² is implausible (outside "
                                f"{policy.plausible_bsa_m2} m²): correct it in the record")
        elif day is not None and (on - day).days <= limit:
            value["bsa_m2"], value["bsa_status"] = q[0], "recorded"
            value["bsa_references"] = [reference_of(obs)]
    value["implausible"] = implausible
    if value["bsa_m2"] is not None and implausible:
        # A recorded BSA beside an impossible height or weight was likely calculated from it.
        value.update(bsa_m2=None, bsa_status="unusable")
        bsa_problems.append("the body surface area is not used: it may have been calculated from the "
                            "implausible height or weight")
    fresh_size = size["height"] is not None and size["weight"] is not None
    if value["bsa_m2"] is None and fresh_size:
        shown = f"height {fmt(size['height'], 1)} cm and weight {fmt(size['weight'], 1)} kg"
        if policy.bsa_formula == "mosteller":
            bsa = mosteller_m2(size["height"], size["weight"])
            value.update(bsa_m2=bsa, bsa_status="derived", bsa_references=size_refs)
            evidence.append(Evidence(f"Body surface area {fmt(bsa)} m² calculated from {shown} "
                                     "(Mosteller formula, site policy)", None, value["height_date"]))
            bsa_problems = []
        else:
            value["bsa_status"] = "height-weight-only"
            what = "not recorded" if obs is None else "not usable (" + "; ".join(bsa_problems) + ")"
            bsa_problems = [f"body surface area is {what}, but {shown} are recorded: record the BSA (m²); "
                            "decision support does not calculate BSA from height and weight (site policy)"]
    value["problems"] = size_problems + bsa_problems
    return value, evidence


def _short(url: str) -> str:
    return url.rsplit("/", 1)[-1]


def _regimen_name(url: str) -> str:
    """A regimen as a card names it (never its id): whom it is for."""
    return "for patients in CR/CRi" if url.rstrip("/").endswith("CrCri") else "for patients not in CR/CRi"


def _dose_days(schedule: RegimenSchedule, number: int) -> str:
    definition = schedule.cycle(number)
    days = []
    for day in definition.dose_days:
        window = definition.dose_windows.get(day)
        days.append(f"{day} (days {window[0]}-{window[1]})" if window else str(day))
    return ", ".join(days)


def regimen_dose(ctx: FeatureContext, p: Placement, in_cr_cri: bool | None) -> tuple[float | None, str | None, str | None]:
    """(mg/m² the regimen prescribes for dose ``p``, the regimen's url, why it is None).

    Cycle 1 is the same for all patients (NZ: "Cycle 1 is the same for all patients"):
    the not-in-CR regimen. Later cycles follow the regimen for the response: in CR/CRi
    the CR/CRi regimen, else the not-in-CR one (NZ: "if CR or CRi achieved after a cycle
    of treatment subsequent cycles should be given as per regimen for CR or CRi
    achieved"). With the response unknown the dose is known only where both regimens
    agree for that day; otherwise None and the reason says to document the response.
    """
    assert p.cycle_number is not None and p.day_of_cycle is not None
    number, day = p.cycle_number, p.day_of_cycle
    urls = ([vs.REGIMEN_NOT_IN_CR] if number == 1 or in_cr_cri is False
            else [vs.REGIMEN_CR_CRI] if in_cr_cri is True else [vs.REGIMEN_NOT_IN_CR, vs.REGIMEN_CR_CRI])
    missing = [u for u in urls if u not in ctx.regimens]
    if missing:
        return None, None, (f"the regimen {', '.join(missing)} is not loaded, so the mg/m² for cycle {number} "
                            f"day {day} is unknown (knowledge package incomplete: run `cds-service validate`)")
    schedules = [ctx.regimens[u] for u in urls]
    values = {s.mg_per_m2(number, day) for s in schedules}
    if None in values:
        off = next(s for s in schedules if s.mg_per_m2(number, day) is None)
        return None, None, (f"day {day} of cycle {number} is not a dose day of the regimen {_regimen_name(off.url)} "
                            f"(inotuzumab on days {_dose_days(off, number)}), so the mg/m² for it is "
                            "unknown: check the date of the dose")
    if len(values) > 1:
        return None, None, (f"the mg/m² for cycle {number} day {day} depends on the response to the previous "
                            "cycle (CR/CRi or not), which is not recorded: document the response on the INO2 form")
    return values.pop(), (urls[0] if len(urls) == 1 else None), None


@feature("bsa_dose")
def bsa_dose(record: PatientRecord, ctx: FeatureContext) -> FeatureValue:
    """The selected inotuzumab doses with the patient's BSA, the ordered dose per m² and
    the regimen's dose per m² for that cycle and day.

    NZ regimen entry: inotuzumab is dosed in mg/m² per day of the cycle; issue 3: warn
    when the ordered dose differs from BSA × mg/m² for that day by more than the site
    tolerance, or when height/weight/BSA is missing or too old. The mg/m² for the day is
    the regimen's (``regimen_dose``: cycle 1 and not in CR/CRi -> the not-in-CR regimen,
    in CR/CRi -> the CR/CRi regimen; a dose moved inside the regimen's window for a dose
    day counts as that day), never the order's own statement.
    Value: ``doses`` (each: order, date, dose_mg, stated_mg_m2 (the mg/m² the order
    itself states, else None), bsa_m2, mg_per_m2 = dose_mg / bsa_m2, cycle_number,
    day_of_cycle, in_cr_cri, regimen_mg_m2 (the regimen's mg/m² for this dose, None when
    unknown), regimen (short name of that regimen), not_in_cr_mg_m2 (the not-in-CR
    regimen's mg/m² for that cycle and day: what the remission-dosing rule compares
    with)), ``bsa_m2``, dates, ``problems`` (what stops the check), ``tolerance_percent``.
    Always ``met`` when a dose is selected: what cannot be checked (a regimen dose that is
    unknown included) is listed in ``problems`` and is None in the dose, never hidden.
    """
    c = course(record, ctx)
    if not c.selected:
        return FeatureValue("not_met", {"doses": [], "problems": []}, (), "no inotuzumab dose is selected")
    drafts = {d.reference: d for d in ino_draft_doses(record, ctx)}
    on = max(ctx.now.date(), max(p.day for p in c.selected))
    value, evidence = body_measurements(record, ctx, on)
    problems: list[str] = value["problems"]
    response = response_status(record, ctx).value or {}
    in_cr_cri = response.get("in_cr_cri")
    not_in_cr = ctx.regimens.get(vs.REGIMEN_NOT_IN_CR)
    bsa = value["bsa_m2"]
    doses = []
    for p in c.selected:
        dose = drafts[p.reference].dose
        if dose.problem:
            problems.append(f"the dose on {p.day.isoformat()}: {dose.problem}")
        known_cycle = c.problem is None
        regimen_mg_m2 = regimen_url = not_in_cr_mg_m2 = None
        if not known_cycle:
            problems.append(f"the dose on {p.day.isoformat()}: the mg/m² for that day is unknown (the cycle cannot be placed: "
                            f"{c.problem})")
        else:
            regimen_mg_m2, regimen_url, why = regimen_dose(ctx, p, in_cr_cri)
            if why:
                problems.append(f"the dose on {p.day.isoformat()}: {why}")
            if not_in_cr is not None:
                not_in_cr_mg_m2 = not_in_cr.mg_per_m2(p.cycle_number, p.day_of_cycle)
        calculated = round(bsa * regimen_mg_m2, 2) if bsa and regimen_mg_m2 else None
        deviation = (round((dose.mg / (bsa * regimen_mg_m2) - 1) * 100, 2)
                     if calculated and dose.mg is not None else None)
        gross = deviation is not None and abs(deviation) > ctx.policy.bsa_dose_critical_percent
        safe_to_propose = gross and not p.date_assumed and not dose.problem
        doses.append({
            "order": p.reference,
            "date": p.day.isoformat(),
            "calculated_mg": calculated,
            "deviation_percent": deviation,
            "ratio": round(dose.mg / (bsa * regimen_mg_m2), 2) if deviation is not None else None,
            "gross": gross,
            # The replacement dose is offered only for a gross error, and only when the
            # regimen's mg/m² for this cycle/day/response and a usable BSA are both known.
            "proposed_mg": calculated if safe_to_propose else None,
            "dose_mg": dose.mg,
            "stated_mg_m2": dose.mg_per_m2,
            "bsa_m2": bsa,
            "mg_per_m2": round(dose.mg / bsa, 6) if dose.mg is not None and bsa else None,
            "cycle_number": p.cycle_number if known_cycle else None,
            "day_of_cycle": p.day_of_cycle if known_cycle else None,
            "in_cr_cri": in_cr_cri,
            "regimen_mg_m2": regimen_mg_m2,
            "regimen": _short(regimen_url) if regimen_url else None,
            "regimen_name": _regimen_name(regimen_url) if regimen_url else None,
            "not_in_cr_mg_m2": not_in_cr_mg_m2,
        })
    value.update({"doses": doses, "tolerance_percent": ctx.policy.bsa_dose_tolerance_percent,
                  "critical_percent": ctx.policy.bsa_dose_critical_percent,
                  "gross": [d for d in doses if d["gross"]]})
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
    if value["bsa_status"] == "derived":  # supportingInformation: the height and weight used
        shown = tuple(e for e in evidence if e.reference in value["bsa_references"]) + shown
    return FeatureValue("met", bsa, shown)
