"""The conformance artifacts (fhir_profiles/, plan_definitions/terminology/) agree with the code.

The rule-topic and INO2-criterion CodeSystems must define exactly the codes the engine and
features use (knowledge.terms), the attestation Questionnaire must ask exactly the INO2
criteria plus the three clinical facts the rules read, and every file must be valid R4
(fhir.resources R4B models, fhir-knowledge.md §4.3).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class

from cds_service.knowledge import terms

ROOT = Path(__file__).resolve().parents[1]
PROFILES = ROOT / "fhir_profiles"
TERMINOLOGY = ROOT / "plan_definitions" / "terminology"
RESPONSE_STATUS = f"{terms.CANONICAL_BASE}/CodeSystem/response-status"
EXTRA_ITEMS = ("response-status", "mrd-negative", "hsct-planned")


def _resources() -> list[tuple[Path, dict[str, Any]]]:
    found = []
    for path in sorted([*PROFILES.glob("*.json"), *TERMINOLOGY.glob("*.json")]):
        data = json.loads(path.read_text("utf-8"))
        if isinstance(data, dict) and "resourceType" in data:  # not e.g. scenario.schema.json
            found.append((path, data))
    return found


RESOURCES = _resources()
BY_URL = {data.get("url"): data for _, data in RESOURCES}


def _codes(codesystem: dict[str, Any]) -> list[str]:
    out: list[str] = []
    for concept in codesystem.get("concept", []):
        out.append(concept["code"])
        out.extend(_codes(concept))
    return out


@pytest.mark.parametrize("path, data", RESOURCES, ids=lambda v: f"{v.name} is valid R4" if isinstance(v, Path) else "")
def test_every_artifact_validates_with_the_r4b_model_of_its_type(path: Path, data: dict[str, Any]) -> None:
    get_fhir_model_class(data["resourceType"]).model_validate(data)


@pytest.mark.parametrize("path, data", RESOURCES, ids=lambda v: f"{v.name} has the package metadata" if isinstance(v, Path) else "")
def test_every_artifact_carries_crmi_metadata_and_our_version(path: Path, data: dict[str, Any]) -> None:
    for element in ("url", "version", "name", "title", "status", "experimental", "date", "publisher", "description"):
        assert data.get(element) not in (None, ""), element
    assert data["version"] == terms.KNOWLEDGE_VERSION
    assert data["url"] == f"{terms.CANONICAL_BASE}/{data['resourceType']}/{data['id']}"
    assert path.name == f"{data['resourceType']}-{data['id']}.json"


def test_the_rule_codesystem_defines_exactly_the_rule_codes() -> None:
    codesystem = BY_URL[terms.RULE_SYSTEM]
    assert tuple(_codes(codesystem)) == terms.RULE_CODES
    assert codesystem["content"] == "complete" and codesystem["caseSensitive"] is True
    assert all(c.get("display") and c.get("definition") for c in codesystem["concept"])


def test_the_criterion_codesystem_defines_exactly_the_ino2_criteria_with_their_source() -> None:
    codesystem = BY_URL[terms.CRITERION_SYSTEM]
    assert tuple(_codes(codesystem)) == terms.CRITERION_CODES
    for concept in codesystem["concept"]:
        sources = [e for e in concept.get("extension", []) if e["url"] == terms.EXT_SOURCE_STATEMENT]
        assert sources, concept["code"]
        assert concept["definition"].startswith("INO2: ")


def test_the_override_reasons_are_the_five_agreed_ones() -> None:
    codesystem = BY_URL[terms.OVERRIDE_REASON_SYSTEM]
    assert _codes(codesystem) == [
        "record-incomplete", "clinical-judgement", "mdt-agreed", "already-addressed", "not-applicable"]
    assert all(c.get("display") and c.get("definition") for c in codesystem["concept"])


def test_the_attestation_asks_every_criterion_plus_response_mrd_and_hsct() -> None:
    questionnaire = BY_URL[f"{terms.CANONICAL_BASE}/Questionnaire/Ino2Attestation"]
    items = {item["linkId"]: item for item in questionnaire["item"]}
    assert [i["linkId"] for i in questionnaire["item"]] == [*terms.CRITERION_CODES, *EXTRA_ITEMS]
    for code in terms.CRITERION_CODES:
        assert items[code]["type"] == "boolean"
        assert items[code]["code"] == [
            {"system": terms.CRITERION_SYSTEM, "code": code, "display": items[code]["text"]}]
    assert items["mrd-negative"]["type"] == items["hsct-planned"]["type"] == "boolean"
    status = items["response-status"]
    assert status["type"] == "choice"
    options = [o["valueCoding"] for o in status["answerOption"]]
    assert [(o["system"], o["code"]) for o in options] == [
        (RESPONSE_STATUS, "CR"), (RESPONSE_STATUS, "CRi"), (RESPONSE_STATUS, "not-in-CR")]
    assert _codes(BY_URL[RESPONSE_STATUS]) == ["CR", "CRi", "not-in-CR"]


def test_the_response_profile_fixes_the_attestation_questionnaire() -> None:
    profile = BY_URL[f"{terms.STRUCTURE_DEFINITION_BASE}/SactIno2QuestionnaireResponse"]
    (element,) = [e for e in profile["differential"]["element"] if e["path"] == "QuestionnaireResponse.questionnaire"]
    assert element["fixedCanonical"] == (
        f"{terms.CANONICAL_BASE}/Questionnaire/Ino2Attestation|{terms.KNOWLEDGE_VERSION}")


@pytest.mark.parametrize("url", [terms.EXT_SOURCE_STATEMENT, terms.EXT_MATCH_TEXT, terms.EXT_EXCLUDE_ROUTE_TEXT],
                         ids=lambda u: f"extension {u.rsplit('/', 1)[1]} is defined")
def test_every_extension_we_use_is_defined(url: str) -> None:
    definition = BY_URL[url]
    assert definition["type"] == "Extension" and definition["derivation"] == "constraint"
    fixed = [e for e in definition["differential"]["element"] if e["path"] == "Extension.url"]
    assert fixed == [{"id": "Extension.url", "path": "Extension.url", "fixedUri": url}]


def test_profiles_bind_only_to_valuesets_that_exist_at_our_version() -> None:
    for _, data in RESOURCES:
        if data["resourceType"] != "StructureDefinition":
            continue
        for element in data["differential"]["element"]:
            bound = (element.get("binding") or {}).get("valueSet")
            if bound:
                url, _, version = bound.partition("|")
                assert url in BY_URL and version == terms.KNOWLEDGE_VERSION, bound
