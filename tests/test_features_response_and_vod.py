"""Response, MRD and HSCT from the INO2 form and the record; VOD/SOS risk factors."""

from __future__ import annotations

from _rules_harness import (
    condition,
    ctx,
    cycle_history,
    draft,
    form,
    given,
    normal_liver_tests,
    obs,
    procedure,
    record,
)

from cds_service.features._response import hsct_planned, response_status
from cds_service.features._vod import vod_risk
from cds_service.record import DataNote

INO = draft("ino", mg=0.8)


def response(*resources):
    return response_status(record(*resources, drafts=[INO]), ctx())


def test_the_form_gives_response_mrd_and_hsct_plan():
    fv = response(form({"response-status": "CRi", "mrd-negative": True, "hsct-planned": False}))
    assert fv.status == "met"
    assert fv.value["status"] == "CRi" and fv.value["in_cr_cri"] is True
    assert fv.value["mrd_negative"] is True
    assert hsct_planned(record(form({"hsct-planned": False}), drafts=[INO]), ctx()).value is False


def test_not_in_cr_is_not_in_cr_cri():
    assert response(form({"response-status": "not-in-CR"})).value["in_cr_cri"] is False


def test_no_form_leaves_everything_unknown():
    fv = response()
    assert fv.status == "unknown"
    assert fv.value["in_cr_cri"] is None
    assert hsct_planned(record(drafts=[INO]), ctx()).status == "unknown"
    assert "INO2 form" in fv.note


def test_an_in_progress_form_does_not_count():
    fv = response(form({"response-status": "CR"}, status="in-progress"))
    assert fv.value["status"] is None


def test_a_coded_remission_after_the_first_dose_counts_as_cr_cri():
    remission = obs("rem", "dummy", None, "", -2, valueCodeableConcept={
        "coding": [{"system": "http://snomed.info/sct", "code": "103338009", "display": "In full remission"}]})
    fv = response(given("d1", -25), remission)
    assert fv.value["in_cr_cri"] is True and fv.value["status"] == "CR/CRi"


def test_a_coded_remission_before_inotuzumab_is_not_a_response_to_it():
    remission = obs("rem", "dummy", None, "", -400, valueCodeableConcept={
        "coding": [{"system": "http://snomed.info/sct", "code": "103338009"}]})
    assert response(given("d1", -25), remission).value["status"] is None


def test_a_newer_form_wins_over_an_older_coded_remission():
    remission = obs("rem", "dummy", None, "", -10, valueCodeableConcept={
        "coding": [{"system": "http://snomed.info/sct", "code": "103338009"}]})
    fv = response(given("d1", -25), remission, form({"response-status": "not-in-CR"}, offset=-2))
    assert fv.value["status"] == "not-in-CR"


REMISSION = {"coding": [{"system": "http://snomed.info/sct", "code": "103338009", "display": "In full remission"}],
             "text": "Bone marrow: complete remission"}


def test_a_newer_form_without_the_answer_does_not_hide_an_earlier_coded_remission():
    # issue 10 c: the old code only looked after the newest form's date, so this was "unknown"
    remission = obs("rem", "dummy", None, "", -10, valueCodeableConcept=REMISSION)
    fv = response(given("d1", -25), remission, form({"mrd-negative": True}, offset=-2))
    assert fv.value["status"] == "CR/CRi" and fv.value["in_cr_cri"] is True
    assert "recorded remission" in fv.value["source"] and "Bone marrow: complete remission" in fv.value["source"]
    assert any("does not record the response" in e.display for e in fv.evidence)


def test_a_newer_form_without_the_answer_does_not_hide_an_older_forms_answer():
    fv = response(form({"response-status": "not-in-CR"}, offset=-20, rid="old"),
                  form({"hsct-planned": True}, offset=-2, rid="new"))
    assert fv.value["status"] == "not-in-CR" and fv.value["source"].startswith("the INO2 form of")
    assert fv.value["source_date"] == fv.evidence[0].date


def test_a_coded_remission_after_the_answered_form_wins():
    remission = {"resourceType": "Condition", "id": "cr", "subject": {"reference": "Patient/p1"},
                 "code": REMISSION, "onsetDateTime": obs("x", "x", 1, "", -3)["effectiveDateTime"]}
    fv = response(given("d1", -25), form({"response-status": "not-in-CR"}, offset=-10), remission)
    assert fv.value["status"] == "CR/CRi" and "diagnosis" in fv.value["source"]


def test_a_form_and_a_coded_remission_of_the_same_day_that_disagree_are_unknown():
    remission = obs("rem", "dummy", None, "", -2, valueCodeableConcept=REMISSION)
    fv = response(given("d1", -25), remission, form({"response-status": "not-in-CR"}, offset=-2))
    assert fv.status == "unknown" and "disagree" in fv.note


def test_a_transplant_request_means_hsct_planned():
    request = {"resourceType": "ServiceRequest", "id": "sr", "status": "active", "intent": "order",
               "subject": {"reference": "Patient/p1"}, "code": {"text": "Allogeneic stem cell transplant"}}
    assert hsct_planned(record(request, form({"hsct-planned": False}), drafts=[INO]), ctx()).value is True


# -- VOD/SOS risk factors ------------------------------------------------------------------------------


def factors(*resources, **kw):
    fv = vod_risk(record(*resources, drafts=[INO], **kw), ctx())
    return fv, [f["code"] for f in fv.value["factors"]]


def test_no_risk_factor_with_recent_liver_tests():
    fv, codes = factors(*normal_liver_tests())
    assert codes == [] and fv.status == "not_met" and fv.value["factor_count"] == 0


def test_prior_vod_and_serious_liver_disease_are_critical():
    fv, codes = factors(*normal_liver_tests(), condition("vod", "Hepatic veno-occlusive disease", clinical="resolved"))
    assert codes == ["prior-vod"] and fv.value["critical"] is True
    fv, codes = factors(*normal_liver_tests(), condition("cir", "Cirrhosis of liver"))
    assert codes == ["serious-liver-disease"] and fv.value["critical"] is True


def test_resolved_liver_disease_is_a_risk_factor_but_not_critical():
    fv, codes = factors(*normal_liver_tests(), condition("hep", "Hepatitis A", clinical="resolved"))
    assert codes == ["prior-liver-disease"] and fv.value["critical"] is False


def test_refuted_conditions_are_not_risk_factors():
    refuted = condition("vod", "Veno-occlusive disease")
    refuted["verificationStatus"] = {"coding": [{"code": "refuted"}]}
    assert factors(*normal_liver_tests(), refuted)[1] == []


def test_prior_and_planned_hsct():
    fv, codes = factors(*normal_liver_tests(), procedure("hsct", "Allogeneic bone marrow transplantation", "58390007"),
                        form({"hsct-planned": True}))
    assert codes == ["prior-hsct", "planned-hsct"]


def test_no_liver_tests_since_the_previous_dose_is_a_risk_factor():
    _, codes = factors(*normal_liver_tests(offset=-9), *cycle_history(1, -7, days=(1,)))
    assert codes == ["no-recent-liver-tests"]
    _, codes = factors()
    assert codes == ["no-recent-liver-tests"]  # none before the first dose either


def test_unreadable_conditions_make_the_factors_unknown():
    fv, _ = factors(*normal_liver_tests(), notes=[DataNote("missing", "conditions", "prefetch 'conditions' was not provided")])
    assert fv.status == "unknown" and "incomplete" in fv.note
