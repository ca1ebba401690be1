"""HAZ-001: another patient's data is never used as this patient's, and never dropped silently.

Whole patient records (the generated rule scenarios) sent the two ways an EHR sends them:
in ``prefetch``, and through the FHIR-server fallback (no prefetch; the service searches
``fhirServer``). Into each, another patient's resource is slipped the way it happens in
practice: a mis-built prefetch, or a server that ignores the ``patient`` search parameter
and answers with everyone's results; or a draft order of another patient's chart in the
order session. The record builder must leave it out and say so on the card.
"""

from __future__ import annotations

import copy
from datetime import timedelta
from typing import Any

import pytest
from _whole_record import FHIR, SCENARIOS, call, cards_by_rule, resolved, text

from cds_service.record import build_record
from cds_service.record._build import record_notes
from cds_service.record._subject import SubjectCheck, patient_id_in
from cds_service.replay.dates import format_datetime
from cds_service.replay.scenario import ResolvedScenario

HOLD = SCENARIOS / "liver-function-hold-bilirubin-1.51-ast-2.6-critical.json"
QUIET = SCENARIOS / "ino2-eligibility-all-met-no-card.json"
OTHER = "pt-other"


def foreign_bilirubin(res: ResolvedScenario, reference: str) -> dict[str, Any]:
    """Another patient's normal total bilirubin, newer than this patient's high one."""
    mine = next(r for r in res.record if r.get("id") == "lab-bilirubin")
    other = copy.deepcopy(mine)
    other.update(id="other-bilirubin", subject={"reference": reference},
                 effectiveDateTime=format_datetime(res.now - timedelta(hours=2)))
    other["valueQuantity"]["value"] = 8
    return other


@pytest.mark.parametrize("path", ["prefetch", "fallback"])
@pytest.mark.parametrize("reference", [f"Patient/{OTHER}", f"{FHIR}/Patient/{OTHER}"])
def test_another_patients_normal_bilirubin_does_not_hide_this_patients_hold(path: str, reference: str) -> None:
    res = resolved(HOLD)
    cards = cards_by_rule(call(res, path=path, foreign=[foreign_bilirubin(res, reference)]))
    (hold,) = cards["liver-function-hold"]
    assert hold["indicator"] == "critical"
    assert "31.71" in text(hold) and "other-bilirubin" not in text(hold)  # this patient's 1.51 x ULN
    notes = "\n".join(text(c) for c in cards["data-unavailable"])
    assert "1 resource for another patient was left out of 'observations' (Observation ×1)" in notes
    assert "check the EHR's prefetch" in notes


def test_a_urn_uuid_subject_is_resolved_within_the_bundle() -> None:
    res = resolved(HOLD)
    urn = "urn:uuid:6f1b0c3e-2d4a-4f8e-9b7a-1c2d3e4f5a6b"
    foreign = foreign_bilirubin(res, urn)

    def add_patient_entry(body: dict[str, Any]) -> None:
        body["prefetch"]["observations"]["entry"].append(
            {"fullUrl": urn, "resource": {"resourceType": "Patient", "id": OTHER, "birthDate": "1980-01-01"}})

    cards = cards_by_rule(call(res, path="prefetch", foreign=[foreign], edit=add_patient_entry))
    assert [c["indicator"] for c in cards["liver-function-hold"]] == ["critical"]
    notes = "\n".join(text(c) for c in cards["data-unavailable"])
    assert "2 resources for another patient were left out of 'observations' (Observation ×1, Patient ×1)" in notes


def foreign_fluconazole_draft() -> dict[str, Any]:
    return {"resourceType": "MedicationRequest", "id": "other-fluconazole", "status": "draft", "intent": "order",
            "subject": {"reference": f"Patient/{OTHER}"},
            "medicationCodeableConcept": {"coding": [{"system": "http://www.whocc.no/atc", "code": "J02AC01",
                                                      "display": "fluconazole"}], "text": "fluconazole"},
            "dosageInstruction": [{"text": "Fluconazole 100 mg PO daily", "route": {"text": "Oral"}}]}


@pytest.mark.parametrize("path", ["prefetch", "fallback"])
def test_another_patients_draft_order_is_not_checked_as_this_patients_order(path: str) -> None:
    res = resolved(QUIET)
    cards = cards_by_rule(call(res, path=path, foreign_drafts=[foreign_fluconazole_draft()]))
    assert "azole-antifungal" not in cards  # another child's fluconazole is not this child's
    notes = "\n".join(text(c) for c in cards["data-unavailable"])
    assert "1 draft order for another patient was left out of this order session" in notes
    assert "not checked as this patient's order" in notes


def test_this_patients_own_fluconazole_draft_still_warns() -> None:
    """The control: the same draft for this patient is checked (the test above is not vacuous)."""
    res = resolved(QUIET)
    mine = foreign_fluconazole_draft() | {"id": "my-fluconazole", "subject": {"reference": f"{FHIR}/Patient/pt-1"}}
    cards = cards_by_rule(call(res, path="prefetch", foreign_drafts=[mine]))
    assert [c["indicator"] for c in cards["azole-antifungal"]] == ["warning"]
    assert "data-unavailable" not in cards


@pytest.mark.parametrize("path", ["prefetch", "fallback"])
def test_a_patient_resource_with_another_id_is_not_used_for_this_patients_age(path: str) -> None:
    """An adult's Patient resource answering for this child: the age is never the adult's
    (which would make the INO2 'child' criterion unmet and point to the adult form)."""
    res = resolved(QUIET)
    adult = {"resourceType": "Patient", "id": OTHER, "birthDate": format_datetime(res.now - timedelta(days=40 * 366))[:10]}

    def swap_patient(body: dict[str, Any]) -> None:
        if "prefetch" in body:
            body["prefetch"]["patient"] = adult

    # prefetch: the EHR prefetches another patient; fallback: its server answers the read with one
    cards = call(res, path=path, edit=swap_patient, served_patient=adult)
    by = cards_by_rule(cards)
    everything = "\n".join(text(c) for c in cards)
    assert "INO1" not in everything and "40 years" not in everything
    assert "ino2-eligibility" not in by  # the form attests a child; the adult's birth date is not read
    notes = "\n".join(text(c) for c in by["data-unavailable"])
    assert "1 resource for another patient was left out of 'patient' (Patient ×1)" in notes
    assert "affects: INO2 funding criteria" in notes  # the clinician knows which check it touches


# -- the reference forms, read directly ------------------------------------------------------


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        ("Patient/p1", "p1"),
        ("https://ehr.example.org/fhir/Patient/p1", "p1"),
        ("https://ehr.example.org/fhir/Patient/p1/_history/3", "p1"),
        ("Group/g1", None),
        ("urn:uuid:unknown", None),
        ("Patient/", None),
    ],
)
def test_the_patient_a_reference_names(reference: str, expected: str | None) -> None:
    assert patient_id_in(reference, lambda urn: None) == expected


def test_resources_without_a_subject_or_naming_no_patient_are_kept() -> None:
    check = SubjectCheck("p1", ())
    assert not check.foreign({"resourceType": "Observation", "id": "o"})
    assert not check.foreign({"resourceType": "Observation", "subject": {"display": "someone"}})
    assert not check.foreign({"resourceType": "Observation", "subject": {"reference": "Group/g"}})
    assert check.foreign({"resourceType": "AllergyIntolerance", "patient": {"reference": "Patient/p2"}})
    assert check.foreign({"resourceType": "Coverage", "beneficiary": {"reference": "Patient/p2"}})
    assert check.foreign({"resourceType": "MedicationOrder", "patient": {"reference": "Patient/p2"}})
    assert check.foreign({"resourceType": "Patient", "id": "p2"})
    assert not check.foreign({"resourceType": "Patient", "id": "p1"})


def test_the_record_keeps_this_patients_data_and_notes_each_key_once() -> None:
    mine = {"resourceType": "Observation", "id": "o1", "subject": {"reference": "Patient/p1"}}
    theirs = [{"resourceType": "Observation", "id": f"x{n}", "subject": {"reference": "Patient/p2"}} for n in range(3)]
    record = build_record({
        "hook": "order-sign",
        "context": {"patientId": "p1", "draftOrders": {"resourceType": "Bundle", "entry": []}},
        "prefetch": {"patient": {"resourceType": "Patient", "id": "p1"},
                     "observations": {"resourceType": "Bundle", "entry": [{"resource": r} for r in [mine, *theirs]]}},
    })
    assert [o["id"] for o in record.of_type("Observation")] == ["o1"]
    assert record.patient == {"resourceType": "Patient", "id": "p1"}
    (note,) = record.notes
    assert (note.kind, note.key) == ("other-patient", "observations")
    assert note.message.startswith("3 resources for another patient were left out of 'observations' (Observation ×3)")


def test_the_one_loop_reading_of_prefetch_keeps_and_notes_exactly_what_the_general_path_does() -> None:
    """``build_record`` reads plain Bundle entries in one loop (record/_build.py
    ``_read_prefetch``); every odd entry goes the general way at its own position. Whatever
    a prefetch mixes, the record and its notes (and their order) must be those of the
    general path (``_prefetched``), resource for resource."""
    from cds_service.record._build import _prefetched, _type_id, subject_check

    res = resolved(HOLD)
    mine = [r for r in res.record if r.get("resourceType") == "Observation"]
    outcome = {"resourceType": "OperationOutcome", "issue": [{"diagnostics": "search failed"}]}
    order = {"resourceType": "MedicationOrder", "id": "mo1", "patient": dict(mine[0]["subject"])}
    urn = "urn:uuid:0b7c1d2e-3f40-4a5b-8c6d-7e8f90a1b2c3"
    entries = [
        {"resource": mine[0]},
        {"resource": {**mine[1], "subject": {"reference": f"{FHIR}/Patient/{OTHER}"}}},  # absolute, another patient
        {"resource": outcome},                                                           # an error inside a Bundle
        {"resource": order},                                                             # DSTU2, normalised with a note
        {"search": {"mode": "include"}},                                                 # no resource
        {"resource": "not a resource"},                                                  # unreadable
        {"resource": {"resourceType": "Bundle", "entry": [{"resource": mine[2]}]}},      # nested Bundle
        {"fullUrl": urn, "resource": {"resourceType": "Patient", "id": OTHER}},
        {"resource": {**mine[3], "subject": {"reference": urn}}},                        # urn: another patient
        {"resource": {**mine[4], "id": 7}},                                              # a numeric id
        {"resource": mine[0]},                                                           # the same resource again
        *({"resource": r} for r in mine[5:]),
    ]
    context = {"patientId": mine[0]["subject"]["reference"].split("/")[-1], "draftOrders": {"resourceType": "Bundle"}}
    request = {"hook": "order-sign", "context": context, "prefetch": {
        "observations": {"resourceType": "Bundle", "type": "searchset", "entry": entries},
        "patient": None, "conditions": outcome, "extra": [mine[0], {"resourceType": 5}]}}
    expected = ("observations", "conditions", "patient", "medications")

    general_notes: list[Any] = []
    foreign: dict[str, list[str]] = {}
    general: dict[tuple[str, str], Any] = {}
    for r in _prefetched(request, expected, general_notes, check=subject_check(request), foreign=foreign):
        general[_type_id(r)] = r
    record = build_record(request, expected)

    kept = {k: v for k, v in general.items() if k[0] != "Patient"}
    assert [(_type_id(r), r) for rs in record.resources.values() for r in rs] == \
        sorted(kept.items(), key=lambda kv: (list(record.resources).index(kv[0][0]), list(kept).index(kv[0])))
    assert [n.message for n in record.notes][:len(general_notes)] == [n.message for n in general_notes]
    assert len(general_notes) >= 5  # missing, error (x2), DSTU2, unreadable ... all still noted
    assert any("another patient" in n.message and "Observation ×2" in n.message for n in record.notes)
    # the relevance gate's notes (record_notes, which has a one-loop path of its own) are the record's
    assert [n.message for n in record_notes(request, expected)] == [n.message for n in record.notes]
    quiet = {**request, "prefetch": {"observations": {"resourceType": "Bundle", "entry": [
        e for e in entries if isinstance(e.get("resource"), dict)
        and e["resource"].get("resourceType") not in ("Bundle", "OperationOutcome", "MedicationOrder")]},
        "patient": None}}
    quiet_notes = [n.message for n in record_notes(quiet, expected)]
    assert quiet_notes == [n.message for n in build_record(quiet, expected).notes]
    assert any("another patient" in n and "Observation ×2" in n for n in quiet_notes)
