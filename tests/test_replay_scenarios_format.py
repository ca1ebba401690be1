"""Scenario files: the JSON Schema gives clear, located messages; plain bundles are inferred."""

from __future__ import annotations

import copy
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from cds_service.knowledge.terms import CRITERION_CODES, RULE_CODES
from cds_service.replay.scenario import (
    SCHEMA_PATH,
    ScenarioError,
    collect_paths,
    load_scenario,
    schema,
)

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
SCENARIOS = Path(__file__).parent / "scenarios"


def _bundle() -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {"resource": {"resourceType": "Patient", "id": "child-1", "birthDate": "today-9y"}},
            {"resource": {"resourceType": "MedicationRequest", "id": "signed", "status": "active",
                          "intent": "order", "subject": {"reference": "Patient/child-1"},
                          "medicationCodeableConcept": {"text": "fluconazole"}, "authoredOn": "now-1d"}},
            {"resource": {"resourceType": "MedicationRequest", "id": "draft-old", "status": "draft",
                          "intent": "order", "subject": {"reference": "Patient/child-1"},
                          "medicationCodeableConcept": {"text": "loratadine"}, "authoredOn": "now-2h",
                          "requester": {"reference": "Practitioner/dr-a"},
                          "encounter": {"reference": "Encounter/enc-1"}}},
            {"resource": {"resourceType": "MedicationRequest", "id": "draft-new", "status": "draft",
                          "intent": "order", "subject": {"reference": "Patient/child-1"},
                          "medicationCodeableConcept": {"text": "inotuzumab ozogamicin"},
                          "authoredOn": "now-1h"}},
        ],
    }


def _scenario(**header: Any) -> dict[str, Any]:
    doc = {
        "scenario": {
            "title": "A draft inotuzumab order is checked",
            "hook": "order-select",
            "selections": ["MedicationRequest/draft-new"],
            "expect": {"cards": [{"rule": "ino2-eligibility", "indicator": "warning",
                                  "criteria": {"child": "met"}}], "absent": ["azole-antifungal"]},
        },
        "bundle": _bundle(),
    }
    doc["scenario"].update(header)
    return {k: v for k, v in doc.items()}


def _write(tmp_path: Path, doc: Any, name: str = "case.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(doc) if not isinstance(doc, str) else doc)
    return path


def _problems(tmp_path: Path, doc: Any) -> str:
    with pytest.raises(ScenarioError) as info:
        load_scenario(_write(tmp_path, doc))
    return str(info.value)


def test_a_valid_scenario_loads_with_its_header(tmp_path: Path) -> None:
    scenario = load_scenario(_write(tmp_path, _scenario()))
    assert scenario.title == "A draft inotuzumab order is checked"
    assert scenario.hook == "order-select"
    assert scenario.selections == ("MedicationRequest/draft-new",)
    assert scenario.expect is not None
    assert scenario.expect.cards[0].criteria == {"child": "met"}
    assert scenario.expect.absent == ("azole-antifungal",)
    assert not scenario.inferred


def test_a_missing_hook_is_reported_with_the_file_and_json_path(tmp_path: Path) -> None:
    doc = _scenario()
    del doc["scenario"]["hook"]
    message = _problems(tmp_path, doc)
    assert "case.json" in message
    assert "at $.scenario: missing required key 'hook'" in message


def test_a_bad_indicator_names_the_allowed_values(tmp_path: Path) -> None:
    doc = _scenario()
    doc["scenario"]["expect"]["cards"][0]["indicator"] = "amber"
    message = _problems(tmp_path, doc)
    assert "at $.scenario.expect.cards[0].indicator: bad indicator 'amber': must be one of info, warning, critical" in message


def test_an_unknown_rule_code_is_named_and_the_known_codes_listed(tmp_path: Path) -> None:
    doc = _scenario()
    doc["scenario"]["expect"]["absent"] = ["azoles"]
    message = _problems(tmp_path, doc)
    assert "at $.scenario.expect.absent[0]: unknown rule code 'azoles'" in message
    assert "azole-antifungal" in message


def test_an_unknown_criterion_code_is_reported(tmp_path: Path) -> None:
    doc = _scenario()
    doc["scenario"]["expect"]["cards"][0]["criteria"] = {"age": "met"}
    assert "unknown INO2 criterion code 'age'" in _problems(tmp_path, doc)


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    doc = _scenario(hook="patient-view", now="yesterday")
    doc["scenario"]["expect"]["cards"][0]["rule"] = "nope"
    message = _problems(tmp_path, doc)
    assert "unsupported hook 'patient-view'" in message
    assert "bad evaluation time 'yesterday'" in message
    assert "unknown rule code 'nope'" in message


def test_an_unexpected_header_key_is_named(tmp_path: Path) -> None:
    message = _problems(tmp_path, _scenario(expected={}))
    assert "at $.scenario: unexpected key 'expected'" in message


def test_invalid_json_gives_line_and_column(tmp_path: Path) -> None:
    message = _problems(tmp_path, '{"scenario": {,}')
    assert "not valid JSON" in message and "line 1" in message


def test_a_selection_that_is_not_a_draft_order_is_reported(tmp_path: Path) -> None:
    message = _problems(tmp_path, _scenario(selections=["MedicationRequest/signed"]))
    assert "at $.scenario.selections[0]: MedicationRequest/signed is not a draft order" in message


def test_a_bundle_without_exactly_one_patient_is_reported(tmp_path: Path) -> None:
    doc = _scenario()
    doc["bundle"]["entry"].append(copy.deepcopy(doc["bundle"]["entry"][0]))
    doc["bundle"]["entry"][-1]["resource"]["id"] = "child-2"
    assert "exactly one Patient, found 2" in _problems(tmp_path, doc)


def test_a_rule_both_expected_and_absent_is_reported(tmp_path: Path) -> None:
    doc = _scenario()
    doc["scenario"]["expect"]["absent"] = ["ino2-eligibility"]
    assert "both expected and absent" in _problems(tmp_path, doc)


def test_a_plain_bundle_is_inferred_patient_drafts_and_newest_selection(tmp_path: Path) -> None:
    scenario = load_scenario(_write(tmp_path, _bundle(), "plain-fhir-export.json"))
    assert scenario.inferred and scenario.hook == "order-select" and scenario.expect is None
    assert scenario.title == "Plain fhir export"
    resolved = scenario.resolved(NOW)
    assert resolved.patient is not None and resolved.patient["id"] == "child-1"
    assert [d["id"] for d in resolved.draft_orders] == ["draft-old", "draft-new"]
    assert resolved.selections == ("MedicationRequest/draft-new",)
    assert "MedicationRequest/signed" in {f"{r['resourceType']}/{r['id']}" for r in resolved.record}
    assert all(r.get("status") != "draft" for r in resolved.record)
    assert resolved.user_id == "Practitioner/dr-a"


def test_order_sign_selects_every_draft_order(tmp_path: Path) -> None:
    doc = _scenario(hook="order-sign")
    del doc["scenario"]["selections"]
    resolved = load_scenario(_write(tmp_path, doc)).resolved(NOW)
    assert resolved.selections == ("MedicationRequest/draft-old", "MedicationRequest/draft-new")


def test_the_schema_is_valid_draft_2020_12_and_lists_the_project_codes() -> None:
    jsonschema.Draft202012Validator.check_schema(schema())
    assert schema()["$defs"]["ruleCode"]["enum"] == list(RULE_CODES)
    assert schema()["$defs"]["criterionCode"]["enum"] == list(CRITERION_CODES)
    assert "resourceType" not in json.loads(SCHEMA_PATH.read_text())  # not a knowledge artifact


def test_a_folder_is_collected_recursively_skipping_underscore_files(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    for name in ("a.json", "_helper.json", "sub/b.json", "notes.txt"):
        (tmp_path / name).write_text("{}")
    assert [p.relative_to(tmp_path).as_posix() for p in collect_paths([tmp_path])] == ["a.json", "sub/b.json"]


@pytest.mark.parametrize(
    "path", sorted(p for p in SCENARIOS.glob("*.json") if not p.name.startswith("_")), ids=lambda p: p.name
)
def test_every_scenario_in_the_corpus_is_valid(path: Path) -> None:
    load_scenario(path)


def test_the_replay_package_exports_a_sorted_public_surface() -> None:
    import cds_service.replay as replay

    assert replay.__all__ == sorted(replay.__all__)
    for name in replay.__all__:
        assert getattr(replay, name) is not None


def test_the_whole_record_scenarios_are_what_their_generator_writes() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("_make_whole_records", SCENARIOS / "_make_whole_records.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look themselves up there
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    built = module.build()
    assert len(built) >= 4
    for name, text in built.items():
        assert (SCENARIOS / name).read_text(encoding="utf-8") == text, f"{name} is stale: rerun the generator"
        assert text.count('"resourceType"') - 1 >= 300, f"{name} is not a whole record"
