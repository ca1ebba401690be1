"""``update`` suggestions (issue 10 a): a child action that replaces the dose of a draft order.

The rule engine on the small engine fixtures (tests/fixtures/engine) with the azole rule's
child action turned into an ``update``: what it sends, what it refuses at load, and that a
change it cannot make safely is never offered silently.
"""

from __future__ import annotations

from typing import Any

import pytest
from fixtures.engine import kit

from cds_service.engine import Engine
from cds_service.errors import SactCdsError

AT = "http://terminology.hl7.org/CodeSystem/action-type"


def dosage(text: str = "Fluconazole 200 mg PO") -> dict[str, Any]:
    return {"text": text, "route": {"text": "oral"},
            "doseAndRate": [{"doseQuantity": {"value": 200, "unit": "mg", "system": "http://unitsofmeasure.org",
                                              "code": "mg"}}]}


def update_child(value: str = "120", unit: str = "'mg'", note: str | None = "'Dose changed to 120 mg'") -> dict:
    dvs = [
        {"path": "resourceId", "expression": {"language": "text/fhirpath", "expression": "%features.azole_drafted.value"}},
        {"path": "dosageInstruction.doseAndRate.doseQuantity.value",
         "expression": {"language": "text/fhirpath", "expression": value}},
        {"path": "dosageInstruction.doseAndRate.doseQuantity.code",
         "expression": {"language": "text/fhirpath", "expression": unit}},
    ]
    if note:
        dvs.append({"path": "note.text", "expression": {"language": "text/fhirpath", "expression": note}})
    return {"id": "azole-dose", "title": "Give the calculated dose", "description": "Replace the dose",
            "type": {"coding": [{"system": AT, "code": "update"}]}, "dynamicValue": dvs}


def engine_with(child: dict[str, Any]) -> Engine:
    resources = kit.fixture_resources()
    resources[kit.SELECT_PD]["action"][0]["action"] = [child]
    return Engine(kit.knowledge(resources), kit.registry())


def azole_card(engine: Engine, *drafts: dict[str, Any]) -> dict[str, Any]:
    (card,) = kit.card_by_code(engine.evaluate("TestOrderSelect", kit.record(list(drafts)), kit.NOW).cards,
                               "azole-antifungal")
    return card


def test_an_update_carries_the_whole_draft_with_its_dose_replaced() -> None:
    draft = kit.draft("d-flu", "fluconazole 200 mg", dosageInstruction=[dosage()], note=[{"text": "from clinic"}])
    card = azole_card(engine_with(update_child()), draft)
    ((action,),) = [s["actions"] for s in card["suggestions"]]
    assert action["type"] == "update" and action["description"] == "Replace the dose (fluconazole 200 mg)"
    resource = action["resource"]
    assert {k: v for k, v in resource.items() if k not in ("dosageInstruction", "note")} == {
        k: v for k, v in draft.items() if k not in ("dosageInstruction", "note")}
    (dose,) = resource["dosageInstruction"]
    assert "text" not in dose and dose["route"] == {"text": "oral"}
    assert dose["doseAndRate"][0]["doseQuantity"] == {"value": 120, "unit": "mg", "system": "http://unitsofmeasure.org",
                                                      "code": "mg"}
    assert resource["note"] == [{"text": "from clinic"}, {"text": "Dose changed to 120 mg"}]


@pytest.mark.parametrize(("child", "drafts", "why"), [
    (update_child(value="120 | 130"), [kit.draft("d-flu", "fluconazole", dosageInstruction=[dosage()])],
     "could not be matched to the draft order"),
    (update_child(value="-5"), [kit.draft("d-flu", "fluconazole", dosageInstruction=[dosage()])],
     "not a positive number"),
    (update_child(), [kit.draft("d-flu", "fluconazole", dosageInstruction=[dosage(), dosage()])],
     "more than one dosage instruction"),
])
def test_a_change_that_cannot_be_made_safely_is_not_offered_and_says_why(child, drafts, why) -> None:
    card = azole_card(engine_with(child), *drafts)
    assert not card.get("suggestions")
    assert why in card["detail"]


def test_an_update_without_its_dose_or_with_another_path_is_refused_at_load() -> None:
    for child in (
        {**update_child(), "dynamicValue": update_child()["dynamicValue"][:1]},
        {**update_child(), "dynamicValue": [*update_child()["dynamicValue"],
                                            {"path": "medicationCodeableConcept.text",
                                             "expression": {"language": "text/fhirpath", "expression": "'x'"}}]},
    ):
        with pytest.raises(SactCdsError):
            engine_with(child)
