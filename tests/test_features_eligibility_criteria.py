"""INO2 criteria: what the record decides, what the form decides, and never met by default."""

from __future__ import annotations

import pytest
from _rules_harness import (
    ALL_ATTESTED,
    b_all,
    ctx,
    draft,
    form,
    order,
    patient,
    record,
    score,
    statement,
)

from cds_service.features._eligibility import ino2_criteria
from cds_service.knowledge.terms import CRITERION_CODES


def criteria(rec, **policy):
    value = ino2_criteria(rec, ctx(**policy)).value
    return {c["code"]: c for c in value["criteria"]}, value


def status(rec, code, **policy):
    return criteria(rec, **policy)[0][code]["status"]


INO = draft("ino", mg=0.8)


def test_every_criterion_is_listed_once_in_form_order():
    found, _ = criteria(record(drafts=[INO]))
    assert list(found) == list(CRITERION_CODES)


def test_without_any_data_no_criterion_is_met():
    rec = record(pt=patient(birth=None), drafts=[INO], notes=())
    found, value = criteria(rec)
    # monotherapy is the one criterion the session itself can show (nothing else drafted)
    assert {c["status"] for code, c in found.items() if code != "monotherapy"} == {"unknown"}
    assert all(c["reason"] for c in found.values())
    assert value["unknown_count"] >= 14


def test_open_lists_unmet_and_unknown_criteria_only():
    rec = record(b_all(), score("ps", "ECOG", 1), form(ALL_ATTESTED), drafts=[INO])
    found, value = criteria(rec)
    assert value["open"] == []
    assert value["unmet_count"] == value["unknown_count"] == 0


# -- child ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("birth", "expected"),
    [
        ("2008-11-24", "met"),    # 17 years, turns 18 tomorrow
        ("2008-11-23", "unmet"),  # 18th birthday today
        ("2000-01-01", "unmet"),
        ("2016-05-01", "met"),
    ],
)
def test_child_is_judged_by_age_against_the_site_limit(birth, expected):
    assert status(record(pt=patient(birth), drafts=[INO]), "child") == expected


def test_an_adult_is_pointed_to_the_adult_form():
    found, _ = criteria(record(pt=patient("2005-01-01"), drafts=[INO]))
    assert "INO1" in found["child"]["reason"]


def test_the_child_age_limit_is_site_policy():
    rec = record(pt=patient("2009-01-01"), drafts=[INO])  # 17
    assert status(rec, "child") == "met"
    assert status(rec, "child", child_age_limit_years=16) == "unmet"


def test_a_partial_birth_date_straddling_the_limit_is_not_decided_by_the_record():
    rec = record(pt=patient("2008"), drafts=[INO])  # 17 or 18 on 2026-11-23
    assert status(rec, "child") == "unknown"


def test_without_a_birth_date_the_form_decides_and_absence_is_unknown():
    assert status(record(pt=patient(None), drafts=[INO]), "child") == "unknown"
    assert status(record(form({"child": True}), pt=patient(None), drafts=[INO]), "child") == "met"


def test_the_record_wins_over_an_attestation_for_age():
    rec = record(form({"child": True}), pt=patient("2001-01-01"), drafts=[INO])
    assert status(rec, "child") == "unmet"


# -- performance status ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scale", "value", "expected"),
    [
        ("ECOG", 0, "met"), ("ECOG", 2, "met"), ("ECOG", 3, "unmet"), ("ECOG", 4, "unmet"),
        ("Lansky", 100, "met"), ("Lansky", 70, "met"), ("Lansky", 60, "unknown"),
        ("Lansky", 50, "unknown"), ("Lansky", 40, "unmet"),
        ("Karnofsky", 70, "met"), ("Karnofsky", 60, "unknown"), ("Karnofsky", 30, "unmet"),
    ],
)
def test_performance_status_boundaries(scale, value, expected):
    assert status(record(score("ps", scale, value), drafts=[INO]), "performance-status") == expected


def test_lansky_between_the_mappings_stays_unknown_even_when_attested():
    rec = record(score("ps", "Lansky", 60), form({"performance-status": True}), drafts=[INO])
    found, _ = criteria(rec)
    assert found["performance-status"]["status"] == "unknown"
    assert "mapping uncertain" in found["performance-status"]["reason"]


def test_the_newest_score_on_any_scale_is_used():
    rec = record(score("old", "ECOG", 3, offset=-30), score("new", "Lansky", 80, offset=-2), drafts=[INO])
    assert status(rec, "performance-status") == "met"


def test_the_lansky_thresholds_are_site_policy():
    rec = record(score("ps", "Lansky", 60), drafts=[INO])
    assert status(rec, "performance-status", lansky_karnofsky_met_min=60) == "met"


def test_a_coded_score_that_is_not_a_number_is_unknown_not_met():
    ps = score("ps", "ECOG", 1)
    del ps["valueInteger"]
    ps["valueCodeableConcept"] = {"coding": [{"system": "http://loinc.org", "code": "LA9623-5"}]}
    assert status(record(ps, drafts=[INO]), "performance-status") == "unknown"


def test_no_score_and_no_form_is_unknown_and_the_form_can_decide():
    assert status(record(drafts=[INO]), "performance-status") == "unknown"
    assert status(record(form({"performance-status": True}), drafts=[INO]), "performance-status") == "met"


def test_a_score_that_meets_but_a_form_that_says_not_met_is_unmet():
    rec = record(score("ps", "ECOG", 1), form({"performance-status": False}), drafts=[INO])
    assert status(rec, "performance-status") == "unmet"


# -- Ph status and TKIs ------------------------------------------------------------------------


def test_imatinib_alone_is_unmet_even_if_attested():
    rec = record(statement("ima", "imatinib", "completed"), form({"ph-status-tki": True}), drafts=[INO])
    found, _ = criteria(rec)
    assert found["ph-status-tki"]["status"] == "unmet"
    assert "second or third generation" in found["ph-status-tki"]["reason"]


def test_a_second_or_third_generation_tki_is_met():
    for name in ("dasatinib", "ponatinib"):
        rec = record(statement("ima", "imatinib", "completed"), statement("tki", name, "completed"), drafts=[INO])
        assert status(rec, "ph-status-tki") == "met"


@pytest.mark.parametrize(("policy", "expected"), [("unknown", "unknown"), ("yes", "met"), ("no", "unmet")])
def test_asciminib_alone_follows_site_policy(policy, expected):
    rec = record(statement("asc", "asciminib", "completed"), form({"ph-status-tki": True}), drafts=[INO])
    assert status(rec, "ph-status-tki", asciminib_counts_for_ino2=policy) == expected


def test_no_tki_leaves_ph_status_to_the_form():
    assert status(record(drafts=[INO]), "ph-status-tki") == "unknown"
    assert status(record(form({"ph-status-tki": True}), drafts=[INO]), "ph-status-tki") == "met"
    assert status(record(form({"ph-status-tki": False}), drafts=[INO]), "ph-status-tki") == "unmet"


# -- diagnosis, chemotherapy, monotherapy --------------------------------------------------------


def test_relapsed_refractory_cd22_all_needs_the_diagnosis_and_the_attestation():
    assert status(record(b_all(), drafts=[INO]), "rr-cd22-bcp-all") == "unknown"
    assert status(record(form({"rr-cd22-bcp-all": True}), drafts=[INO]), "rr-cd22-bcp-all") == "unknown"
    assert status(record(b_all(), form({"rr-cd22-bcp-all": True}), drafts=[INO]), "rr-cd22-bcp-all") == "met"
    assert status(record(b_all(), form({"rr-cd22-bcp-all": False}), drafts=[INO]), "rr-cd22-bcp-all") == "unmet"


def test_prior_intensive_chemotherapy_is_not_inferred_from_agents_given():
    rec = record(statement("vcr", "vincristine", "completed"), statement("dnr", "daunorubicin", "completed"),
                 drafts=[INO])
    assert status(rec, "prior-intensive-chemo") == "unknown"
    rec = record(form({"prior-intensive-chemo": True}), drafts=[INO])
    assert status(rec, "prior-intensive-chemo") == "met"


def test_another_anti_cancer_agent_drafted_makes_monotherapy_unmet():
    rec = record(form({"monotherapy": True}), drafts=[INO, draft("vcr", "vincristine")])
    assert status(rec, "monotherapy") == "unmet"


def test_an_active_tki_order_makes_monotherapy_unmet():
    assert status(record(order("das", "dasatinib"), drafts=[INO]), "monotherapy") == "unmet"


def test_premedication_does_not_count_against_monotherapy():
    rec = record(drafts=[INO, draft("dex", "dexamethasone"), draft("lor", "loratadine")])
    assert status(rec, "monotherapy") == "met"


# -- attestations --------------------------------------------------------------------------------


def test_attestation_criteria_follow_the_latest_completed_form():
    older = form({"mdt-discussion": False}, offset=-10, rid="old")
    newer = form({"mdt-discussion": True}, offset=-1, rid="new")
    in_progress = form({"mdt-discussion": False}, offset=0, status="in-progress", rid="draft-form")
    assert status(record(older, newer, in_progress, drafts=[INO]), "mdt-discussion") == "met"


def test_an_unanswered_item_is_unknown_with_what_it_asks():
    found, _ = criteria(record(form({"child": True}), drafts=[INO]))
    assert found["puberty-dosing"]["status"] == "unknown"
    assert "Pediatr Blood Cancer 2014" in found["puberty-dosing"]["reason"]


# -- which unknown criteria an answer on the INO2 form can settle (knowledge 0.2.1, HAZ-031) ------


UNANSWERED_ELSE = {code: True for code in ALL_ATTESTED if code not in ("ph-status-tki", "performance-status", "child",
                                                                          "rr-cd22-bcp-all", "mdt-discussion")}


@pytest.mark.parametrize(
    ("code", "resources", "pt", "settles"),
    [
        # the record or a site policy decides, whatever the form would say
        ("ph-status-tki", [statement("asc", "asciminib", "completed")], None, False),
        ("performance-status", [score("ps", "Lansky", 60)], None, False),
        ("performance-status", [score("ps", "Karnofsky", 50)], None, False),
        ("child", [], patient("2027-06-01"), False),  # born in the future: correct the record
        # the record holds nothing that decides: the form's answer does
        ("ph-status-tki", [], None, True),
        ("performance-status", [], None, True),  # no score recorded
        ("performance-status", [score("ps", "ECOG", 7)], None, True),  # not a valid ECOG score
        ("child", [], patient(None), True),  # no birth date
        ("mdt-discussion", [], None, True),
        ("rr-cd22-bcp-all", [b_all()], None, True),  # diagnosis coded; relapsed/refractory and CD22 are not
        ("rr-cd22-bcp-all", [], None, True),  # a "no" on the form makes it unmet
    ],
)
def test_an_unknown_criterion_the_form_leaves_unanswered_is_settleable_only_where_the_form_decides(
        code, resources, pt, settles):
    rec = record(*resources, form(UNANSWERED_ELSE), pt=pt, drafts=[INO])
    found, _ = criteria(rec)
    assert found[code]["status"] == "unknown", found[code]
    assert found[code]["form_can_settle"] is settles
    # behaviour, not bookkeeping: answer it on the form and see whether it is still unknown
    after = {criteria(record(*resources, form({**UNANSWERED_ELSE, code: answer}), pt=pt, drafts=[INO]))[0][code]["status"]
             for answer in (True, False)}
    assert (after != {"unknown"}) is settles, after


def test_a_criterion_known_or_answered_on_the_form_is_never_settleable():
    rec = record(b_all(), score("ps", "ECOG", 1), statement("asc", "asciminib", "completed"),
                 form({**ALL_ATTESTED, "mdt-discussion": False}), drafts=[INO])
    found, _ = criteria(rec)
    assert found["ph-status-tki"]["status"] == "unknown"  # answered yes, the policy still decides
    assert found["mdt-discussion"]["status"] == "unmet"
    assert not any(c["form_can_settle"] for c in found.values())
    found, _ = criteria(record(b_all(), form({"rr-cd22-bcp-all": True}), drafts=[INO]))
    assert found["rr-cd22-bcp-all"]["status"] == "met" and found["rr-cd22-bcp-all"]["form_can_settle"] is False
    # no B-ALL recorded, but the form attests it: record the diagnosis, the form has spoken
    found, _ = criteria(record(form({"rr-cd22-bcp-all": True}), drafts=[INO]))
    assert found["rr-cd22-bcp-all"]["status"] == "unknown" and found["rr-cd22-bcp-all"]["form_can_settle"] is False


def test_without_a_completed_form_every_criterion_the_form_decides_is_settleable():
    found, _ = criteria(record(statement("asc", "asciminib", "completed"), drafts=[INO]))
    settleable = {code for code, c in found.items() if c["form_can_settle"]}
    assert "ph-status-tki" not in settleable  # the site policy decides asciminib
    assert {"mdt-discussion", "unlicensed-policy", "prior-intensive-chemo", "rr-cd22-bcp-all"} <= settleable
