"""Each card part, mapped from the rule PlanDefinition action (architecture.md §5.1)."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
from fixtures.engine import kit

from cds_service.engine import Engine, check_summary
from cds_service.engine import cards as card_parts
from cds_service.knowledge.terms import OVERRIDE_REASON_SYSTEM, RULE_SYSTEM

INO = kit.draft("d-ino", "inotuzumab ozogamicin")
AZOLE = kit.draft("d-flu", "fluconazole 200 mg")


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine(kit.knowledge(), kit.registry())


@pytest.fixture(scope="module")
def cards(engine: Engine) -> list[dict[str, Any]]:
    return engine.evaluate("TestOrderSelect", kit.record([INO, AZOLE]), kit.NOW).cards


def one(cards: list[dict[str, Any]], code: str) -> dict[str, Any]:
    found = kit.card_by_code(cards, code)
    assert len(found) == 1, f"expected one {code} card, got {[c['source']['topic']['code'] for c in cards]}"
    return dict(found[0])


def test_every_card_has_a_fresh_uuid(cards: list[dict[str, Any]], engine: Engine) -> None:
    ids = [c["uuid"] for c in cards]
    assert all(uuid.UUID(i).version == 4 for i in ids) and len(set(ids)) == len(ids)
    again = engine.evaluate("TestOrderSelect", kit.record([INO, AZOLE]), kit.NOW).cards
    assert not {c["uuid"] for c in again} & set(ids)


def test_summary_is_the_action_title_under_140_characters(cards: list[dict[str, Any]]) -> None:
    assert one(cards, "azole-antifungal")["summary"] == "Systemic azole drafted during an inotuzumab course"
    assert all(len(c["summary"]) < 140 for c in cards)


def test_a_too_long_summary_is_cut_with_an_ellipsis_and_flagged() -> None:
    title = "Inotuzumab " + "and a very long explanation " * 8
    assert check_summary(title) and "characters" in check_summary(title)
    cut = card_parts.summary(title, rule="x")
    assert len(cut) < 140 and cut.endswith("…") and title.startswith(cut[:-1])


def test_detail_says_what_fired_with_the_patients_values_and_dates(cards: list[dict[str, Any]]) -> None:
    detail = one(cards, "liver-function-hold")["detail"]
    assert detail.startswith("Total bilirubin is above 1.5 times the upper limit of normal.")
    assert "**Patient data**" in detail
    assert "Total bilirubin 40 umol/L (1.9 x ULN) (2026-11-21)" in detail
    bsa = one(cards, "bsa-dose")["detail"]
    assert "Body surface area 1.2 m2 on 2026-11-20" in bsa  # date already in the display: not repeated
    assert bsa.count("2026-11-20") == 1


def test_detail_lists_each_datum_once_in_order_and_escapes_patient_text() -> None:
    resources = kit.fixture_resources()
    liver = resources[kit.SELECT_PD]["action"][4]
    liver["condition"].append(
        {"kind": "applicability", "expression": {"language": "text/fhirpath", "expression": "%features.bilirubin_x_uln.value > 1"}}
    )
    engine = Engine(kit.knowledge(resources), kit.registry())
    drafts = [INO, kit.draft("d-x", "fluconazole <b>*bold*</b>")]
    found = engine.evaluate("TestOrderSelect", kit.record(drafts), kit.NOW).cards
    detail = one(found, "liver-function-hold")["detail"]
    assert detail.count("Total bilirubin 40 umol/L") == 1
    azole = one(found, "azole-antifungal")["detail"]
    assert "<b>" not in azole and r"&lt;b>\*bold\*&lt;/b>" in azole


@pytest.mark.parametrize(("priority", "indicator"), [("routine", "info"), ("urgent", "warning"), ("stat", "critical")])
def test_priority_maps_to_the_card_indicator(priority: str, indicator: str) -> None:
    resources = kit.fixture_resources()
    resources[kit.SELECT_PD]["action"][0]["priority"] = priority
    engine = Engine(kit.knowledge(resources), kit.registry())
    found = engine.evaluate("TestOrderSelect", kit.record([AZOLE]), kit.NOW).cards
    assert one(found, "azole-antifungal")["indicator"] == indicator


def test_dynamic_value_priority_overrides_the_static_one() -> None:
    resources = kit.fixture_resources()
    resources[kit.SELECT_PD]["action"][0]["dynamicValue"] = [
        {"path": "action.priority", "expression": {"language": "text/fhirpath", "expression": "'stat'"}},
        {"path": "action.title", "expression": {"language": "text/fhirpath", "expression": "'Azole: ' + %features.azole_drafted.evidence.display.first()"}},
    ]
    engine = Engine(kit.knowledge(resources), kit.registry())
    card = one(engine.evaluate("TestOrderSelect", kit.record([AZOLE]), kit.NOW).cards, "azole-antifungal")
    assert card["indicator"] == "critical"
    assert card["summary"] == "Azole: Draft order: fluconazole 200 mg"


def test_source_has_label_url_and_the_rule_topic(cards: list[dict[str, Any]]) -> None:
    source = one(cards, "azole-antifungal")["source"]
    assert source == {
        "label": "SmPC",
        "url": "https://example.org/smpc#section-4.5",
        "topic": {"system": RULE_SYSTEM, "code": "azole-antifungal", "display": "Azole antifungal during inotuzumab"},
    }


def test_source_falls_back_to_display_and_never_links_a_canonical_url(cards: list[dict[str, Any]]) -> None:
    source = one(cards, "premedication")["source"]
    assert source["label"] == "NZ regimen (display)"
    assert "url" not in source  # a canonical URL is no page a clinician can open
    assert source["topic"] == {"system": RULE_SYSTEM, "code": "premedication"}


def test_further_documentation_with_a_url_becomes_links(cards: list[dict[str, Any]]) -> None:
    assert one(cards, "azole-antifungal")["links"] == [
        {"label": "NZ regimen", "url": "https://example.org/nz-regimen", "type": "absolute"}
    ]
    assert "links" not in one(cards, "liver-function-hold")


def test_a_create_suggestion_carries_the_applied_activity(cards: list[dict[str, Any]]) -> None:
    card = one(cards, "bsa-dose")
    (suggestion,) = card["suggestions"]
    assert suggestion["label"] == "Order inotuzumab 0.8 mg/m2 for this patient's BSA"
    uuid.UUID(suggestion["uuid"])
    (action,) = suggestion["actions"]
    assert action["type"] == "create" and action["description"] == "Order inotuzumab day 1 at 0.8 mg/m2"
    resource = action["resource"]
    assert resource["status"] == "draft" and resource["intent"] == "proposal"
    assert resource["subject"] == {"reference": "Patient/pat-7f3a"}
    assert resource["authoredOn"] == "2026-11-23T09:00:00Z"
    assert resource["instantiatesCanonical"] == ["https://sact-cds.org/fhir/ActivityDefinition/InotuzumabDay1|0.1.0"]
    doses = resource["dosageInstruction"][0]["doseAndRate"]
    assert [d["type"]["coding"][0]["code"] for d in doses] == ["calculated", "ordered"]
    assert doses[1]["doseQuantity"]["value"] == 0.96


def test_a_delete_suggestion_names_each_order_by_resource_id(cards: list[dict[str, Any]]) -> None:
    card = one(cards, "azole-antifungal")
    (suggestion,) = card["suggestions"]
    assert suggestion["label"] == "Remove the azole order"
    assert suggestion["actions"] == [
        {
            "type": "delete",
            "description": "Remove the drafted azole (fluconazole 200 mg)",
            "resourceId": "MedicationRequest/d-flu",
        }
    ]


def test_suggestions_are_never_dropped_for_want_of_a_selection_behavior(cards: list[dict[str, Any]]) -> None:
    # clinical-reasoning builds suggestions and drops them unless the action sets
    # selectionBehavior; the premedication and bsa-dose actions set none.
    for code in ("premedication", "bsa-dose"):
        card = one(cards, code)
        assert card["suggestions"], code
        assert card["selectionBehavior"] == "any"


def test_selection_behavior_is_present_exactly_when_there_are_suggestions(cards: list[dict[str, Any]]) -> None:
    assert one(cards, "azole-antifungal")["selectionBehavior"] == "at-most-one"
    for card in cards:
        assert ("selectionBehavior" in card) == bool(card.get("suggestions")), card["source"]["topic"]["code"]


def test_a_suggestion_whose_condition_is_false_is_not_offered(cards: list[dict[str, Any]]) -> None:
    labels = [s["label"] for s in one(cards, "premedication")["suggestions"]]
    assert labels == ["Add loratadine 10 mg"]
    assert "Never offered" not in one(cards, "premedication").get("detail", "")


def test_override_reasons_are_every_concept_with_a_display(cards: list[dict[str, Any]]) -> None:
    expected = [
        {"code": "patient-specific", "system": OVERRIDE_REASON_SYSTEM, "display": "Patient-specific clinical judgement"},
        {"code": "already-addressed", "system": OVERRIDE_REASON_SYSTEM, "display": "Already addressed"},
        {"code": "discussed-at-mdt", "system": OVERRIDE_REASON_SYSTEM, "display": "Discussed at the MDT"},
        {"code": "data-wrong", "system": OVERRIDE_REASON_SYSTEM, "display": "The data shown are wrong"},
    ]
    for card in cards:
        assert card["overrideReasons"] == expected


def test_a_missing_override_reason_code_system_stops_the_engine() -> None:
    from cds_service.errors import KnowledgeError

    resources = kit.fixture_resources()
    del resources[OVERRIDE_REASON_SYSTEM]
    with pytest.raises(KnowledgeError, match="override-reason"):
        Engine(kit.knowledge(resources), kit.registry())


def test_every_card_is_stamped_with_the_knowledge_version_and_its_evidence(cards: list[dict[str, Any]]) -> None:
    for card in cards:
        assert card["extension"]["org.sact-cds.knowledge-version"] == "0.1.0"
    evidence = one(cards, "bsa-dose")["extension"]["org.sact-cds.evidence"]
    assert evidence[-1] == {
        "feature": "bsa_m2",
        "status": "met",
        "value": 1.2,
        "evidence": [{"display": "Body surface area 1.2 m2 on 2026-11-20", "reference": "Observation/bsa-1", "date": "2026-11-20"}],
    }


def test_eligibility_criteria_come_from_a_generic_card_extension_dynamic_value(cards: list[dict[str, Any]]) -> None:
    card = one(cards, "ino2-eligibility")
    assert card["indicator"] == "critical"
    assert card["extension"]["org.sact-cds.criteria"] == [
        {"code": "mdt-discussion", "status": "unknown"},
    ]
    assert card["detail"].startswith("INO2 criteria unmet or unknown: mdt-discussion")


def test_an_adult_gets_the_unmet_child_criterion(engine: Engine) -> None:
    adult = dict(kit.PATIENT, birthDate="1990-01-01")
    found = engine.evaluate("TestOrderSelect", kit.record([INO], patient=adult), kit.NOW).cards
    assert one(found, "ino2-eligibility")["extension"]["org.sact-cds.criteria"] == [
        {"code": "child", "status": "unmet"},
        {"code": "mdt-discussion", "status": "unknown"},
    ]


def test_card_json_has_no_empty_values(cards: list[dict[str, Any]]) -> None:
    def walk(x: Any, path: str) -> None:
        assert x not in (None, "", [], {}), path
        if isinstance(x, dict):
            for k, v in x.items():
                walk(v, f"{path}.{k}")
        elif isinstance(x, list):
            for i, v in enumerate(x):
                walk(v, f"{path}[{i}]")

    for card in cards:
        walk(card, card["source"]["topic"]["code"])


def test_rule_codes_list_the_cards_in_order(engine: Engine) -> None:
    evaluation = engine.evaluate("TestOrderSelect", kit.record([INO, AZOLE]), kit.NOW)
    assert evaluation.rule_codes == [c["source"]["topic"]["code"] for c in evaluation.cards]
    # severity first (critical, warning, info), then the order of the rules in the PlanDefinition
    # (fixture actions: azole urgent, premed routine, bsa urgent, ino2 stat, liver urgent)
    assert [(c["indicator"], c["source"]["topic"]["code"]) for c in evaluation.cards] == [
        ("critical", "ino2-eligibility"),
        ("warning", "azole-antifungal"),
        ("warning", "bsa-dose"),
        ("warning", "liver-function-hold"),
        ("info", "premedication"),
    ]
    assert set(evaluation.timings_ms) == {"features", "rules", "render"}
    assert re.fullmatch(r"[a-z0-9-]+", "".join(evaluation.rule_codes))
