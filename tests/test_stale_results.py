"""HAZ-006: a result counts as taken "before this dose" only if it is dated after the last
inotuzumab dose and is no older than the site limit (``SitePolicy.lab_max_age_days``,
default 7 days). The label asks for liver tests and a full blood count before each dose
(shared/reference/clinical.md §1.3).

Whole patient records (the generated rule scenarios) with their liver tests or counts
moved back in time, sent in ``prefetch`` and through the FHIR-server fallback. An old
*normal* result must not silence a check: the check is unknown and the card names the
result, its date and says to repeat it. An old *abnormal* liver result still holds the dose.
"""

from __future__ import annotations

import copy
from datetime import timedelta
from pathlib import Path

import pytest
from _rules_harness import alt, anc, ast, bilirubin, ctx, draft, given, platelets, record
from _whole_record import SCENARIOS, call, cards_by_rule, resolved, text

from cds_service.features._labs import blood_counts, liver_function
from cds_service.replay.dates import format_datetime
from cds_service.replay.scenario import ResolvedScenario

#: cycle 1 day 1, no dose given yet; liver tests and counts from yesterday
FIRST_DOSE = SCENARIOS / "supportive-care-cycle-1-day-1-info.json"
#: cycle 2 day 1 after doses 21, 14 and 7 days ago; bilirubin 1.51 x ULN and AST 2.6 x ULN yesterday
HOLD = SCENARIOS / "liver-function-hold-bilirubin-1.51-ast-2.6-critical.json"
#: a new cycle after doses 63, 56 and 49 days ago (a treatment break); counts from yesterday
AFTER_BREAK = SCENARIOS / "treatment-break-42-days-beyond-no-card.json"
LIVER = ("lab-bilirubin", "lab-ast", "lab-alt", "lab-alp")
COUNTS = ("lab-anc", "lab-plt")
PATHS = ["prefetch", "fallback"]


def moved(path: Path, ids: tuple[str, ...], days_ago: int) -> ResolvedScenario:
    """The scenario with the results ``ids`` dated ``days_ago`` days before its time."""
    res = copy.deepcopy(resolved(path))
    when = format_datetime(res.now - timedelta(days=days_ago))
    for resource in res.record:
        if resource.get("id") in ids:
            resource["effectiveDateTime"] = when
    return res


def day(res: ResolvedScenario, days_ago: int) -> str:
    return (res.now - timedelta(days=days_ago)).date().isoformat()


@pytest.mark.parametrize("path", PATHS)
def test_month_old_normal_liver_tests_before_a_first_dose_are_not_read_as_current(path: str) -> None:
    res = moved(FIRST_DOSE, LIVER, 30)
    cards = cards_by_rule(call(res, path=path))
    assert "liver-function-hold" not in cards
    unavailable = "\n".join(text(c) for c in cards["data-unavailable"])
    assert "Hold for bilirubin and AST/ALT" in unavailable  # the check not run is named
    assert f"Total bilirubin 8 umol/L (ULN 21: 0.38 × ULN) on {day(res, 30)}: not current" in unavailable
    assert f"not current (30 days old on the day of the dose, {day(res, 0)}; site limit 7 days)" in unavailable
    assert "repeat it before this dose" in unavailable


@pytest.mark.parametrize(("days_ago", "current"), [(7, True), (8, False)])
def test_the_age_limit_counts_to_the_day_of_the_dose(days_ago: int, current: bool) -> None:
    res = moved(FIRST_DOSE, LIVER, days_ago)
    cards = cards_by_rule(call(res, path="prefetch"))
    shown = "\n".join(text(c) for c in cards.get("data-unavailable", ()))
    assert ("not current" in shown) is not current
    assert ("Hold for bilirubin and AST/ALT" in shown) is not current


@pytest.mark.parametrize("path", PATHS)
def test_normal_liver_tests_from_before_the_last_dose_are_not_read_as_current(path: str) -> None:
    res = moved(HOLD, LIVER, 9)  # the last dose was 7 days ago
    for resource in res.record:  # and they were normal then
        if resource.get("id") in ("lab-bilirubin", "lab-ast"):
            resource["valueQuantity"]["value"] = 8 if resource["id"] == "lab-bilirubin" else 30
    cards = cards_by_rule(call(res, path=path))
    assert "liver-function-hold" not in cards
    unavailable = "\n".join(text(c) for c in cards["data-unavailable"])
    assert f"not current (taken before the last inotuzumab dose on {day(res, 7)})" in unavailable


@pytest.mark.parametrize("path", PATHS)
def test_old_abnormal_liver_tests_still_hold_the_dose_until_repeated(path: str) -> None:
    res = moved(HOLD, LIVER, 9)
    cards = cards_by_rule(call(res, path=path))
    (hold,) = cards["liver-function-hold"]
    assert hold["indicator"] == "critical"
    assert f"Total bilirubin 31.71 umol/L (ULN 21: 1.51 × ULN) on {day(res, 9)}: not current" in text(hold)
    assert "repeat it before this dose" in text(hold)


def test_the_site_limit_is_the_policy_in_force() -> None:
    """lab_max_age_days decides: 10-day-old results are current under a 14-day policy."""
    rec = record(bilirubin("b", 8, offset=-10), ast("a", 30, offset=-10), alt("l", 25, offset=-10),
                 drafts=[draft("ino", mg=0.8)])
    assert liver_function(rec, ctx()).value["bilirubin_x_uln"] is None
    assert liver_function(rec, ctx()).value["latest_x_uln"]["bilirubin"] == pytest.approx(0.380952)
    assert liver_function(rec, ctx(lab_max_age_days=14)).value["bilirubin_x_uln"] == pytest.approx(0.380952)


def test_a_count_older_than_the_site_limit_is_not_a_current_count() -> None:
    rec = record(given("d1", -60), anc("n", 0.5, offset=-20), platelets("p", 30, offset=-20),
                 drafts=[draft("ino", mg=0.8)])
    fv = blood_counts(rec, ctx())
    assert fv.value["anc"] is None and fv.value["platelets"] is None
    assert any("20 days old" in p and "repeat the full blood count" in p for p in fv.value["problems"])
    assert blood_counts(rec, ctx(lab_max_age_days=14)).value["anc"] is None
    fresh = blood_counts(record(given("d1", -60), anc("n", 0.5, offset=-6), platelets("p", 30, offset=-6),
                                drafts=[draft("ino", mg=0.8)]), ctx())
    assert fresh.value["anc"] == 0.5


@pytest.mark.parametrize("path", PATHS)
def test_old_normal_counts_at_a_new_cycle_do_not_pass_the_blood_count_check(path: str) -> None:
    res = moved(AFTER_BREAK, COUNTS, 20)  # after the last dose (49 days ago) but 20 days old
    cards = cards_by_rule(call(res, path=path))
    assert "blood-counts" not in cards
    unavailable = "\n".join(text(c) for c in cards["data-unavailable"])
    assert f"Neutrophils (ANC) on {day(res, 20)}: not current (20 days old" in unavailable
    assert "repeat the full blood count before this dose" in unavailable
