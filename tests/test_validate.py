"""`cds-service validate`: the shipped knowledge passes; each kind of broken copy is reported by
file and element, and the command exits non-zero.

The negative tests build a tiny, valid knowledge package in a tmp dir (a CodeSystem, a ValueSet,
an ActivityDefinition and an eca-rule PlanDefinition, with its own verified-code list and
changelog) and break one thing in it, so they do not depend on artifacts still being written.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from cds_service.cli import main
from cds_service.errors import ArtifactInvalid
from cds_service.knowledge import iter_problems, load_knowledge, terms
from cds_service.knowledge._schema import schema_path

BASE = terms.CANONICAL_BASE
VERSION = terms.KNOWLEDGE_VERSION
RULES = f"{BASE}/CodeSystem/sact-cds-rule"
ATC, RXNORM = terms.ATC, terms.RXNORM


def _artifact(rtype: str, rid: str, name: str, **fields: Any) -> dict[str, Any]:
    return {
        "resourceType": rtype, "id": rid, "url": f"{BASE}/{rtype}/{rid}", "version": VERSION,
        "name": name, "title": f"{name} (test)", "status": "draft", "experimental": False,
        "date": "2026-11-23", "publisher": "sact-cds", "description": f"Test {rtype}.", **fields,
    }


PACKAGE: dict[str, dict[str, Any]] = {
    "fhir_profiles/CodeSystem-sact-cds-rule.json": _artifact(
        "CodeSystem", "sact-cds-rule", "SactCdsRule", content="complete",
        concept=[{"code": "azole-antifungal", "display": "Azole antifungal"}],
    ),
    "plan_definitions/terminology/ValueSet-SystemicAzoleAntifungals.json": _artifact(
        "ValueSet", "SystemicAzoleAntifungals", "SystemicAzoleAntifungals",
        compose={"include": [
            {"system": ATC, "filter": [{"property": "concept", "op": "is-a", "value": "J02AC"}]},
            {"system": RXNORM, "concept": [{"code": "121243", "display": "voriconazole"}]},
        ]},
    ),
    "plan_definitions/regimen/ActivityDefinition-Loratadine10Mg.json": _artifact(
        "ActivityDefinition", "Loratadine10Mg", "Loratadine10Mg", kind="MedicationRequest",
        intent="proposal",
        productCodeableConcept={"coding": [{"system": ATC, "code": "R06AX13"}], "text": "loratadine"},
        dosage=[{"text": "10 mg orally"}],
    ),
    "plan_definitions/rules/PlanDefinition-SactOrderSelect.json": _artifact(
        "PlanDefinition", "SactOrderSelect", "SactOrderSelect",
        type={"coding": [{"system": "http://terminology.hl7.org/CodeSystem/plan-definition-type",
                          "code": "eca-rule"}]},
        relatedArtifact=[{"type": "depends-on",
                          "resource": f"{BASE}/ValueSet/SystemicAzoleAntifungals|{VERSION}"}],
        action=[{
            "title": "Azole antifungal drafted during inotuzumab",
            "code": [{"coding": [{"system": RULES, "code": "azole-antifungal"}]}],
            "trigger": [{"type": "named-event", "name": "order-select"}],
            "condition": [
                {"kind": "applicability", "expression": {
                    "language": "text/fhirpath",
                    "expression": "%features.azole_drafted.status = 'met'"}},
                {"kind": "applicability", "expression": {
                    "language": "text/fhirpath", "expression": "%now.exists()"}},
            ],
            "action": [{"title": "Order loratadine",
                        "definitionCanonical": f"{BASE}/ActivityDefinition/Loratadine10Mg|{VERSION}"}],
        }],
    ),
}
VERIFIED = [
    {"system": ATC, "code": "J02AC", "display": "azoles", "source": "test"},
    {"system": ATC, "code": "R06AX13", "display": "loratadine", "source": "test"},
    {"system": RXNORM, "code": "121243", "display": "voriconazole", "source": "test"},
]
CHANGELOG = f"# Changelog\n\n## [Unreleased]\n\n## [{VERSION}] - 2026-11-23\n### Added\n- all\n"
PD = "plan_definitions/rules/PlanDefinition-SactOrderSelect.json"
VS = "plan_definitions/terminology/ValueSet-SystemicAzoleAntifungals.json"
AD = "plan_definitions/regimen/ActivityDefinition-Loratadine10Mg.json"


def write_package(root: Path, package: dict[str, dict[str, Any]] | None = None) -> list[Path]:
    """Write the test package under ``root``; return its knowledge dirs."""
    for name, resource in (package or PACKAGE).items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(json.dumps(resource, indent=2), encoding="utf-8")
    (root / "plan_definitions/CHANGELOG.md").write_text(CHANGELOG, encoding="utf-8")
    (root / "fhir_profiles/scenario.schema.json").write_text('{"type": "object"}', encoding="utf-8")
    (root / "provenance").mkdir(exist_ok=True)
    (root / "provenance/verified-codes.json").write_text(json.dumps(VERIFIED), encoding="utf-8")
    return [root / "plan_definitions", root / "fhir_profiles"]


def broken(root: Path, file: str, change: Callable[[dict[str, Any]], None]) -> list[Path]:
    package = copy.deepcopy(PACKAGE)
    change(package[file])
    return write_package(root, package)


@pytest.fixture(scope="session")
def r4_schema_file() -> Path:
    """The R4 fhir.schema.json, fetched once with `npm pack` (cached under .cache/)."""
    return schema_path()


def test_the_shipped_knowledge_validates_clean(r4_schema_file: Path) -> None:
    problems = [str(p) for p in iter_problems(schema=r4_schema_file)]
    assert problems == []


def test_a_minimal_valid_package_has_no_problems(tmp_path: Path, r4_schema_file: Path) -> None:
    assert [str(p) for p in iter_problems(write_package(tmp_path), schema=r4_schema_file)] == []


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """A change that sets ``a.b[0].c`` (dotted, with indices) to ``value``."""
    def change(resource: dict[str, Any]) -> None:
        *parents, last = path.replace("[", ".").replace("]", "").split(".")
        node: Any = resource
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        node[int(last) if last.isdigit() else last] = value
    return change


def _rename(resource: dict[str, Any]) -> None:
    resource["id"] = "SactOrderSign"
    resource["url"] = f"{BASE}/PlanDefinition/SactOrderSign"


CONDITION = "action[0].condition[0].expression.expression"
BROKEN = {
    "a wrong type in an element is an R4B model problem": (
        PD, _set("action[0].title", 5), "action[0].title", "R4B model"),
    "an element R4 does not have is an R4 JSON schema problem": (
        PD, _set("action[0].subjectCanonical", "http://hl7.org/fhir/StructureDefinition/Patient"),
        "action[0].subjectCanonical", "R4 JSON schema"),
    "an unresolvable pinned canonical is a problem": (
        PD, _set("action[0].action[0].definitionCanonical", f"{BASE}/ActivityDefinition/Nope|{VERSION}"),
        "action[0].action[0].definitionCanonical", "does not resolve"),
    "a pinned canonical of another version is a problem": (
        PD, _set("relatedArtifact[0].resource", f"{BASE}/ValueSet/SystemicAzoleAntifungals|9.9.9"),
        "relatedArtifact[0].resource", "pins version '9.9.9'"),
    "a valueset code not in the verified list is a problem": (
        VS, _set("compose.include[1].concept[0].code", "999999"),
        "compose.include[1].concept[0].code", "not in provenance/verified-codes.json"),
    "a valueset filter value not in the verified list is a problem": (
        VS, _set("compose.include[0].filter[0].value", "J02AX"),
        "compose.include[0].filter[0].value", "not in provenance/verified-codes.json"),
    "an activity product code not in the verified list is a problem": (
        AD, _set("productCodeableConcept.coding[0].code", "R06AX99"),
        "productCodeableConcept.coding[0].code", "not in provenance/verified-codes.json"),
    "a code of our own system must be defined in its CodeSystem": (
        PD, _set("action[0].code[0].coding[0].code", "no-such-rule"),
        "action[0].code[0].coding[0].code", "not defined in CodeSystem"),
    "a FHIRPath that does not compile is a problem": (
        PD, _set(CONDITION, "%features.azole_drafted.where("), CONDITION, "does not parse"),
    "an unknown FHIRPath function is a problem": (
        PD, _set(CONDITION, "%draftOrders.frobnicate()"), CONDITION, "unknown FHIRPath function"),
    "today() in an expression is a problem": (
        PD, _set(CONDITION, "%features.x.value < today()"), CONDITION, "today() reads the wall clock"),
    "now() in an expression is a problem": (
        PD, _set(CONDITION, "now() > %now"), CONDITION, "now() reads the wall clock"),
    "a version other than the knowledge version is a problem": (
        VS, _set("version", "0.1.0"), "version", "is not the knowledge version"),
    "a file name that does not match the id is a problem": (
        PD, _rename, "id", "rename it to PlanDefinition-SactOrderSign.json"),
    "missing CRMI metadata is a problem": (
        AD, lambda r: r.pop("publisher"), "publisher", "missing CRMI"),
    "a url that is not the canonical of type and id is a problem": (
        AD, _set("url", f"{BASE}/ActivityDefinition/Other"), "url", "should be"),
}


@pytest.mark.parametrize(("file", "change", "element", "message"), BROKEN.values(), ids=BROKEN.keys())
def test_a_broken_copy_is_reported_by_file_and_element(
    tmp_path: Path, r4_schema_file: Path, file: str, change: Callable[[dict[str, Any]], None],
    element: str, message: str,
) -> None:
    dirs = broken(tmp_path, file, change)
    problems = list(iter_problems(dirs, schema=r4_schema_file))
    matching = [p for p in problems if p.file == file and p.element == element and message in p.message]
    assert matching, "\n".join(map(str, problems))
    assert str(matching[0]).startswith(f"{file}: {element}: ")


def test_an_r4b_only_element_passes_the_models_so_only_the_schema_catches_it(
    tmp_path: Path, r4_schema_file: Path
) -> None:
    dirs = broken(tmp_path, PD, _set("action[0].subjectCanonical", "http://hl7.org/x"))
    problems = list(iter_problems(dirs, schema=r4_schema_file))
    assert [p.message.split(":")[0] for p in problems] == ["R4 JSON schema"]


def test_a_no_break_space_in_a_string_is_valid_r4(tmp_path: Path, r4_schema_file: Path) -> None:
    """Verbatim source quotes contain U+00A0; R4 strings allow it (see _schema.py)."""
    dirs = broken(tmp_path, AD, _set("dosage[0].text", "10\u00a0mg orally"))
    assert [str(p) for p in iter_problems(dirs, schema=r4_schema_file)] == []


def test_invalid_json_is_a_problem_naming_the_line(tmp_path: Path) -> None:
    dirs = write_package(tmp_path)
    (tmp_path / VS).write_text('{"resourceType": "ValueSet",\n  "id": }', encoding="utf-8")
    problems = [str(p) for p in iter_problems(dirs, schema=False)]
    assert f"{VS}: not valid JSON: Expecting value at line 2 column 9" in problems


def test_files_without_a_resource_type_are_not_artifacts(tmp_path: Path) -> None:
    dirs = write_package(tmp_path)
    assert [str(p) for p in iter_problems(dirs, schema=False)] == []  # scenario.schema.json skipped


def test_a_duplicate_canonical_url_is_a_problem(tmp_path: Path) -> None:
    dirs = write_package(tmp_path)
    copy_ = dict(PACKAGE[AD], id="Loratadine10MgCopy")
    (tmp_path / "plan_definitions/regimen/ActivityDefinition-Loratadine10MgCopy.json").write_text(
        json.dumps(copy_), encoding="utf-8")
    messages = [p.message for p in iter_problems(dirs, schema=False)]
    assert any(m.startswith("duplicate canonical url") for m in messages), messages


def test_a_changelog_behind_the_knowledge_version_is_a_problem(tmp_path: Path) -> None:
    dirs = write_package(tmp_path)
    (tmp_path / "plan_definitions/CHANGELOG.md").write_text("## [0.0.9] - 2026-01-01\n", "utf-8")
    problems = [str(p) for p in iter_problems(dirs, schema=False)]
    assert problems == [f"plan_definitions/CHANGELOG.md: newest entry is 0.0.9 but "
                        f"terms.KNOWLEDGE_VERSION is {VERSION}: bump them together"]


def test_a_schema_that_cannot_be_fetched_fails_validation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A skipped check is not a pass: no npm and no cached schema is itself a problem."""
    dirs = write_package(tmp_path / "k")
    monkeypatch.delenv("CDS_FHIR_SCHEMA", raising=False)
    monkeypatch.setenv("CDS_CACHE_DIR", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("PATH", str(tmp_path / "no-bin"))
    problems = list(iter_problems(dirs, schema=True))
    assert len(problems) == 1
    assert "R4 JSON schema unavailable: npm is not installed" in problems[0].message


def test_a_schema_that_is_not_r4_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "fhir.schema.json"
    fake.write_text(json.dumps({"id": "http://hl7.org/fhir/json-schema/5.0", "definitions": {}}))
    monkeypatch.setenv("CDS_FHIR_SCHEMA", str(fake))
    problems = [p.message for p in iter_problems(write_package(tmp_path / "k"), schema=True)]
    assert len(problems) == 1 and "is not the FHIR R4 JSON schema" in problems[0], problems


def test_load_knowledge_refuses_bad_knowledge_listing_every_problem(tmp_path: Path) -> None:
    package = copy.deepcopy(PACKAGE)
    package[PD]["action"][0]["title"] = 5
    package[VS]["version"] = "0.1.0"
    with pytest.raises(ArtifactInvalid) as caught:
        load_knowledge(write_package(tmp_path, package))
    assert f"{PD}: action[0].title: R4B model" in str(caught.value)
    assert f"{VS}: version: version '0.1.0'" in str(caught.value)


def test_load_knowledge_indexes_artifacts_by_canonical_url(tmp_path: Path) -> None:
    kb = load_knowledge(write_package(tmp_path))
    assert kb.version == VERSION
    assert sorted(kb.resources) == sorted(r["url"] for r in PACKAGE.values())
    assert kb.get(f"{BASE}/ActivityDefinition/Loratadine10Mg|{VERSION}")["id"] == "Loratadine10Mg"
    assert [p["id"] for p in kb.rule_plans()] == ["SactOrderSelect"]
    assert kb.terminology is not None


def test_validate_exits_0_on_the_shipped_knowledge(r4_schema_file: Path) -> None:
    result = CliRunner().invoke(main, ["validate"], env={"CDS_FHIR_SCHEMA": str(r4_schema_file)})
    assert result.exit_code == 0, result.output
    assert " 0 problems" in result.output


def test_validate_exits_1_printing_each_problem_and_a_summary(
    tmp_path: Path, r4_schema_file: Path
) -> None:
    dirs = broken(tmp_path, PD, _set(CONDITION, "today() > %now"))
    args = ["validate"] + [arg for d in dirs for arg in ("--knowledge", str(d))]
    result = CliRunner().invoke(main, args, env={"CDS_FHIR_SCHEMA": str(r4_schema_file)})
    assert result.exit_code == 1, result.output
    assert f"{PD}: {CONDITION}: today() reads the wall clock" in result.output
    assert f"{len(PACKAGE)} artifacts, 1 problems" in result.output


def test_validate_reports_what_the_rule_engine_refuses(tmp_path: Path, r4_schema_file: Path) -> None:
    """The test rule names a feature nobody computes: the engine, built at validate time, says so."""
    package = copy.deepcopy(PACKAGE)
    package[PD]["action"][0]["condition"][0]["expression"]["expression"] = (
        "%features.no_such_feature.status = 'met'")
    dirs = write_package(tmp_path, package)
    args = ["validate"] + [arg for d in dirs for arg in ("--knowledge", str(d))]
    result = CliRunner().invoke(main, args, env={"CDS_FHIR_SCHEMA": str(r4_schema_file)})
    assert result.exit_code == 1, result.output
    assert f"{PD}: rule engine: " in result.output
    assert "no_such_feature" in result.output


def test_the_schema_accepts_fhir_version_4_0_1(r4_schema_file: Path) -> None:
    """The npm schema is the 4.0.0 build; 4.0.1 (what our profiles declare) is added in memory."""
    from cds_service.knowledge._schema import r4_schema

    sd = {"resourceType": "StructureDefinition", "url": "http://x", "name": "X", "status": "draft",
          "kind": "resource", "abstract": False, "type": "Patient", "fhirVersion": "4.0.1"}
    assert [e.message for e in r4_schema(r4_schema_file).iter_errors(sd)] == []
    assert [e.message for e in r4_schema(r4_schema_file).iter_errors(dict(sd, fhirVersion="9"))]


def test_a_remembered_pass_does_not_cover_changed_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """load_knowledge skips the slow content checks only for knowledge that already passed them."""
    monkeypatch.setenv("CDS_CACHE_DIR", str(tmp_path / "cache"))
    dirs = write_package(tmp_path / "k")
    load_knowledge(dirs)  # passes, and remembers it
    assert len(list((tmp_path / "cache/content-checked").iterdir())) == 1
    load_knowledge(dirs)  # trusts it
    package = copy.deepcopy(PACKAGE)
    package[PD]["action"][0]["title"] = 5
    package[PD]["action"][0]["condition"][1]["expression"]["expression"] = "today() > %now"
    with pytest.raises(ArtifactInvalid) as caught:
        load_knowledge(write_package(tmp_path / "k", package))
    assert "action[0].title: R4B model" in str(caught.value)
    assert "today() reads the wall clock" in str(caught.value)


def test_the_knowledge_package_exports_its_documented_api() -> None:
    import cds_service.knowledge as knowledge

    assert knowledge.__all__ == sorted(knowledge.__all__) == [
        "CycleDefinition", "KNOWLEDGE_DIRS", "KnowledgeBase", "Problem", "RegimenSchedule", "Terminology",
        "iter_problems", "load_knowledge", "regimen_schedule", "split_canonical", "transaction_bundle",
    ]
    assert all(hasattr(knowledge, name) for name in knowledge.__all__)
