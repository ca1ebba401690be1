"""BSA from a recorded measurement only; the ordered dose per m²; what stops the check."""

from __future__ import annotations

import pytest
from _rules_harness import bsa, ctx, cycle_history, draft, form, height, obs, patient, record, weight

from cds_service.features._body import bsa_dose, bsa_m2, full_years, patient_age
from cds_service.features._medications import order_dose

MEASURED = (bsa(value=1.2), height(), weight())


def dose_check(*resources, drafts, **policy):
    return bsa_dose(record(*resources, drafts=drafts), ctx(**policy))


def test_the_ordered_dose_per_m2_is_computed_from_the_recorded_bsa():
    fv = dose_check(*MEASURED, drafts=[draft("ino", mg=0.96, mg_m2=0.8)])
    assert fv.status == "met"
    (dose,) = fv.value["doses"]
    assert dose["mg_per_m2"] == 0.8 and dose["stated_mg_m2"] == 0.8 and dose["bsa_m2"] == 1.2
    assert (dose["cycle_number"], dose["day_of_cycle"]) == (1, 1)
    assert fv.value["problems"] == []


def test_bsa_is_never_computed_from_height_and_weight_by_default():
    fv = dose_check(height(), weight(), drafts=[draft("ino", mg=0.96)])
    assert fv.status == "met" and "body surface area is not recorded" in fv.note  # known: what cannot be checked
    assert fv.value["bsa_m2"] is None and fv.value["doses"][0]["mg_per_m2"] is None
    assert fv.value["bsa_status"] == "height-weight-only"
    # issue 10 f: the problem names the height and weight that are recorded, never "missing"
    (problem,) = fv.value["problems"]
    assert "height 130 cm and weight 27 kg are recorded" in problem and "missing" not in problem
    assert fv.value["doses"][0]["proposed_mg"] is None  # no BSA: no dose is ever proposed


def test_under_the_mosteller_policy_bsa_is_derived_and_said_so():
    fv = dose_check(height(), weight(), drafts=[draft("ino", mg=0.96)], bsa_formula="mosteller")
    # sqrt(130 x 27 / 3600) = sqrt(0.975) = 0.9874 -> 0.99 m2
    assert fv.value["bsa_status"] == "derived" and fv.value["bsa_m2"] == 0.99 and fv.value["problems"] == []
    assert any("calculated from height 130 cm and weight 27 kg (Mosteller formula" in e.display for e in fv.evidence)
    derived = bsa_m2(record(height(), weight(), drafts=[draft("ino", mg=0.96)]), ctx(bsa_formula="mosteller"))
    assert derived.value == 0.99 and len([e for e in derived.evidence if e.reference]) == 2  # height and weight


@pytest.mark.parametrize(("measure", "why"), [
    (height(value=1.3), "height 1.3 cm is implausible"),
    (weight(value=2700), "weight 2700 kg is implausible"),
    (weight(value=0), "weight 0 kg is implausible"),
])
def test_physically_impossible_height_or_weight_is_never_used(measure, why):
    others = [m for m in (height(), weight()) if m["code"] != measure["code"]]
    fv = dose_check(measure, *others, drafts=[draft("ino", mg=0.96)], bsa_formula="mosteller")
    assert fv.value["bsa_m2"] is None and any(why in p for p in fv.value["problems"])


@pytest.mark.parametrize("value", [0.01, 9.5, -1.2])
def test_a_physically_impossible_bsa_is_never_used(value):
    fv = dose_check(bsa(value=value), height(), weight(), drafts=[draft("ino", mg=0.96, mg_m2=0.8)])
    assert fv.value["bsa_m2"] is None
    assert any("is implausible" in p for p in fv.value["problems"])


@pytest.mark.parametrize(("age", "stale"), [(7, False), (8, True)])
def test_measurements_older_than_the_site_limit_are_problems(age, stale):
    fv = dose_check(bsa(value=1.2, offset=-age), height(offset=-age), weight(offset=-age),
                    drafts=[draft("ino", mg=0.96, mg_m2=0.8)])
    assert bool(fv.value["problems"]) is stale
    assert (fv.value["bsa_m2"] is None) is stale


def test_the_age_limit_counts_to_the_day_of_the_dose():
    fv = dose_check(*MEASURED, drafts=[draft("ino", on=7, mg=0.96, mg_m2=0.8)])  # measured 8 days before
    assert len(fv.value["problems"]) == 3


def test_the_age_limit_is_site_policy():
    fv = dose_check(bsa(value=1.2, offset=-10), height(offset=-10), weight(offset=-10),
                    drafts=[draft("ino", mg=0.96)], bsa_max_age_days=14)
    assert fv.value["problems"] == [] and fv.value["bsa_m2"] == 1.2


def test_missing_height_or_weight_is_a_problem():
    fv = dose_check(bsa(value=1.2), drafts=[draft("ino", mg=0.96, mg_m2=0.8)])
    assert sorted(fv.value["problems"]) == ["no height recorded", "no weight recorded"]


def test_a_bsa_not_in_m2_is_not_used():
    fv = dose_check(obs("bsa", "8277-6", 12000, "cm2"), height(), weight(), drafts=[draft("ino", mg=0.96)])
    assert fv.value["bsa_m2"] is None


def test_an_order_without_a_dose_in_mg_is_a_problem():
    fv = dose_check(*MEASURED, drafts=[draft("ino", mg_m2=0.8)])
    assert any("no dose in mg" in p for p in fv.value["problems"])


def test_day_1_of_a_later_cycle_without_mg_m2_needs_the_response():
    history = cycle_history(1, -21)
    fv = dose_check(*MEASURED, *history, drafts=[draft("ino", mg=0.96)])
    assert any("response" in p for p in fv.value["problems"])
    fv = dose_check(*MEASURED, *history, form({"response-status": "CR"}), drafts=[draft("ino", mg=0.6)])
    assert fv.value["problems"] == []


def test_micrograms_are_read_as_mg():
    order = draft("ino")
    order["dosageInstruction"][0]["doseAndRate"] = [{"doseQuantity": {"value": 960, "unit": "microgram", "code": "ug"}}]
    assert order_dose(order).mg == 0.96


def test_an_unreadable_dose_unit_is_named():
    order = draft("ino")
    order["dosageInstruction"][0]["doseAndRate"] = [{"doseQuantity": {"value": 1, "unit": "vial"}}]
    dose = order_dose(order)
    assert dose.mg is None and "vial" in dose.problem


def test_bsa_m2_gives_the_bsa_for_apply_or_unknown():
    assert bsa_m2(record(bsa(value=0.96)), ctx()).value == 0.96
    fv = bsa_m2(record(bsa(value=0.96, offset=-9)), ctx())
    assert fv.status == "unknown" and "BSA unknown" in fv.note


# -- age --------------------------------------------------------------------------------------------


def test_full_years_counts_birthdays():
    from datetime import date

    assert full_years(date(2008, 11, 24), date(2026, 11, 23)) == 17
    assert full_years(date(2008, 11, 23), date(2026, 11, 23)) == 18
    assert full_years(date(2012, 2, 29), date(2026, 2, 28)) == 13


def test_patient_age_is_unknown_without_a_birth_date():
    assert patient_age(record(pt=patient(None)), ctx()).status == "unknown"
    fv = patient_age(record(pt=patient("2010-06")), ctx())
    assert fv.value["years"] == 16


def test_height_in_metres_and_weight_in_pounds_are_converted_before_the_plausibility_check():
    fv = dose_check(obs("height", "8302-2", 1.3, "m"), obs("weight", "29463-7", 59.525, "[lb_av]"),
                    drafts=[draft("ino", mg=0.96)], bsa_formula="mosteller")
    # 1.3 m = 130 cm, 59.525 lb = 27.0 kg -> sqrt(130 x 27 / 3600) = 0.99 m2
    assert fv.value["height_cm"] == 130 and fv.value["weight_kg"] == pytest.approx(27.0, abs=0.001)
    assert fv.value["bsa_m2"] == 0.99


def test_a_future_birth_date_or_an_impossible_age_is_unknown_never_a_child():
    future = patient_age(record(pt={"resourceType": "Patient", "id": "p1", "birthDate": "2031-01-01"}), ctx())
    assert future.status == "unknown" and future.value["implausible"] == "it is in the future"
    placeholder = patient_age(record(pt={"resourceType": "Patient", "id": "p1", "birthDate": "1900-01-01"}), ctx())
    assert placeholder.status == "unknown" and "above the plausible maximum of 120" in placeholder.note
