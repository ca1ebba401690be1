"""The clinical risk management file: the hazard log, its checks and its generated views.

`cds-service safety --check` must pass on the shipped file and fail on a tampered copy: a
stale view, a control that names a test that does not exist, a rule code no hazard covers,
a rating that does not follow from the DCB0129 matrix. Each tampered copy is a temporary
repository root holding copies of docs/safety/ and the rule CodeSystem, with tests/
linked to the real test suite.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from cds_service.cli import main
from cds_service.safety import (
    CASE_FILE,
    LOG_FILE,
    MATRIX,
    RULE_CODESYSTEM_FILE,
    SCHEMA_FILE,
    VIEW_FILE,
    check_log,
    collect_test_ids,
    load_safety_file,
    rating,
)

REPO = Path(__file__).resolve().parents[1]


def run(*args: str) -> Any:
    return CliRunner().invoke(main, ["safety", *args], prog_name="cds-service")


@pytest.fixture()
def root(tmp_path: Path) -> Path:
    """A copy of the repository's clinical safety file, with the real tests linked in."""
    for rel in (LOG_FILE, SCHEMA_FILE, VIEW_FILE, CASE_FILE, RULE_CODESYSTEM_FILE):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / rel, tmp_path / rel)
    (tmp_path / "tests").symlink_to(REPO / "tests", target_is_directory=True)
    return tmp_path


def edit_json(root: Path, rel: str, change: Callable[[Any], None]) -> None:
    path = root / rel
    data = json.loads(path.read_text(encoding="utf-8"))
    change(data)
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def hazard(log: Any, hid: str) -> dict[str, Any]:
    return next(h for h in log["hazards"] if h["id"] == hid)


# ------------------------------------------------------------------ the shipped file


def test_the_shipped_hazard_log_passes_every_check_and_its_views_are_current() -> None:
    result = run("--check")
    assert result.exit_code == 0, result.output
    assert "up to date" in result.output


def test_every_rule_code_of_the_card_contract_belongs_to_a_hazard() -> None:
    sf = load_safety_file(REPO)
    codesystem = json.loads((REPO / RULE_CODESYSTEM_FILE).read_text(encoding="utf-8"))
    codes = {c["code"] for c in codesystem["concept"]}
    assert set(sf.rule_codes) == codes and len(codes) == 14
    covered = {code for h in sf.log["hazards"] for code in h["rules"]}
    assert codes <= covered
    assert check_log(sf) == []


def test_the_hazards_the_issue_lists_are_in_the_log_with_stable_ids() -> None:
    titles = {h["id"]: h["title"].lower() for h in load_safety_file(REPO).log["hazards"]}
    assert list(titles) == [f"HAZ-{n:03d}" for n in range(1, len(titles) + 1)]
    for hid, words in {
        "HAZ-001": "another patient", "HAZ-002": "dose calculation", "HAZ-003": "gross overdose",
        "HAZ-004": "azole", "HAZ-005": "liver toxicity", "HAZ-006": "stale", "HAZ-007": "unit confusion",
        "HAZ-008": "missing data", "HAZ-009": "alert fatigue", "HAZ-010": "suggestion",
        "HAZ-011": "wrong cycle", "HAZ-012": "knowledge version", "HAZ-013": "slow or down",
        "HAZ-014": "misleading card text", "HAZ-015": "eligibility wrongly", "HAZ-016": "replayed",
        "HAZ-017": "audit", "HAZ-018": "adult premedication",
    }.items():
        assert words in titles[hid], (hid, titles[hid])


def test_a_hazard_with_an_unverified_design_control_is_open() -> None:
    for h in load_safety_file(REPO).log["hazards"]:
        unverified = [c for c in h["controls"] if c["type"] in ("design", "test") and not c["verifiedBy"]]
        if unverified:
            assert h["status"] == "open", h["id"]


# ------------------------------------------------------------------ the DCB0129 matrix


def test_the_rating_is_read_from_the_dcb0129_matrix_not_multiplied() -> None:
    # Rows of the published matrix, very high likelihood first (minor ... catastrophic).
    assert [list(MATRIX[likelihood - 1]) for likelihood in (5, 4, 3, 2, 1)] == [
        [3, 4, 4, 5, 5],
        [2, 3, 3, 4, 5],
        [2, 2, 3, 3, 4],
        [1, 2, 2, 3, 4],
        [1, 1, 2, 2, 3],
    ]
    assert rating(4, 2) == 3  # major x low
    assert rating(5, 1) == 3  # catastrophic x very low
    assert rating(1, 5) == 3  # minor x very high


def test_the_view_shows_the_matrix_and_explains_the_rating() -> None:
    view = (REPO / VIEW_FILE).read_text(encoding="utf-8")
    assert "| 5 Very high | 3 | 4 | 4 | 5 | 5 |" in view
    assert "| 1 Very low | 1 | 1 | 2 | 2 | 3 |" in view
    assert "not computed as a product" in view
    assert "### HAZ-001" in view and "## Rule codes → hazards" in view


# ------------------------------------------------------------------ tampered copies fail


def test_a_copy_passes_before_it_is_tampered_with(root: Path) -> None:
    result = run("--check", "--root", str(root))
    assert result.exit_code == 0, result.output


def test_a_stale_view_fails(root: Path) -> None:
    path = root / VIEW_FILE
    path.write_text(path.read_text(encoding="utf-8").replace("Another patient's data", "Someone's data"),
                    encoding="utf-8")
    result = run("--check", "--root", str(root))
    assert result.exit_code == 1
    assert "hazard-log.md is stale" in result.output


def test_a_stale_generated_section_of_the_safety_case_fails(root: Path) -> None:
    path = root / CASE_FILE
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace("| `azole_window_days` |", "| `azole_days` |"), encoding="utf-8")
    result = run("--check", "--root", str(root))
    assert result.exit_code == 1
    assert "safety-case.md: a generated section is stale" in result.output


def test_a_control_naming_a_test_that_does_not_exist_fails(root: Path) -> None:
    edit_json(root, LOG_FILE, lambda log: hazard(log, "HAZ-004")["controls"][0]["verifiedBy"].append(
        "tests/test_terminology.py::test_itraconazole_is_recognised_by_dm_d"))
    result = run("--check", "--root", str(root))
    assert result.exit_code == 1
    assert "HAZ-004 control 1: tests/test_terminology.py::test_itraconazole_is_recognised_by_dm_d: " \
           "tests/test_terminology.py has no test test_itraconazole_is_recognised_by_dm_d" in result.output


@pytest.mark.parametrize(
    ("test_id", "why"),
    [
        ("tests/test_nowhere.py::test_x", "no test file tests/test_nowhere.py"),
        ("tests/scenarios/no-such-scenario.json", "no scenario file"),
        ("tests/scenarios/bsa-dose-5.1-percent-warns.json::Some other title", "the scenario's title is"),
        ("tests/test_apply.py::test_apply_leaves_the_definition_unchanged[x]", "is not parametrized"),
    ],
)
def test_every_kind_of_missing_test_fails(root: Path, test_id: str, why: str) -> None:
    edit_json(root, LOG_FILE, lambda log: hazard(log, "HAZ-002")["controls"][0]["verifiedBy"].append(test_id))
    result = run("--check", "--root", str(root))
    assert result.exit_code == 1
    assert why in result.output


def test_a_rule_code_no_hazard_covers_fails(root: Path) -> None:
    def drop(log: Any) -> None:
        for h in log["hazards"]:
            if "treatment-break" in h["rules"]:
                h["rules"].remove("treatment-break")

    edit_json(root, LOG_FILE, drop)
    result = run("--check", "--root", str(root))
    assert result.exit_code == 1
    assert "rule code 'treatment-break'" in result.output and "belongs to no hazard" in result.output


def test_a_new_rule_code_in_the_card_contract_fails_until_a_hazard_covers_it(root: Path) -> None:
    edit_json(root, RULE_CODESYSTEM_FILE, lambda cs: cs["concept"].append(
        {"code": "renal-function", "display": "Renal function", "definition": "A new rule."}))
    result = run("--check", "--root", str(root))
    assert result.exit_code == 1
    assert "rule code 'renal-function'" in result.output
    edit_json(root, LOG_FILE, lambda log: hazard(log, "HAZ-008")["rules"].append("renal-function"))
    assert run("--root", str(root)).exit_code == 0
    assert run("--check", "--root", str(root)).exit_code == 0


def test_an_unknown_rule_code_in_a_hazard_fails(root: Path) -> None:
    edit_json(root, LOG_FILE, lambda log: hazard(log, "HAZ-004")["rules"].append("azole"))
    result = run("--check", "--root", str(root))
    assert result.exit_code == 1
    assert "HAZ-004: rule code 'azole' is not in" in result.output


def test_a_rating_that_does_not_follow_from_the_matrix_fails(root: Path) -> None:
    edit_json(root, LOG_FILE, lambda log: hazard(log, "HAZ-005")["residualRisk"].update(rating=2))
    result = run("--check", "--root", str(root))
    assert result.exit_code == 1
    assert "HAZ-005 residualRisk: rating 2 does not follow from severity 4 and likelihood 2" in result.output


def test_a_residual_risk_above_the_initial_risk_fails(root: Path) -> None:
    edit_json(root, LOG_FILE, lambda log: hazard(log, "HAZ-016")["residualRisk"].update(
        severity=4, likelihood=4, rating=4))
    result = run("--check", "--root", str(root))
    assert result.exit_code == 1
    assert "HAZ-016: the residual risk is higher than the initial risk" in result.output


def test_controlled_with_an_unverified_design_control_fails(root: Path) -> None:
    def unverify(log: dict) -> None:
        found = hazard(log, "HAZ-018")
        found["controls"][0]["verifiedBy"] = []  # control 1 is a design control
        found["status"] = "controlled"

    edit_json(root, LOG_FILE, unverify)
    result = run("--check", "--root", str(root))
    assert result.exit_code == 1
    assert "HAZ-018: status 'controlled' but design/test control(s) 1 name no test" in result.output


def test_renumbered_hazards_fail(root: Path) -> None:
    edit_json(root, LOG_FILE, lambda log: log["hazards"].pop(2))
    result = run("--check", "--root", str(root))
    assert result.exit_code == 1
    assert "HAZ-004: hazard ids are stable and in order; expected HAZ-003 here" in result.output


@pytest.mark.parametrize(
    ("change", "where"),
    [
        (lambda h: h.pop("harm"), "$.hazards[0]: 'harm' is a required property"),
        (lambda h: h["initialRisk"].update(severity=6), "$.hazards[0].initialRisk.severity"),
        (lambda h: h["controls"][0].update(type="training"), "$.hazards[0].controls[0].type"),
        (lambda h: h["controls"][0]["verifiedBy"].append("test_apply"), "$.hazards[0].controls[0].verifiedBy[4]"),
        (lambda h: h.update(status="closed"), "$.hazards[0].status"),
    ],
)
def test_a_log_that_breaks_its_schema_fails_naming_the_json_path(
    root: Path, change: Callable[[dict[str, Any]], Any], where: str
) -> None:
    edit_json(root, LOG_FILE, lambda log: change(log["hazards"][0]))
    for args in (["--check"], []):
        result = run(*args, "--root", str(root))
        assert result.exit_code == 1
        assert "does not match its schema" in result.output and where in result.output


def test_an_unreadable_log_is_a_message_not_a_traceback(root: Path) -> None:
    (root / LOG_FILE).write_text("{not json", encoding="utf-8")
    result = run("--check", "--root", str(root))
    assert result.exit_code == 1
    assert "is not valid JSON" in result.output and "Traceback" not in result.output


# ------------------------------------------------------------------ regenerating


def test_safety_rewrites_a_stale_view_and_the_generated_sections(root: Path) -> None:
    (root / VIEW_FILE).write_text("old\n", encoding="utf-8")
    case = root / CASE_FILE
    case.write_text(case.read_text(encoding="utf-8").replace("| `bsa_max_age_days` |", "| `stale` |"),
                    encoding="utf-8")
    edit_json(root, LOG_FILE, lambda log: hazard(log, "HAZ-017").update(title="Audit rows lost"))
    result = run("--root", str(root))
    assert result.exit_code == 0, result.output
    assert "### HAZ-017\n\n**Audit rows lost**" in (root / VIEW_FILE).read_text(encoding="utf-8")
    text = case.read_text(encoding="utf-8")
    assert "| `bsa_max_age_days` |" in text and "`stale`" not in text
    assert "Audit rows lost" in text  # the residual-risk table follows the log
    assert run("--check", "--root", str(root)).exit_code == 0


def test_the_safety_case_lists_every_site_policy_and_every_open_hazard() -> None:
    from dataclasses import fields

    from cds_service.features import SitePolicy

    text = (REPO / CASE_FILE).read_text(encoding="utf-8")
    for f in fields(SitePolicy):
        assert f"| `{f.name}` |" in text and f"`{f.default}`" in text
    opened = text.split("<!-- open-hazards:start -->")[1].split("<!-- open-hazards:end -->")[0]
    for h in load_safety_file(REPO).log["hazards"]:
        assert (f"[{h['id']}]" in opened) == (h["status"] == "open"), h["id"]
    for section in ("Safety claim", "Argument", "Residual risks", "Judgement calls",
                    "What a deploying organisation must do (DCB0160)"):
        assert section in text


# ------------------------------------------------------------------ test ids without pytest


def test_test_ids_are_read_from_the_files_without_running_pytest() -> None:
    index = collect_test_ids(REPO)
    assert "test_the_real_engine_and_knowledge_serve_discovery_and_a_hook_call_end_to_end" in \
        index.functions["tests/test_service_hooks.py"]
    assert "test_every_kind_of_missing_test_fails" in index.parametrized["tests/test_safety.py"]
    assert index.problem("tests/test_safety.py::test_every_kind_of_missing_test_fails[x]") is None
    assert index.problem("tests/scenarios/azole-topical-miconazole-no-card.json") is None
    title = index.scenarios["tests/scenarios/azole-topical-miconazole-no-card.json"]
    assert title and index.problem(f"tests/scenarios/azole-topical-miconazole-no-card.json::{title}") is None
    assert "tests/scenarios/_make_rule_scenarios.py" not in index.scenarios
    assert index.problem("tests/test_safety.py") == "tests/test_safety.py: not a test id (tests/test_x.py::test_y)"


def test_a_class_method_is_a_test_id(tmp_path: Path) -> None:
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_k.py").write_text(
        "import pytest\n\nclass TestK:\n    @pytest.mark.parametrize('x', [1])\n    def test_m(self, x):\n        pass\n\n"
        "def helper():\n    pass\n", encoding="utf-8")
    index = collect_test_ids(tmp_path)
    assert index.problem("tests/test_k.py::TestK::test_m[1]") is None
    assert index.problem("tests/test_k.py::helper") == "tests/test_k.py::helper: tests/test_k.py has no test helper"


def test_ci_runs_the_safety_check_next_to_the_trace_check() -> None:
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert "cds-service safety --check" in ci
    pytest_line = next(n for n, line in enumerate(ci) if line.endswith("python3 -m pytest"))
    assert ci.index("cds-service trace --check") < ci.index("cds-service safety --check") < pytest_line


def test_the_schema_is_valid_draft_2020_12_and_the_log_names_it() -> None:
    from jsonschema import Draft202012Validator

    schema = json.loads((REPO / SCHEMA_FILE).read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    assert json.loads((REPO / LOG_FILE).read_text(encoding="utf-8"))["$schema"] == "./hazard-log.schema.json"


def test_the_readme_links_the_clinical_safety_file_and_the_site_policy_table() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Clinical safety\n")[1].split("\n## ")[0]
    for rel in (VIEW_FILE, CASE_FILE):
        assert f"({rel})" in section and (REPO / rel).exists()
    assert "[Site policies](#site-policies)" in section and "### Site policies" in readme
