"""Cycles from the administration history; day of cycle, interval and treatment break."""

from __future__ import annotations

import pytest
from _rules_harness import ctx, cycle_history, draft, given, order, record

from cds_service.features._course import cycle, dose_schedule, treatment_break
from cds_service.record import DataNote


def placed(*resources, drafts=None, selections=None):
    drafts = drafts if drafts is not None else [draft("ino", mg=0.8)]
    return cycle(record(*resources, drafts=drafts, selections=selections), ctx())


def test_a_first_dose_is_cycle_1_day_1():
    fv = placed()
    assert fv.status == "met"
    assert (fv.value["number"], fv.value["day_of_cycle"], fv.value["new_cycle"]) == (1, 1, True)
    assert fv.value["days_since_previous"] is None and fv.value["cycles_given"] == 0


def test_the_day_8_dose_is_day_8_of_the_same_cycle():
    fv = placed(given("d1", -7))
    assert (fv.value["number"], fv.value["day_of_cycle"], fv.value["days_since_previous"]) == (1, 8, 7)


def test_after_three_doses_and_21_days_the_next_dose_opens_cycle_2():
    fv = placed(*cycle_history(1, -21))
    assert (fv.value["number"], fv.value["day_of_cycle"], fv.value["expected_length"]) == (2, 1, 28)


def test_a_cycle_1_extended_to_28_days_still_gives_cycle_2():
    fv = placed(*cycle_history(1, -28))
    assert (fv.value["number"], fv.value["day_of_cycle"]) == (2, 1)


def test_a_fourth_dose_in_the_window_of_a_cycle_opens_the_next_cycle():
    fv = placed(*cycle_history(1, -18))  # day 19 of cycle 1 after days 1, 8, 15
    assert (fv.value["number"], fv.value["day_of_cycle"], fv.value["days_since_previous"]) == (2, 1, 4)


def test_a_skipped_day_8_dose_keeps_the_day_15_dose_in_the_cycle():
    fv = placed(given("d1", -14))
    assert (fv.value["number"], fv.value["day_of_cycle"]) == (1, 15)


def test_later_cycles_are_28_days():
    fv = placed(*cycle_history(2, -27, days=(1, 8)))  # day 28 of cycle 2, day 15 not given
    assert (fv.value["number"], fv.value["day_of_cycle"]) == (2, 28)
    fv = placed(*cycle_history(2, -28, days=(1, 8)))
    assert (fv.value["number"], fv.value["day_of_cycle"]) == (3, 1)


def test_six_cycles_given_makes_the_next_one_cycle_7():
    fv = placed(*cycle_history(6, -28))
    assert fv.value["number"] == 7 and fv.value["cycles_given"] == 6


def test_several_drafts_are_placed_in_date_order_each_after_the_earlier_ones():
    drafts = [draft("d15", on=14, mg=0.5), draft("d1", on=0, mg=0.8), draft("d8", on=7, mg=0.5)]
    fv = placed(*cycle_history(1, -21), drafts=drafts)
    days = [(d["order"], d["cycle_number"], d["day_of_cycle"]) for d in fv.value["doses"]]
    assert days == [("MedicationRequest/d1", 2, 1), ("MedicationRequest/d8", 2, 8), ("MedicationRequest/d15", 2, 15)]


def test_only_selected_drafts_are_reported():
    drafts = [draft("d1", on=0, mg=0.8), draft("d8", on=7, mg=0.5)]
    fv = placed(drafts=drafts, selections=["MedicationRequest/d8"])
    assert [d["order"] for d in fv.value["doses"]] == ["MedicationRequest/d8"]
    assert fv.value["day_of_cycle"] == 8


def test_an_order_without_a_date_is_taken_as_today_and_says_so():
    fv = placed(given("d1", -7), drafts=[draft("ino", on=None, mg=0.5)])
    assert fv.value["day_of_cycle"] == 8
    assert fv.value["doses"][0]["date_assumed"] is True
    # says what is missing (a planned day), never "no date" (an order always has some date)
    assert any("the order gives no planned day: today is assumed" in e.display for e in fv.evidence)


def test_void_and_undated_administrations_are_not_counted():
    not_done = given("nd", -7, status="not-done")
    undated = given("ud", -7)
    del undated["effectiveDateTime"]
    fv = placed(not_done, undated)
    assert fv.status == "unknown"  # an undated administration makes the count unreliable
    assert "no date" in fv.note
    fv = placed(not_done)
    assert fv.value["number"] == 1 and fv.value["day_of_cycle"] == 1


def test_unreadable_administrations_make_the_cycle_unknown():
    rec = record(drafts=[draft("ino", mg=0.8)],
                 notes=[DataNote("missing", "medicationAdministrations", "prefetch 'medicationAdministrations' was not provided")])
    fv = cycle(rec, ctx())
    assert fv.status == "unknown" and fv.value is None


def test_nothing_selected_is_not_met():
    fv = cycle(record(order("old", "inotuzumab ozogamicin")), ctx())
    assert fv.status == "not_met"


# -- dose schedule ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("days_after_day_1", "day", "interval"), [(4, 5, 4), (5, 6, 5), (9, 10, 9), (10, 11, 10)])
def test_dose_schedule_reports_day_of_cycle_and_interval(days_after_day_1, day, interval):
    fv = dose_schedule(record(given("d1", -days_after_day_1), drafts=[draft("ino", mg=0.5)]), ctx())
    (dose,) = fv.value["doses"]
    assert (dose["day_of_cycle"], dose["days_since_previous"]) == (day, interval)


def test_dose_schedule_is_unknown_without_the_administrations():
    rec = record(drafts=[draft("ino", mg=0.5)],
                 notes=[DataNote("error", "medicationAdministrations", "'medicationAdministrations' returned an error")])
    assert dose_schedule(rec, ctx()).status == "unknown"


# -- treatment break ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("cycle_start", "beyond"), [(-21, 0), (-63, 42), (-64, 43)])
def test_days_beyond_the_expected_cycle_length_after_cycle_1(cycle_start, beyond):
    fv = treatment_break(record(*cycle_history(1, cycle_start), drafts=[draft("ino", mg=0.8)]), ctx())
    assert fv.value["doses"][0]["days_beyond_expected"] == beyond
    assert fv.value["doses"][0]["previous_cycle_length"] == 21


def test_days_beyond_after_a_28_day_cycle():
    fv = treatment_break(record(*cycle_history(2, -71), drafts=[draft("ino", mg=0.8)]), ctx())
    assert fv.value["doses"][0]["days_beyond_expected"] == 43


def test_a_first_dose_or_a_dose_within_a_cycle_has_no_break():
    assert treatment_break(record(drafts=[draft("ino", mg=0.8)]), ctx()).value["doses"] == []
    assert treatment_break(record(given("d1", -7), drafts=[draft("ino", mg=0.5)]), ctx()).value["doses"] == []
