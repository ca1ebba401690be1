"""ActivityDefinition $apply: a proposed MedicationRequest with the patient's dose."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from fixtures.engine import kit

from cds_service.engine import apply_activity
from cds_service.engine.apply import apply_with_problems, needs_bsa
from cds_service.features import FeatureContext

INO_AD = "https://sact-cds.org/fhir/ActivityDefinition/InotuzumabDay1"
LORATADINE_AD = "https://sact-cds.org/fhir/ActivityDefinition/Loratadine10Mg"


@pytest.fixture
def ctx() -> FeatureContext:
    return FeatureContext(kit.NOW, kit.FakeTerminology(kit.fixture_resources()))


def activity(url: str) -> dict[str, Any]:
    return kit.fixture_resources()[url]


def doses(request: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {d["type"]["coding"][0]["code"]: d["doseQuantity"] for d in request["dosageInstruction"][0]["doseAndRate"]}


def test_bsa_times_dose_per_m2_gives_the_ordered_dose_and_keeps_the_calculated_one(ctx: FeatureContext) -> None:
    request = apply_activity(activity(INO_AD), kit.record([]), ctx, 1.2, supporting=["Observation/bsa-1"])
    assert doses(request) == {
        "calculated": {"value": 0.8, "unit": "mg/m2", "system": "http://unitsofmeasure.org", "code": "mg/m2"},
        "ordered": {"value": 0.96, "unit": "mg", "system": "http://unitsofmeasure.org", "code": "mg"},
    }
    assert request["supportingInformation"] == [{"reference": "Observation/bsa-1"}]
    assert request["instantiatesCanonical"] == [f"{INO_AD}|0.1.0"]


def test_the_request_is_a_draft_proposal_for_the_patient_now(ctx: FeatureContext) -> None:
    request = apply_activity(activity(INO_AD), kit.record([]), ctx, 1.2)
    assert request["resourceType"] == "MedicationRequest"
    assert (request["status"], request["intent"]) == ("draft", "proposal")
    assert request["subject"] == {"reference": "Patient/pat-7f3a"}
    assert request["authoredOn"] == "2026-11-23T09:00:00Z"
    assert request["medicationCodeableConcept"] == {"text": "inotuzumab ozogamicin"}
    assert request["meta"]["profile"] == ["http://hl7.org/fhir/uv/cpg/StructureDefinition/cpg-medicationrequest"]
    assert "note" not in request


def test_the_ordered_dose_is_rounded_half_up_to_a_hundredth_only(ctx: FeatureContext) -> None:
    assert doses(apply_activity(activity(INO_AD), kit.record([]), ctx, 1.23))["ordered"]["value"] == 0.98  # 0.984
    assert doses(apply_activity(activity(INO_AD), kit.record([]), ctx, 0.81875))["ordered"]["value"] == 0.66  # 0.655


def test_without_bsa_there_is_no_ordered_dose_and_the_reason_is_given(ctx: FeatureContext) -> None:
    result = apply_with_problems(activity(INO_AD), kit.record([]), ctx, None, supporting=["Observation/x"])
    assert set(doses(result.resource)) == {"calculated"}
    assert "supportingInformation" not in result.resource
    assert result.problems == ("no body surface area is known, so the ordered dose cannot be calculated from 0.8 mg/m2",)
    assert result.resource["note"][0]["text"].startswith("Not complete: no body surface area")


@pytest.mark.parametrize("bsa", [0, -1.2, True, "1.2"])
def test_an_unusable_bsa_counts_as_missing(ctx: FeatureContext, bsa: Any) -> None:
    assert apply_with_problems(activity(INO_AD), kit.record([]), ctx, bsa).problems


def test_a_flat_dose_is_copied_as_ordered_and_needs_no_bsa(ctx: FeatureContext) -> None:
    ad = activity(LORATADINE_AD)
    assert not needs_bsa(ad) and needs_bsa(activity(INO_AD))
    result = apply_with_problems(ad, kit.record([]), ctx, None)
    assert result.problems == ()
    assert doses(result.resource) == {"ordered": {"value": 10, "unit": "mg", "system": "http://unitsofmeasure.org", "code": "mg"}}


def test_apply_leaves_the_definition_unchanged(ctx: FeatureContext) -> None:
    ad = activity(INO_AD)
    before = copy.deepcopy(ad)
    request = apply_activity(ad, kit.record([]), ctx, 1.2)
    request["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]["value"] = 99
    assert ad == before


def test_without_a_patient_the_request_has_no_subject_and_says_so(ctx: FeatureContext) -> None:
    result = apply_with_problems(activity(LORATADINE_AD), kit.record([], patient=None), ctx, None)
    assert "subject" not in result.resource
    assert result.problems == ("the patient is not known, so the order has no subject",)
