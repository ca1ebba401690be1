"""The regimen artifacts say what the NZ regimen entry (and INO2) say.

The expectations are parsed from the source text itself (provenance/sources/), not copied
from the artifacts, so a dose, day, route, duration or window that drifts from the source
fails here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fhirpathpy
import pytest
from fhir.resources.R4B.activitydefinition import ActivityDefinition
from fhir.resources.R4B.plandefinition import PlanDefinition

ROOT = Path(__file__).resolve().parents[1]
REGIMEN_DIR = ROOT / "plan_definitions" / "regimen"
NZ_SOURCE = ROOT / "provenance" / "sources" / "nz-regimen-inotuzumab-not-in-cr.txt"
CLINICAL_REFERENCE = ROOT / "provenance" / "clinical-reference.md"
BASE = "https://sact-cds.org/fhir"
VERSION = "0.2.0"
SOURCE_STATEMENT = f"{BASE}/StructureDefinition/source-statement"
DAYS_OF_CYCLE = "http://hl7.org/fhir/StructureDefinition/timing-daysOfCycle"
UCUM = "http://unitsofmeasure.org"
CPG_ACTIVITY_PROFILE = (
    "http://hl7.org/fhir/uv/cpg/StructureDefinition/cpg-medicationrequestactivity")
PRODUCT_SYSTEMS = {"http://www.whocc.no/atc", "http://www.nlm.nih.gov/research/umls/rxnorm"}
MODELS = {"PlanDefinition": PlanDefinition, "ActivityDefinition": ActivityDefinition}

#: NZ table route wording -> the route text the ActivityDefinitions use.
ROUTES = {"oral administration": "oral", "intravenous": "intravenous"}
#: NZ table unit -> (UCUM code, dose-rate-type): BSA doses are calculated, flat doses ordered.
UNITS = {"mg/m²": ("mg/m2", "calculated"), "mg": ("mg", "ordered")}
CYCLE_ACTIONS = {"Cycle 1": ("cycle-1", "c1"), "Cycles 2 to 3": ("cycles-2-3", "c23")}
DRUG_CODES = {"loratadine": "lor", "paracetamol": "par", "dexamethasone": "dex",
              "inotuzumab ozogamicin": "ino"}

ROW = re.compile(
    r"^(?P<drug>[a-z][a-z ]*?) (?:\* )?(?P<dose>[\d.]+) (?P<unit>mg/m²|mg) (?:flat dosing )?"
    r"(?P<route>oral administration|intravenous)(?: (?P<days>\d+(?:, \d+)*))?"
    r"(?: (?P<minutes>\d+) minutes)?$"
)


# ----------------------------------------------------------------------------- source parsing

def nz_lines() -> list[str]:
    text = NZ_SOURCE.read_text(encoding="utf-8").replace("\u00a0", " ")
    return [line.strip().lstrip("•").strip() for line in text.splitlines()]


def _section(lines: list[str], start: str, end: str) -> list[str]:
    first = lines.index(start)
    return lines[first + 1 : lines.index(end, first + 1)]


def _cycle_of(line: str) -> str | None:
    return next((name for name in CYCLE_ACTIONS if line.startswith(f"{name} - ")), None)


def cycle_detail_rows() -> list[tuple[str, re.Match[str]]]:
    """(cycle name, row) for every medication row of the NZ "Cycle details" tables."""
    rows, cycle = [], None
    for line in _section(nz_lines(), "Cycle details", "Full details"):
        cycle = _cycle_of(line) or cycle
        if (match := ROW.match(line)) and match["days"]:
            rows.append((cycle, match))
    return rows


def full_detail_entries() -> list[tuple[str, int, re.Match[str], list[str]]]:
    """(cycle, day, row, instructions) for every per-day row of the NZ "Full details"."""
    entries: list[tuple[str, int, re.Match[str], list[str]]] = []
    cycle, day = None, None
    for line in _section(nz_lines(), "Full details", "Supportive Care Factors"):
        if _cycle_of(line):
            cycle = _cycle_of(line)
        elif line.startswith("Day: "):
            day = int(line.removeprefix("Day: "))
        elif match := ROW.match(line):
            entries.append((cycle, day, match, []))
        elif line and line not in {"Instructions:"} and not line.startswith("Medication "):
            entries[-1][3].append(line)
    return entries


def supportive_care_rows() -> list[tuple[str, str]]:
    lines = nz_lines()
    first = lines.index("Factor Value") + 1
    rows = lines[first : lines.index("", first)]
    return [tuple(row.split(": ", 1)) for row in rows]  # type: ignore[misc]


# ----------------------------------------------------------------------------- artifact access

def load(name: str) -> dict[str, Any]:
    return json.loads((REGIMEN_DIR / f"{name}.json").read_text(encoding="utf-8"))


def regimen() -> dict[str, Any]:
    return load("PlanDefinition-InotuzumabPaedRrBallNotInCr")


def walk_actions(actions: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for action in actions:
        yield action
        yield from walk_actions(action.get("action", []))


def actions_by_id(plan: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {a["id"]: a for a in walk_actions(plan["action"])}


def resolve(canonical: str) -> dict[str, Any]:
    """A pinned canonical -> the artifact file that defines it (any plan_definitions/ dir)."""
    url, _, version = canonical.partition("|")
    assert version == VERSION, f"{canonical} is not pinned to {VERSION}"
    rtype, rid = url.removeprefix(f"{BASE}/").split("/")
    path = ROOT / "plan_definitions"
    matches = list(path.rglob(f"{rtype}-{rid}.json"))
    assert len(matches) == 1, f"{canonical} resolves to {matches}"
    resource = json.loads(matches[0].read_text(encoding="utf-8"))
    assert (resource["url"], resource["version"]) == (url, version)
    return resource


def days_of_cycle(action: dict[str, Any]) -> list[int]:
    return [part["valueInteger"] for ext in action.get("extension", [])
            if ext["url"] == DAYS_OF_CYCLE for part in ext["extension"] if part["url"] == "day"]


def source_statements(element: dict[str, Any]) -> list[tuple[str, str]]:
    found = []
    for ext in element.get("extension", []):
        if ext["url"] == SOURCE_STATEMENT:
            parts = {p["url"]: p.get("valueCode", p.get("valueString")) for p in ext["extension"]}
            found.append((parts["document"], parts["quote"]))
    return found


def response_condition(expression: str, status: str | None, in_cr_cri: bool | None) -> list[Any]:
    """Evaluate a start condition against a `response_status` feature value (the shape
    cds_service.features computes: value.status CR | CRi | not-in-CR, value.in_cr_cri)."""
    feature = {"status": "met" if status else "unknown", "evidence": [], "note": None,
               "value": {"status": status, "in_cr_cri": in_cr_cri}}
    return fhirpathpy.evaluate({}, expression, {"features": {"response_status": feature}})


def quantity(q: dict[str, Any]) -> tuple[float, str]:
    assert q["system"] == UCUM and q["code"] == q["unit"]
    return q["value"], q["code"]


ARTIFACT_FILES = sorted(REGIMEN_DIR.glob("*.json"))


# ----------------------------------------------------------------------------- tests

@pytest.mark.parametrize("path", ARTIFACT_FILES, ids=lambda p: p.name)
def test_every_regimen_artifact_is_valid_r4_with_crmi_metadata(path: Path) -> None:
    resource = json.loads(path.read_text(encoding="utf-8"))
    MODELS[resource["resourceType"]].model_validate(resource)
    rtype, rid = resource["resourceType"], resource["id"]
    assert path.name == f"{rtype}-{rid}.json" and re.fullmatch(r"[A-Za-z0-9]+", rid)
    assert resource["url"] == f"{BASE}/{rtype}/{rid}" and resource["name"] == rid
    assert resource["version"] == VERSION
    assert (resource["status"], resource["experimental"]) == ("draft", False)
    assert (resource["date"], resource["publisher"]) == ("2026-11-23", "sact-cds")
    assert resource["title"] and resource["description"]


def test_the_regimen_is_a_clinical_protocol_titled_as_the_nz_entry() -> None:
    plan = regimen()
    assert plan["type"]["coding"][0]["code"] == "clinical-protocol"
    nz_title = next(line for line in nz_lines() if line.startswith("Cycle 1, and subsequent"))
    assert plan["title"] == nz_title.replace(" )", ")")
    labels = {ra.get("label"): ra for ra in plan["relatedArtifact"]}
    assert {"INO2", "NZ", "PBC2014", "NZ data sheet", "CR-CRi-regimen"} <= set(labels)
    assert labels["PBC2014"]["type"] == "citation"
    assert "10.1002/pbc.24721" in labels["PBC2014"]["url"]
    assert "1.361" in labels["INO2"]["display"]


def test_cycle_1_lasts_21_days_extendable_to_28_once() -> None:
    cycle = actions_by_id(regimen())["cycle-1"]
    assert cycle["timingTiming"]["repeat"] == {
        "count": 1, "duration": 21, "durationMax": 28, "durationUnit": "d"}
    assert cycle["textEquivalent"].startswith("If required, to allow recovery from toxicity")
    assert "condition" not in cycle  # "Cycle 1 is the same for all patients."


def test_cycles_2_to_3_last_28_days_after_cycle_1_only_when_not_in_cr() -> None:
    cycles = actions_by_id(regimen())["cycles-2-3"]
    assert cycles["timingTiming"]["repeat"] == {
        "count": 1, "countMax": 2, "duration": 28, "durationUnit": "d"}
    assert cycles["relatedAction"] == [{"actionId": "cycle-1", "relationship": "after-end"}]
    [condition] = cycles["condition"]
    assert condition["kind"] == "start"
    assert condition["expression"]["language"] == "text/fhirpath"
    expression = condition["expression"]["expression"]
    assert response_condition(expression, "not-in-CR", False) == [True]
    assert response_condition(expression, "CR", True) == [False]
    assert response_condition(expression, "CRi", True) == [False]
    assert response_condition(expression, None, None) == []  # unknown is not "false"
    [link] = cycles["documentation"]
    assert resolve(link["resource"])["id"] == "InotuzumabPaedRrBallCrCri"


@pytest.mark.parametrize(
    ("cycle", "row"), cycle_detail_rows(),
    ids=[f"{c} {r['drug']} {r['dose']} {r['unit']} days {r['days']}"
         for c, r in cycle_detail_rows()],
)
def test_every_cycle_details_row_is_an_action_per_day_with_its_dose(
    cycle: str, row: re.Match[str]
) -> None:
    cycle_id, prefix = CYCLE_ACTIONS[cycle]
    children = actions_by_id(regimen())[cycle_id]["action"]
    for day in (int(d) for d in row["days"].split(", ")):
        action_id = f"{prefix}-d{day}-{DRUG_CODES[row['drug']]}"
        [action] = [a for a in children if a["id"] == action_id]
        assert days_of_cycle(action) == [day]
        ad = resolve(action["definitionCanonical"])
        assert ad["productCodeableConcept"]["text"] == row["drug"]
        [dosage] = ad["dosage"]
        assert dosage["route"] == {"text": ROUTES[row["route"]]}
        [dose_rate] = dosage["doseAndRate"]
        unit, rate_type = UNITS[row["unit"]]
        assert quantity(dose_rate["doseQuantity"]) == (float(row["dose"]), unit)
        assert dose_rate["type"]["coding"][0]["code"] == rate_type
        if row["minutes"]:
            repeat = dosage["timing"]["repeat"]
            assert (repeat["duration"], repeat["durationUnit"]) == (int(row["minutes"]), "min")
        else:
            assert "timing" not in dosage


def test_the_cycle_details_tables_have_five_rows_per_cycle() -> None:
    rows = cycle_detail_rows()
    assert [c for c, _ in rows] == ["Cycle 1"] * 5 + ["Cycles 2 to 3"] * 5
    assert len(actions_by_id(regimen())["cycle-1"]["action"]) == 12
    assert len(actions_by_id(regimen())["cycles-2-3"]["action"]) == 12


@pytest.mark.parametrize(
    ("cycle", "day", "row", "instructions"), full_detail_entries(),
    ids=[f"{c} day {d} {r['drug']}" for c, d, r, _ in full_detail_entries()],
)
def test_every_full_details_instruction_is_the_actions_text(
    cycle: str, day: int, row: re.Match[str], instructions: list[str]
) -> None:
    _, prefix = CYCLE_ACTIONS[cycle]
    action = actions_by_id(regimen())[f"{prefix}-d{day}-{DRUG_CODES[row['drug']]}"]
    expected = " ".join(instructions).replace("insitutional", "institutional")  # source typo
    assert action["textEquivalent"] == expected
    ad = resolve(action["definitionCanonical"])
    assert ad["dosage"][0]["doseAndRate"][0]["doseQuantity"]["value"] == float(row["dose"])
    if row["drug"] == "inotuzumab ozogamicin":
        assert [i["text"] for i in ad["dosage"][0]["additionalInstruction"]] == instructions


def _window_source() -> tuple[int, int]:
    line = next(line for line in nz_lines() if line.startswith("Days of administration"))
    match = re.search(r"moved \+/- (\d+) days \(maintain a minimum of (\d+) days", line)
    assert match, line
    return int(match[1]), int(match[2])


@pytest.mark.parametrize("prefix", ["c1", "c23"])
def test_day_8_and_15_windows_follow_plus_minus_2_days_and_6_days_apart(prefix: str) -> None:
    shift, minimum = _window_source()
    actions = actions_by_id(regimen())

    def offsets(source: str) -> dict[str, tuple[float, float | None]]:
        result = {}
        for related in actions[source].get("relatedAction", []):
            assert related["relationship"] == "before-start"
            low, high = related["offsetRange"]["low"], related["offsetRange"].get("high")
            assert quantity(low)[1] == "d" and (high is None or quantity(high)[1] == "d")
            result[related["actionId"]] = (low["value"], high and high["value"])
        return result

    # nominal day 8 is 7 days after day 1; day 15 is 14 days after day 1 and 7 after day 8
    assert offsets(f"{prefix}-d1-ino") == {
        f"{prefix}-d8-ino": (max(7 - shift, minimum), 7 + shift),
        f"{prefix}-d15-ino": (max(14 - shift, 2 * minimum), 14 + shift),
    }
    assert offsets(f"{prefix}-d8-ino") == {f"{prefix}-d15-ino": (minimum, None)}
    assert offsets(f"{prefix}-d15-ino") == {}
    assert offsets(f"{prefix}-d1-ino")[f"{prefix}-d8-ino"] == (6, 9)
    assert offsets(f"{prefix}-d1-ino")[f"{prefix}-d15-ino"] == (12, 16)


@pytest.mark.parametrize("prefix", ["c1", "c23"])
@pytest.mark.parametrize("day", [1, 8, 15])
def test_premedication_precedes_that_days_inotuzumab_dose(prefix: str, day: int) -> None:
    actions = actions_by_id(regimen())
    ino = f"{prefix}-d{day}-ino"
    for drug in ("lor", "par"):
        [related] = actions[f"{prefix}-d{day}-{drug}"]["relatedAction"]
        assert (related["actionId"], related["relationship"]) == (ino, "before-start")
        window = related["offsetRange"]
        assert (quantity(window["low"]), quantity(window["high"])) == ((30, "min"), (60, "min"))
        assert source_statements(related) == [
            ("NZ", "30 to 60 minutes prior to inotuzumab ozogamicin.")]
    [related] = actions[f"{prefix}-d{day}-dex"]["relatedAction"]
    assert (related["actionId"], related["relationship"]) == (ino, "before-start")
    assert quantity(related["offsetDuration"]) == (30, "min")
    assert "or as per institutional practice" in actions[f"{prefix}-d{day}-dex"]["textEquivalent"]


def test_every_dosing_action_carries_its_table_row_and_day_as_source_statements() -> None:
    for cycle_id in ("cycle-1", "cycles-2-3"):
        for action in actions_by_id(regimen())[cycle_id]["action"]:
            statements = [(d, q.replace("\u00a0", " ")) for d, q in source_statements(action)]
            [day] = days_of_cycle(action)
            assert ("NZ", f"Day: {day}") in statements, action["id"]
            rows = [ROW.match(q) for d, q in statements if d == "NZ"]
            assert any(row and str(day) in row["days"].split(", ") for row in rows), action["id"]


def test_treatment_duration_policy_states_each_nz_and_ino2_rule() -> None:
    policy = actions_by_id(regimen())["treatment-duration-policy"]
    assert "definitionCanonical" not in policy
    children = policy["action"]
    assert len(children) == 4
    for child in children:
        assert {doc for doc, _ in source_statements(child)} == {"NZ", "INO2"}, child["id"]
    text = " ".join(c["description"] for c in children)
    facts = ("2 cycles", "third cycle", "MRD negativity", "maximum of 6 cycles", "within 3 cycles")
    for fact in facts:
        assert fact in text


def test_every_supportive_care_factor_row_is_a_child_action() -> None:
    group = actions_by_id(regimen())["supportive-care"]
    by_title = {a["title"]: a for a in group["action"]}
    rows = supportive_care_rows()
    assert len(rows) == 7
    for factor, value in rows:
        action = by_title[factor]
        assert action["description"] == value.replace("Sinsuoidal", "Sinusoidal")  # source typo
        [(document, quote)] = source_statements(action)
        assert document == "NZ" and quote.replace("\u00a0", " ") == f"{factor}: {value}"
    notes = [a for a in group["action"] if a["title"] not in dict(rows)]
    assert len(notes) == 3
    assert any("azole antifungals should be withheld" in a["description"] for a in notes)
    assert any("hepatitis B" in a["title"] for a in notes)
    assert any("only for further cycles if not in complete remission" in a["description"]
               for a in notes)


def test_every_reference_between_artifacts_resolves_pinned() -> None:
    for path in ARTIFACT_FILES:
        resource = json.loads(path.read_text(encoding="utf-8"))
        ids = {a["id"] for a in walk_actions(resource.get("action", []))}
        assert len(ids) == len(list(walk_actions(resource.get("action", []))))
        for action in walk_actions(resource.get("action", [])):
            if "definitionCanonical" in action:
                definition = resolve(action["definitionCanonical"])
                assert definition["resourceType"] == "ActivityDefinition"
            for related in action.get("relatedAction", []):
                assert related["actionId"] in ids, (path.name, action["id"])
            for doc in action.get("documentation", []):
                if "resource" in doc:
                    resolve(doc["resource"])
        for artifact in resource.get("relatedArtifact", []):
            if "resource" in artifact:
                resolve(artifact["resource"])


def _verified_code(code: str) -> bool:
    lines = [line for line in CLINICAL_REFERENCE.read_text(encoding="utf-8").splitlines()
             if re.search(rf"\b{re.escape(code)}\b", line)]
    return bool(lines) and not any("UNVERIFIED" in line for line in lines)


@pytest.mark.parametrize(
    "path", sorted(REGIMEN_DIR.glob("ActivityDefinition-*.json")), ids=lambda p: p.stem)
def test_activity_definitions_are_cpg_medication_requests_with_verified_codes_only(
    path: Path,
) -> None:
    ad = json.loads(path.read_text(encoding="utf-8"))
    assert CPG_ACTIVITY_PROFILE in ad["meta"]["profile"]
    assert (ad["kind"], ad["intent"]) == ("MedicationRequest", "proposal")
    assert ad["doNotPerform"] is False
    assert ad["profile"] == "http://hl7.org/fhir/uv/cpg/StructureDefinition/cpg-medicationrequest"
    assert ad["code"]["coding"][0]["code"] == "order-medication"
    product = ad["productCodeableConcept"]
    assert product["text"]
    for coding in product["coding"]:
        assert coding["system"] in PRODUCT_SYSTEMS
        assert _verified_code(coding["code"]), coding
    [dosage] = ad["dosage"]
    assert set(dosage["route"]) == {"text"}  # no SNOMED route code is verified
    assert source_statements(dosage), "the dose must cite its source line"


def test_the_cr_cri_regimen_is_a_labelled_draft_stub_of_0_5_mg_m2_on_days_1_8_15() -> None:
    stub = load("PlanDefinition-InotuzumabPaedRrBallCrCri")
    assert stub["status"] == "draft" and "STUB" in stub["title"] and "STUB" in stub["description"]
    assert "not in this project's sources" in stub["description"]
    [cycle] = stub["action"]
    assert cycle["timingTiming"]["repeat"]["duration"] == 28
    [condition] = cycle["condition"]
    assert condition["kind"] == "start"
    expression = condition["expression"]["expression"]
    assert response_condition(expression, "CR", True) == [True]
    assert response_condition(expression, "CRi", True) == [True]
    assert response_condition(expression, "not-in-CR", False) == [False]
    doses = {days_of_cycle(a)[0]: resolve(a["definitionCanonical"]) for a in cycle["action"]}
    assert sorted(doses) == [1, 8, 15]
    for ad in doses.values():
        assert quantity(ad["dosage"][0]["doseAndRate"][0]["doseQuantity"]) == (0.5, "mg/m2")
