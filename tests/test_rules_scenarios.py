"""The two rule PlanDefinitions and their per-rule scenarios, checked as artifacts.

The scenarios themselves are replayed by the conftest collector (``tests/scenarios``);
this module checks what the replay cannot: every rule is encoded on the hooks it should
be, every action cites its source and names the data it reads, every expression compiles,
and every rule has scenarios that fire, stay silent and lack data.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import fhirpathpy
import pytest
from fhir.resources.R4B.plandefinition import PlanDefinition

from cds_service.engine import Engine
from cds_service.features import default_registry
from cds_service.knowledge import load_knowledge
from cds_service.knowledge.terms import EXT_SOURCE_STATEMENT, RULE_CODES, RULE_SYSTEM

REPO = Path(__file__).resolve().parents[1]
RULES = REPO / "plan_definitions" / "rules"
SCENARIOS = REPO / "tests" / "scenarios"
PLANS = {p.stem.removeprefix("PlanDefinition-"): json.loads(p.read_text(encoding="utf-8"))
         for p in sorted(RULES.glob("PlanDefinition-*.json"))}
#: Rules left out of order-select because they need the complete order session.
SIGN_ONLY = {"bsa-dose", "remission-dosing", "premedication"}
#: Scenario file prefix of each rule (architecture.md §8; issue 3).
PREFIX = {"ino2-eligibility": "ino2-eligibility", "azole-antifungal": "azole", "hepatotoxicity-vod": "hepatotoxicity",
          "liver-function-hold": "liver-function", "blood-counts": "blood-counts", "cycle-limit": "cycle-limit",
          "remission-dosing": "remission", "bsa-dose": "bsa-dose", "dose-schedule": "dose-schedule",
          "premedication": "premedication", "monotherapy": "monotherapy", "treatment-break": "treatment-break",
          "supportive-care": "supportive-care", "data-unavailable": "data-unavailable"}


def codes(plan: dict) -> list[str]:
    return [c["code"] for a in plan["action"] for cc in a["code"] for c in cc["coding"] if c["system"] == RULE_SYSTEM]


def expressions(node):
    if isinstance(node, dict):
        if node.get("language") == "text/fhirpath":
            yield node["expression"]
        for value in node.values():
            yield from expressions(value)
    elif isinstance(node, list):
        for value in node:
            yield from expressions(value)


@pytest.mark.parametrize("name", sorted(PLANS))
def test_rule_plan_is_a_valid_r4_plan_definition(name):
    PlanDefinition.model_validate(PLANS[name])


@pytest.mark.parametrize("name", sorted(PLANS))
def test_every_expression_compiles_with_fhirpathpy(name):
    found = list(expressions(PLANS[name]))
    assert found
    for expression in found:
        fhirpathpy.compile(expression, None)


def test_order_sign_has_every_rule_and_order_select_all_but_the_session_rules():
    assert set(codes(PLANS["SactOrderSign"])) == set(RULE_CODES)
    assert set(codes(PLANS["SactOrderSelect"])) == set(RULE_CODES) - SIGN_ONLY


@pytest.mark.parametrize("name", sorted(PLANS))
def test_every_rule_action_cites_its_source_and_reads_declared_data(name):
    plan = PLANS[name]
    hook = {"SactOrderSelect": "order-select", "SactOrderSign": "order-sign"}[name]
    for action in plan["action"]:
        assert action["trigger"] == [{"type": "named-event", "name": hook}], action["id"]
        assert len(action["title"]) < 140, action["id"]
        doc = action["documentation"][0]
        assert doc["type"] == "documentation" and doc["label"] and doc["display"], action["id"]
        if codes({"action": [action]}) == ["data-unavailable"]:
            assert "condition" not in action
            continue
        statements = [e for e in action["extension"] if e["url"] == EXT_SOURCE_STATEMENT]
        assert statements, action["id"]
        assert action["input"] and all(i["type"] for i in action["input"]), action["id"]
        assert action["condition"] and all(c["kind"] == "applicability" for c in action["condition"]), action["id"]


def test_the_engine_loads_the_rules_with_the_clinical_features():
    engine = Engine(load_knowledge(), default_registry())
    assert {(s.id, s.hook) for s in engine.services} >= {("SactOrderSelect", "order-select"),
                                                         ("SactOrderSign", "order-sign")}


def test_each_rule_has_scenarios_that_fire_stay_silent_and_lack_data():
    seen: dict[str, set[str]] = defaultdict(set)
    for path in SCENARIOS.glob("*.json"):
        for rule, prefix in PREFIX.items():
            if path.stem.startswith(prefix + "-"):
                expect = json.loads(path.read_text(encoding="utf-8"))["scenario"].get("expect", {})
                rules_shown = {c["rule"] for c in expect.get("cards", ())}
                if rule in rules_shown:
                    seen[rule].add("fire")
                if rule in expect.get("absent", ()) or (expect.get("only") and rule not in rules_shown):
                    seen[rule].add("silent")
                if "data-unavailable" in rules_shown or "missing" in path.stem or "unknown" in path.stem:
                    seen[rule].add("missing-data")
    for rule in RULE_CODES:
        wanted = {"fire", "missing-data"} if rule == "data-unavailable" else {"fire", "silent", "missing-data"}
        assert wanted <= seen[rule], f"{rule}: has {sorted(seen[rule])}"


def test_generated_scenarios_are_up_to_date():
    result = subprocess.run([sys.executable, str(SCENARIOS / "_make_rule_scenarios.py"), "--check"],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
