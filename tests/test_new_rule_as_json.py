"""A new card rule is JSON only: no Python changes, no rule-specific branch in the engine."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from fixtures.engine import kit

import cds_service.engine as engine_pkg
from cds_service.engine import Engine
from cds_service.knowledge.terms import RULE_CODES

NEW_RULE: dict[str, Any] = {
    "id": "large-bsa",
    "title": "Body surface area above 1.0 m2: check dose capping policy",
    "description": "The patient's body surface area is above 1.0 m2.",
    "code": [{"coding": [{"system": "https://sact-cds.org/fhir/CodeSystem/sact-cds-rule", "code": "bsa-cap-check"}]}],
    "priority": "routine",
    "documentation": [{"type": "documentation", "label": "Local policy", "url": "https://example.org/policy/bsa-cap"}],
    "input": [{"type": "Observation"}],
    "condition": [
        {"kind": "applicability", "expression": {"language": "text/fhirpath", "expression": "%features.bsa_m2.value > 1.0"}}
    ],
}


def test_a_rule_appended_as_json_shows_its_card() -> None:
    assert "bsa-cap-check" not in RULE_CODES  # a code the Python has never heard of
    resources = kit.fixture_resources()
    resources[kit.SIGN_PD]["action"].append(NEW_RULE)
    engine = Engine(kit.knowledge(resources), kit.registry())
    evaluation = engine.evaluate("TestOrderSign", kit.record([]), kit.NOW)
    (card,) = evaluation.cards
    assert card["summary"] == NEW_RULE["title"]
    assert card["indicator"] == "info"
    assert card["source"]["topic"]["code"] == "bsa-cap-check"
    assert card["source"]["url"] == "https://example.org/policy/bsa-cap"
    assert "Body surface area 1.2 m2 on 2026-11-20" in card["detail"]
    assert evaluation.rule_codes == ["bsa-cap-check"]


def test_the_new_rule_runs_on_every_hook_of_its_plan_and_stays_silent_when_false() -> None:
    resources = kit.fixture_resources()
    resources[kit.SIGN_PD]["action"].append(NEW_RULE)
    engine = Engine(kit.knowledge(resources), kit.registry())
    for hook in ("order-sign", "order-select"):
        assert engine.evaluate("TestOrderSign", kit.record([]), kit.NOW, hook=hook).rule_codes == ["bsa-cap-check"]
    small = kit.observation("bsa-2", "8277-6", 0.9, "m2", "2026-11-22T10:00:00Z")
    assert engine.evaluate("TestOrderSign", kit.record([], observations=[small]), kit.NOW).cards == []


def test_the_new_rules_input_reaches_discovery_prefetch() -> None:
    resources = kit.fixture_resources()
    rule = dict(NEW_RULE, input=[{"type": "AllergyIntolerance"}])
    resources[kit.SIGN_PD]["action"].append(rule)
    engine = Engine(kit.knowledge(resources), kit.registry())
    prefetch = engine.service("TestOrderSign").prefetch
    assert prefetch["allergyIntolerances"] == "AllergyIntolerance?patient={{context.patientId}}"


def test_the_engine_source_names_no_rule_code() -> None:
    source = "".join(
        Path(inspect.getfile(module)).read_text(encoding="utf-8")
        for module in (engine_pkg, *(getattr(engine_pkg, m) for m in ("cards", "conditions", "discovery", "evaluate", "suggestions", "apply")))
    )
    for code in RULE_CODES:
        if code != "data-unavailable":  # the template's code: the engine's own card
            assert f'"{code}"' not in source and f"'{code}'" not in source, code
