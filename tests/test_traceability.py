"""`cds-service trace`: every quote is found verbatim, every source line is accounted for.

Coverage is exercised on a temporary copy holding only the regimen artifacts, so these
tests do not depend on the rule artifacts other parts of the project are still writing.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from cds_service.cli import main
from cds_service.knowledge._traceability import (
    REPO_ROOT,
    UNMAPPED_FILE,
    build_trace,
    load_documents,
    render_markdown,
)

REGIMEN = "plan_definitions/regimen/PlanDefinition-InotuzumabPaedRrBallNotInCr.json"
LORATADINE = "plan_definitions/regimen/ActivityDefinition-Loratadine10Mg.json"
SOURCE_STATEMENT = "https://sact-cds.org/fhir/StructureDefinition/source-statement"


@pytest.fixture
def regimen_root(tmp_path: Path) -> Path:
    """A repository copy with provenance/ and only the regimen artifacts."""
    shutil.copytree(REPO_ROOT / "provenance", tmp_path / "provenance")
    shutil.copytree(REPO_ROOT / "plan_definitions" / "regimen",
                    tmp_path / "plan_definitions" / "regimen")
    return tmp_path


@pytest.fixture
def covered_root(regimen_root: Path) -> Path:
    """The regimen copy with the INO2 rule lines (encoded by rule artifacts not copied here)
    listed as not-a-rule, so coverage is complete and the command can succeed."""
    listing = regimen_root / UNMAPPED_FILE
    data = json.loads(listing.read_text(encoding="utf-8"))
    for document, _, text in build_trace(regimen_root).uncovered():
        data["entries"].append({"document": document, "line": text,
                                "reason": "test fixture: encoded by rule artifacts"})
    listing.write_text(json.dumps(data), encoding="utf-8")
    return regimen_root


def edit_json(path: Path, change: Any) -> None:
    resource = json.loads(path.read_text(encoding="utf-8"))
    change(resource)
    path.write_text(json.dumps(resource, ensure_ascii=False), encoding="utf-8")


def set_quote(extension_owner: dict[str, Any], quote: str, index: int = 0) -> None:
    statements = [e for e in extension_owner["extension"] if e["url"] == SOURCE_STATEMENT]
    part = next(p for p in statements[index]["extension"] if p["url"] == "quote")
    part["valueString"] = quote


def run(*args: str) -> Any:
    return CliRunner().invoke(main, ["trace", *args])


def test_every_quote_in_the_repository_is_found_verbatim_on_the_lines_it_maps() -> None:
    trace = build_trace(REPO_ROOT)
    assert trace.problems == ()
    assert len(trace.statements) > 100
    for statement in trace.statements:
        lines = trace.documents[statement.document].lines
        assert statement.lines
        assert all(statement.quote in lines[n - 1] for n in statement.lines), statement


def test_a_whole_line_quote_maps_only_identical_lines_and_a_partial_quote_every_copy() -> None:
    nz = load_documents(REPO_ROOT)["NZ"]
    day_1 = nz.locate("Day: 1")
    assert day_1 and all(nz.lines[n - 1].strip() == "Day: 1" for n in day_1)
    assert not set(day_1) & set(nz.locate("Day: 15"))
    premedication = nz.locate("30 to 60 minutes prior to inotuzumab ozogamicin.")
    assert len(premedication) == 12  # loratadine + paracetamol, days 1/8/15, two cycle blocks
    assert nz.locate("21") == (nz.lines.index("21") + 1,)
    assert nz.locate("not in the document") == ()


def test_every_nz_line_is_quoted_or_listed_with_a_reason_by_the_regimen_alone(
    regimen_root: Path,
) -> None:
    trace = build_trace(regimen_root)
    assert trace.problems == ()
    uncovered = trace.uncovered()
    assert [u for u in uncovered if u[0] == "NZ"] == []
    ino2 = trace.documents["INO2"]
    policy = next(n for n, line in enumerate(ino2.lines, 1) if "treatment duration policy" in line)
    assert trace.encoded_by("INO2", policy)
    assert ("INO2", policy) not in {(d, n) for d, n, _ in uncovered}


def test_ino2_rule_lines_are_reported_unmapped_not_hidden(regimen_root: Path) -> None:
    uncovered = build_trace(regimen_root).uncovered()
    texts = [text for document, _, text in uncovered if document == "INO2"]
    assert any("performance status of 0 - 2" in text for text in texts)
    result = run("--root", str(regimen_root))
    assert result.exit_code == 1
    assert "performance status of 0 - 2" in result.output
    # the table is still written, with the line marked, so it can be reviewed
    table = (regimen_root / "docs" / "traceability.md").read_text(encoding="utf-8")
    assert "**UNMAPPED**" in table


def test_removing_an_artifact_leaves_its_source_lines_unmapped(regimen_root: Path) -> None:
    (regimen_root / LORATADINE).unlink()
    # the children's premedication (no dose) cites the same lines: remove it too
    (regimen_root / LORATADINE.replace("Loratadine10Mg", "LoratadineOralDoseByPrescriber")).unlink()
    nz = build_trace(regimen_root)
    lines = {n for d, n, _ in nz.uncovered() if d == "NZ"}
    per_day = {n for n, line in enumerate(nz.documents["NZ"].lines, 1)
               if line.replace("\u00a0", " ").strip().startswith("loratadine")
               and not line.rstrip().endswith("15")}
    assert len(per_day) == 6 and lines == per_day


def test_a_broken_quote_is_an_error_naming_file_and_element(regimen_root: Path) -> None:
    def break_window(plan: dict[str, Any]) -> None:
        day_8 = plan["action"][0]["action"][7]
        assert day_8["id"] == "c1-d8-ino"
        set_quote(day_8["relatedAction"][0], "Days of administration can be moved +/- 3 days")

    edit_json(regimen_root / REGIMEN, break_window)
    [problem] = build_trace(regimen_root).problems
    assert problem.file == REGIMEN
    assert problem.element == (
        "PlanDefinition.action[0](cycle-1).action[7](c1-d8-ino).relatedAction[0]")
    assert "not found verbatim in NZ" in problem.message

    result = run("--root", str(regimen_root))
    assert result.exit_code == 1
    assert REGIMEN in result.output and "(c1-d8-ino).relatedAction[0]" in result.output
    assert not (regimen_root / "docs" / "traceability.md").exists()


def test_a_quote_typed_with_plain_spaces_is_rejected_with_a_hint(regimen_root: Path) -> None:
    edit_json(regimen_root / LORATADINE,
              lambda ad: set_quote(ad["dosage"][0], "loratadine * 10 mg oral administration"))
    [problem] = build_trace(regimen_root).problems
    assert problem.element == "ActivityDefinition.dosage[0]"
    assert "no-break spaces" in problem.message


def test_an_unknown_document_label_is_an_error(regimen_root: Path) -> None:
    def relabel(ad: dict[str, Any]) -> None:
        statement = next(e for e in ad["dosage"][0]["extension"] if e["url"] == SOURCE_STATEMENT)
        statement["extension"][0]["valueCode"] = "PBC2014"

    edit_json(regimen_root / LORATADINE, relabel)
    [problem] = build_trace(regimen_root).problems
    assert problem.file == LORATADINE and "unknown document 'PBC2014'" in problem.message


def test_a_not_a_rule_entry_must_name_a_real_unquoted_line(regimen_root: Path) -> None:
    listing = regimen_root / UNMAPPED_FILE
    data = json.loads(listing.read_text(encoding="utf-8"))
    data["entries"] += [
        {"document": "NZ", "line": "No such line", "reason": "typo"},
        {"document": "NZ", "line": "21", "reason": "claimed not a rule"},
    ]
    listing.write_text(json.dumps(data), encoding="utf-8")
    messages = [str(p) for p in build_trace(regimen_root).problems]
    assert any("no line of NZ is 'No such line'" in m for m in messages)
    assert any("'21'" in m and "quoted by PlanDefinition/InotuzumabPaedRrBallNotInCr" in m
               for m in messages)


def test_the_table_is_deterministic_whatever_the_statement_order(regimen_root: Path) -> None:
    trace = build_trace(regimen_root)
    shuffled = dataclasses.replace(trace, statements=tuple(reversed(trace.statements)))
    assert render_markdown(shuffled) == render_markdown(trace)
    assert render_markdown(build_trace(regimen_root)) == render_markdown(trace)


def test_the_table_maps_lines_to_elements_and_back(regimen_root: Path) -> None:
    table = render_markdown(build_trace(regimen_root))
    assert "Generated by `cds-service trace`" in table and "Do not edit by hand" in table
    assert ("| 29 | 21 | `PlanDefinition/InotuzumabPaedRrBallNotInCr` action\\[0\\](cycle-1) |"
            in table)
    assert "| 1 | Menu Close Menu | not a rule: Website navigation text" in table
    section_2 = table.split("## 2.")[1]
    assert "### `ActivityDefinition/Loratadine10Mg`" in section_2
    assert ("| dosage\\[0\\] | NZ (`provenance/sources/nz-regimen-inotuzumab-not-in-cr.txt`) "
            "| 83, 106, 129 |") in section_2


def test_check_passes_when_current_and_fails_when_stale(covered_root: Path) -> None:
    output = covered_root / "docs" / "traceability.md"
    first = run("--root", str(covered_root))
    assert first.exit_code == 0, first.output
    written = output.read_text(encoding="utf-8")
    assert run("--root", str(covered_root)).exit_code == 0
    assert output.read_text(encoding="utf-8") == written  # same input, same bytes

    assert run("--root", str(covered_root), "--check").exit_code == 0

    output.write_text(written + "hand edit\n", encoding="utf-8")
    stale = run("--root", str(covered_root), "--check")
    assert stale.exit_code == 1 and "stale" in stale.output

    output.write_text(written, encoding="utf-8")

    def cite_again(plan: dict[str, Any]) -> None:
        cycles_2_3 = plan["action"][1]
        cycles_2_3["extension"].append({"url": SOURCE_STATEMENT, "extension": [
            {"url": "document", "valueCode": "NZ"},
            {"url": "quote", "valueString": "Cycle 1 is the same for all patients."}]})

    edit_json(covered_root / REGIMEN, cite_again)  # the artifacts changed, the table did not
    changed = run("--root", str(covered_root), "--check")
    assert changed.exit_code == 1 and "stale" in changed.output


def test_check_writes_nothing_and_output_option_chooses_the_file(covered_root: Path) -> None:
    other = covered_root / "elsewhere.md"
    assert run("--root", str(covered_root), "--check", "--output", str(other)).exit_code == 1
    assert not other.exists()
    assert run("--root", str(covered_root), "--output", str(other)).exit_code == 0
    assert other.read_text(encoding="utf-8").startswith("# Traceability")
    assert not (covered_root / "docs" / "traceability.md").exists()


def test_the_shipped_traceability_table_is_current_and_covers_every_source_line() -> None:
    """CI's staleness check: docs/traceability.md is what `cds-service trace` generates
    from the shipped artifacts, and no source line is left without a mapping or a reason."""
    result = CliRunner().invoke(main, ["trace", "--check"])
    assert result.exit_code == 0, result.output
    assert build_trace(REPO_ROOT).uncovered() == []


SHARED_SOURCES = REPO_ROOT.parent / "shared" / "sources"


@pytest.mark.skipif(not SHARED_SOURCES.is_dir(), reason="no ../shared/sources beside this checkout")
@pytest.mark.parametrize("name", ["nhs-cdf-ino2-criteria.txt", "nz-regimen-inotuzumab-not-in-cr.txt"])
def test_the_provenance_copy_of_each_source_is_the_shared_original(name: str) -> None:
    ours = (REPO_ROOT / "provenance" / "sources" / name).read_bytes()
    assert ours == (SHARED_SOURCES / name).read_bytes()
