"""Systemic azoles with inotuzumab (NZ: withheld, risk of SOS); other SACT (INO2 monotherapy)."""

from __future__ import annotations

import pytest
from _rules_harness import ctx, draft, given, order, record, statement

from cds_service.features._conflicts import azole_conflict, other_sact
from cds_service.record import DataNote

INO = draft("ino", mg=0.8)


def conflict(rec, **policy):
    return azole_conflict(rec, ctx(**policy))


def test_inotuzumab_selected_with_an_azole_drafted_conflicts_and_names_the_draft():
    fv = conflict(record(drafts=[INO, draft("flu", "fluconazole")]))
    assert fv.status == "met"
    assert fv.value["conflict"] is True
    assert fv.value["azole_drafts"] == ["MedicationRequest/flu"]


def test_inotuzumab_selected_with_an_active_azole_order_conflicts():
    fv = conflict(record(order("pos", "posaconazole"), drafts=[INO]))
    assert fv.value["conflict"] is True
    assert fv.value["azole_active"] == ["MedicationRequest/pos"]


def test_an_active_azole_statement_or_a_recent_administration_counts():
    assert conflict(record(statement("vor", "voriconazole"), drafts=[INO])).value["conflict"] is True
    assert conflict(record(given("vor-given", -3, "voriconazole"), drafts=[INO])).value["conflict"] is True


def test_an_administration_older_than_the_window_is_not_active():
    fv = conflict(record(given("vor-given", -8, "voriconazole"), drafts=[INO]))
    assert fv.value["conflict"] is False
    fv = conflict(record(given("vor-given", -8, "voriconazole"), drafts=[INO]), recent_administration_days=8)
    assert fv.value["conflict"] is True


def test_a_stopped_azole_does_not_conflict():
    fv = conflict(record(order("flu", "fluconazole", status="stopped"), drafts=[INO]))
    assert fv.status == "not_met"


def test_a_topical_azole_is_not_systemic():
    fv = conflict(record(drafts=[INO, draft("cream", "miconazole", route="topical")]))
    assert fv.value["conflict"] is False


@pytest.mark.parametrize(("days_ago", "expected"), [(1, True), (56, True), (57, False), (120, False)])
def test_an_azole_drafted_after_inotuzumab_warns_within_56_days_of_the_last_dose(days_ago, expected):
    rec = record(given("ino-last", -days_ago), drafts=[draft("flu", "fluconazole")])
    fv = conflict(rec)
    assert fv.value["conflict"] is expected
    assert fv.value["days_since_last_ino_dose"] == days_ago


def test_the_window_counts_from_the_azole_start_date_when_given():
    rec = record(given("ino-last", -50), drafts=[draft("flu", "fluconazole", on=10)])
    assert conflict(rec).value["conflict"] is False  # 60 days after the last dose


def test_the_window_is_site_policy():
    rec = record(given("ino-last", -60), drafts=[draft("flu", "fluconazole")])
    assert conflict(rec).value["conflict"] is False
    assert conflict(rec, azole_window_days=90).value["conflict"] is True


def test_an_azole_selected_while_inotuzumab_is_drafted_conflicts():
    rec = record(drafts=[INO, draft("flu", "fluconazole")], selections=["MedicationRequest/flu"])
    assert conflict(rec).value["kinds"] == ["azole-with-inotuzumab-draft"]


def test_nothing_relevant_selected_is_not_met():
    rec = record(drafts=[draft("lor", "loratadine")])
    assert conflict(rec).status == "not_met"


def test_missing_medication_data_is_unknown_not_no_conflict():
    rec = record(drafts=[INO], notes=[DataNote("missing", "medicationRequests", "prefetch 'medicationRequests' was not provided")])
    fv = conflict(rec)
    assert fv.status == "unknown"
    assert fv.value is None
    assert "azole" in fv.note.lower()


def test_an_azole_selected_without_administration_history_is_unknown():
    rec = record(drafts=[draft("flu", "fluconazole")],
                 notes=[DataNote("error", "medicationAdministrations", "'medicationAdministrations' returned an error")])
    assert conflict(rec).status == "unknown"


# -- monotherapy ---------------------------------------------------------------------------------


def test_another_sact_drafted_with_inotuzumab_conflicts():
    fv = other_sact(record(drafts=[INO, draft("bli", "blinatumomab")]), ctx())
    assert fv.status == "met"
    assert fv.value["drafted"] == ["MedicationRequest/bli"]


def test_another_sact_selected_during_the_inotuzumab_cycle_conflicts():
    rec = record(given("ino-d1", -3), drafts=[draft("vcr", "vincristine")])
    fv = other_sact(rec, ctx())
    assert fv.value["conflict"] is True
    assert fv.value["ino_course_running"] is True


def test_another_sact_after_the_inotuzumab_cycle_has_ended_does_not_conflict():
    rec = record(given("ino-d1", -21), drafts=[draft("vcr", "vincristine")])  # cycle 1 is 21 days
    assert other_sact(rec, ctx()).value["conflict"] is False


def test_premedication_is_not_another_anti_cancer_agent():
    rec = record(drafts=[INO, draft("dex", "dexamethasone"), draft("par", "paracetamol")])
    assert other_sact(rec, ctx()).value["conflict"] is False
