"""Anything that goes wrong during evaluation becomes a visible card and a log line."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from fixtures.engine import kit

from cds_service.engine import Engine
from cds_service.features import FeatureValue
from cds_service.record import DataNote

INO = kit.draft("d-ino", "inotuzumab ozogamicin")
PATIENT_DATA = ("Zwingliwood", "Ottoline", "2015-03-14", "pat-7f3a")


def unavailable(cards: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return list(kit.card_by_code(cards, "data-unavailable"))


def test_a_condition_on_an_unknown_feature_value_gives_a_card_naming_the_rule_and_why() -> None:
    engine = Engine(kit.knowledge(), kit.registry())
    evaluation = engine.evaluate("TestOrderSelect", kit.record([INO], observations=[kit.BSA_OBS]), kit.NOW)
    (card,) = unavailable(evaluation.cards)
    assert card["summary"] == "A check could not be run: Bilirubin above 1.5 x ULN: hold inotuzumab"
    assert card["indicator"] == "warning"  # the template action's priority: urgent
    # the check by its clinical name, what to document in words; no codes, paths or feature names
    assert "**Not checked**\n\n- Bilirubin above 1.5 x ULN: hold inotuzumab" in card["detail"]
    assert "- Bilirubin x uln: no total bilirubin result in the last 7 days" in card["detail"]
    assert "`" not in card["detail"] and "condition[" not in card["detail"] and "_" not in card["detail"]
    assert card["source"]["label"] == "sact-cds"
    assert card["source"]["url"] == "https://example.org/sact-cds/data-unavailable"
    assert card["overrideReasons"] and card["extension"]["org.sact-cds.knowledge-version"] == "0.1.0"
    assert "liver-function-hold: could not be evaluated" in evaluation.notes


def test_a_feature_that_raises_is_unknown_and_shown_and_logged_without_patient_data(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(record: Any, ctx: Any) -> FeatureValue:
        raise KeyError(record.patient["name"][0]["family"])

    engine = Engine(kit.knowledge(), kit.registry(bilirubin_x_uln=broken))
    with caplog.at_level(logging.DEBUG, logger="sact_cds.engine"):
        evaluation = engine.evaluate("TestOrderSelect", kit.record([INO]), kit.NOW)
    (card,) = unavailable(evaluation.cards)
    assert "KeyError" not in card["detail"] and "could not be computed" not in card["detail"]
    assert "- Bilirubin above 1.5 x ULN: hold inotuzumab" in card["detail"]
    assert "could not be read" in card["detail"]
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name == "sact_cds.engine")
    assert "bilirubin_x_uln" in logged and "KeyError" in logged
    assert "in broken" in logged  # the traceback (frames and code lines) is in the log
    for datum in PATIENT_DATA:
        assert datum not in logged


def test_a_feature_returning_the_wrong_type_is_unknown_not_a_crash(caplog: pytest.LogCaptureFixture) -> None:
    engine = Engine(kit.knowledge(), kit.registry(ino_drafted=lambda r, c: True))
    with caplog.at_level(logging.WARNING, logger="sact_cds.engine"):
        evaluation = engine.evaluate("TestOrderSelect", kit.record([INO]), kit.NOW)
    (card,) = unavailable(evaluation.cards)
    assert "- Check the inotuzumab dose against the BSA" in card["detail"]
    assert "- Bilirubin above 1.5 x ULN: hold inotuzumab" in card["detail"]
    assert "ino_drafted returned a malformed bool" in caplog.text


def test_a_condition_that_raises_gives_a_card_and_a_log_line(caplog: pytest.LogCaptureFixture) -> None:
    engine = Engine(kit.knowledge(), kit.registry(bilirubin_x_uln=lambda r, c: FeatureValue("met", "high")))
    with caplog.at_level(logging.WARNING, logger="sact_cds.engine"):
        evaluation = engine.evaluate("TestOrderSelect", kit.record([INO]), kit.NOW)
    (card,) = unavailable(evaluation.cards)
    assert "- Bilirubin above 1.5 x ULN: hold inotuzumab" in card["detail"]
    assert "could not be read" in card["detail"] and "condition[" not in card["detail"]
    assert "rule liver-function-hold: condition[1] raised" in caplog.text
    for datum in PATIENT_DATA:
        assert datum not in caplog.text


def test_record_notes_become_one_card_saying_which_checks_they_affect(caplog: pytest.LogCaptureFixture) -> None:
    engine = Engine(kit.knowledge(), kit.registry())
    notes = [
        DataNote("missing", "observations", "prefetch 'observations' was not provided"),
        DataNote("error", "questionnaireResponses", "'questionnaireResponses' returned an error: timeout"),
        DataNote("unsupported", "MedicationOrder/mo-1", "DSTU2 MedicationOrder read as an R4 MedicationRequest"),
        DataNote("unreadable", "somethingElse", "'somethingElse' is not a FHIR resource or Bundle"),
    ]
    with caplog.at_level(logging.INFO, logger="sact_cds.engine"):
        evaluation = engine.evaluate("TestOrderSelect", kit.record([], notes=notes), kit.NOW)
    (card,) = unavailable(evaluation.cards)
    assert card["summary"] == "A check could not be run: patient data incomplete"
    detail = card["detail"]
    assert "prefetch 'observations' was not provided (affects: Check the inotuzumab dose against the BSA, Bilirubin above 1.5 x ULN: hold inotuzumab)" in detail
    assert "timeout (affects: INO2 criteria not all met)" in detail
    assert "DSTU2 MedicationOrder read as an R4 MedicationRequest (affects: Azole antifungal during inotuzumab" in detail
    assert "is not a FHIR resource or Bundle (may affect any check)" in detail
    assert all(n.message in evaluation.notes for n in notes)
    assert "4 data note(s)" in caplog.text and "mo-1" not in caplog.text


def test_a_plan_without_a_data_unavailable_action_uses_neutral_built_in_text() -> None:
    resources = kit.fixture_resources()
    plan = resources[kit.SELECT_PD]
    plan["action"] = [a for a in plan["action"] if a["id"] != "unavailable"]
    engine = Engine(kit.knowledge(resources), kit.registry())
    evaluation = engine.evaluate("TestOrderSelect", kit.record([INO], observations=[kit.BSA_OBS]), kit.NOW)
    (card,) = unavailable(evaluation.cards)
    assert card["summary"].startswith("Some checks could not be run")
    assert card["indicator"] == "warning"
    assert card["source"]["label"] == "sact-cds" and "url" not in card["source"]  # no canonical URL


def test_a_suggestion_that_cannot_be_built_is_explained_not_dropped() -> None:
    engine = Engine(kit.knowledge(), kit.registry())
    evaluation = engine.evaluate("TestOrderSelect", kit.record([INO], observations=[kit.BILI_OBS]), kit.NOW)
    card = kit.card_by_code(evaluation.cards, "bsa-dose")[0]
    assert "suggestions" not in card and "selectionBehavior" not in card
    assert "**Suggestions not offered**" in card["detail"]
    assert "Order inotuzumab 0.8 mg/m2 for this patient's BSA: not offered, no body surface area is known" in card["detail"]
    assert "no body surface area, height or weight in the last 7 days" in card["detail"]


def test_a_remove_suggestion_with_nothing_to_remove_is_explained() -> None:
    engine = Engine(kit.knowledge(), kit.registry(azole_drafted=lambda r, c: FeatureValue("met", [])))
    card = kit.card_by_code(engine.evaluate("TestOrderSelect", kit.record([]), kit.NOW).cards, "azole-antifungal")[0]
    assert "suggestions" not in card
    assert "Remove the azole order: not offered, no order to remove was found" in card["detail"]


def test_a_dynamic_value_that_fails_keeps_the_card_and_says_what_is_missing() -> None:
    engine = Engine(
        kit.knowledge(),
        kit.registry(ino2_criteria=lambda r, c: FeatureValue("met", [{"code": 3, "status": "unmet"}])),
    )
    card = kit.card_by_code(engine.evaluate("TestOrderSelect", kit.record([INO]), kit.NOW).cards, "ino2-eligibility")
    (card,) = card
    assert card["summary"] == "INO2 criteria not all met"
    assert card["detail"].startswith("Some NHS England INO2 criteria are not met or not known.")
    assert "- the explanation could not be checked" in card["detail"] and "action." not in card["detail"]


def test_unknown_values_reach_every_rule_that_reads_them_as_a_card() -> None:
    unknown = {n: (lambda r, c: FeatureValue.unknown("no data")) for n in ("bsa_m2", "bilirubin_x_uln", "ino2_criteria")}
    engine = Engine(kit.knowledge(), kit.registry(**unknown))
    evaluation = engine.evaluate("TestOrderSelect", kit.record([INO]), kit.NOW)
    # one data-unavailable card for both rules that could not be decided
    assert sorted(evaluation.rule_codes) == ["bsa-dose", "data-unavailable", "premedication"]
    shown = " ".join(c.get("detail", "") for c in evaluation.cards)
    (card,) = unavailable(evaluation.cards)
    assert "- INO2 criteria not all met" in card["detail"]
    assert "- Bilirubin above 1.5 x ULN: hold inotuzumab" in card["detail"]
    assert "Body surface area (height and weight): not known (no data)" in shown  # the $apply suggestion that needed it


def test_a_rule_false_only_because_its_feature_is_unknown_is_shown_as_undecided() -> None:
    engine = Engine(kit.knowledge(), kit.registry(azole_drafted=lambda r, c: FeatureValue.unknown("orders unreadable")))
    evaluation = engine.evaluate("TestOrderSelect", kit.record([]), kit.NOW)
    (card,) = unavailable(evaluation.cards)
    assert "- Azole antifungal during inotuzumab" in card["detail"]
    assert "- Azole drafted: orders unreadable" in card["detail"]


def test_a_guard_that_is_false_on_known_data_keeps_the_rule_silent_despite_unknown_data() -> None:
    engine = Engine(kit.knowledge(), kit.registry())
    evaluation = engine.evaluate("TestOrderSelect", kit.record([], observations=[]), kit.NOW)
    # inotuzumab is not drafted: that bilirubin and BSA are unknown does not matter
    assert evaluation.rule_codes == ["ino2-eligibility"]


def test_a_card_that_cannot_be_rendered_becomes_a_data_unavailable_card(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cds_service.engine import cards as card_parts

    real = card_parts.links

    def broken_links(documentation: Any) -> Any:
        if documentation and documentation[0].get("label") == "SmPC":
            patient_name = "Zwingli" + "wood"  # as if read from the record
            raise RuntimeError(patient_name)
        return real(documentation)

    monkeypatch.setattr(card_parts, "links", broken_links)
    engine = Engine(kit.knowledge(), kit.registry())
    with caplog.at_level(logging.WARNING, logger="sact_cds.engine"):
        evaluation = engine.evaluate("TestOrderSelect", kit.record([kit.draft("d-flu", "fluconazole")]), kit.NOW)
    (card,) = unavailable(evaluation.cards)
    assert "- Azole antifungal during inotuzumab" in card["detail"] and "RuntimeError" not in card["detail"]
    assert "could not be read" in card["detail"]
    assert "rule azole-antifungal failed while rendering: RuntimeError at" in caplog.text
    assert "in broken_links" in caplog.text  # frames and code lines of the traceback
    assert "Zwingliwood" not in caplog.text  # never the exception message


def test_a_feature_with_malformed_evidence_is_unknown_not_a_crash() -> None:
    malformed = FeatureValue("met", True, ("Zwingliwood, not an Evidence",))  # type: ignore[arg-type]
    engine = Engine(kit.knowledge(), kit.registry(azole_drafted=lambda r, c: malformed))
    evaluation = engine.evaluate("TestOrderSelect", kit.record([]), kit.NOW)
    assert evaluation.features["azole_drafted"]["status"] == "unknown"
    assert any("- Azole antifungal during inotuzumab" in c["detail"] for c in unavailable(evaluation.cards))
