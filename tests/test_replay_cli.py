"""`cds-service replay`: folders, summary, JUnit XML, JSON, HTML and exit codes."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from _replay_support import HARMLESS, IMPOSSIBLE, write_scenario
from click.testing import CliRunner

from cds_service.cli import main
from cds_service.replay._html import card_html, render_markdown


def _invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["replay", *args], catch_exceptions=False)
    return result.exit_code, result.output


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    cases = tmp_path / "cases"
    cases.mkdir()
    write_scenario(cases, "a-passes.json", title="A drafted dose with nothing to stop it passes", expect=HARMLESS)
    write_scenario(cases, "b-passes.json", title="The same patient with fluconazole active passes its check",
                   expect=HARMLESS, with_azole=True)
    write_scenario(cases, "c-fails.json", title="An impossible expectation fails", expect=IMPOSSIBLE)
    (cases / "_notes.json").write_text("{}")  # skipped: starts with _
    return cases


def test_a_folder_gives_a_summary_a_junit_file_and_exit_1_on_a_failure(folder: Path, tmp_path: Path) -> None:
    junit = tmp_path / "out" / "junit.xml"
    code, output = _invoke(str(folder), "--junit", str(junit))
    assert code == 1, output
    assert "Replay summary" in output
    assert "failed: An impossible expectation fails" in output
    root = ET.parse(junit).getroot()
    suite = root.find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors"), suite.get("skipped")) == ("3", "1", "0", "0")
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    assert set(cases) == {
        "A drafted dose with nothing to stop it passes",
        "The same patient with fluconazole active passes its check",
        "An impossible expectation fails",
    }
    failure = cases["An impossible expectation fails"].find("failure")
    assert failure is not None and "zz-no-card-says-this-zz" in (failure.text or "")
    assert cases["A drafted dose with nothing to stop it passes"].find("failure") is None


def test_a_passing_folder_exits_0(folder: Path, tmp_path: Path) -> None:
    (folder / "c-fails.json").unlink()
    junit = tmp_path / "junit.xml"
    code, output = _invoke(str(folder), "--junit", str(junit))
    assert code == 0, output
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None and (suite.get("tests"), suite.get("failures")) == ("2", "0")


def test_a_scenario_without_expectations_only_prints_its_cards(tmp_path: Path) -> None:
    path = write_scenario(tmp_path, "show.json", title="Cards are shown for a scenario without expectations", expect=None)
    junit = tmp_path / "junit.xml"
    code, output = _invoke(str(path), "--junit", str(junit))
    assert code == 0, output
    assert "SHOWN" in output
    case = ET.parse(junit).getroot().find("testsuite/testcase")
    assert case is not None and case.find("skipped") is not None


def test_json_output_holds_every_result_and_its_cards(folder: Path) -> None:
    code, output = _invoke(str(folder), "--json")
    assert code == 1
    doc = json.loads(output)
    assert doc["summary"] == {"scenarios": 3, "passed": 2, "failed": 1, "error": 0, "shown": 0}
    by_title = {r["title"]: r for r in doc["results"]}
    failing = by_title["An impossible expectation fails"]
    assert failing["status"] == "failed" and failing["diffs"]
    for result in doc["results"]:
        assert result["now"] and result["file"].endswith(".json")
        for card in result["cards"]:
            assert card["source"]["topic"]["code"]


def test_html_report_has_one_section_per_scenario(folder: Path, tmp_path: Path) -> None:
    report = tmp_path / "report.html"
    code, _ = _invoke(str(folder), "--html", str(report))
    assert code == 1
    html = report.read_text()
    assert html.startswith("<!DOCTYPE html>")
    assert html.count('<section class="scenario"') == 3
    assert "An impossible expectation fails" in html and "zz-no-card-says-this-zz" in html
    assert "<script" not in html


def test_an_invalid_scenario_stops_with_exit_2_naming_file_and_path(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"scenario": {"title": "Bad", "hook": "order-select",
                                            "expect": {"cards": [{"rule": "ino2-eligibility", "indicator": "red"}]}},
                               "bundle": {"resourceType": "Bundle", "entry": []}}))
    code, output = _invoke(str(bad))
    assert code == 2
    assert "bad.json" in output and "$.scenario.expect.cards[0].indicator" in output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--jwt-key", "KEY"], "give its --url too"),
        (["--url", "http://127.0.0.1:9", "--jwt-key", "KEY"], "--jwt-iss"),
        (["--port", "8099"], "--port is only used with --serve-fhir"),
        (["--now", "yesterday"], "--now 'yesterday'"),
    ],
)
def test_usage_errors_exit_2_with_a_message(folder: Path, tmp_path: Path, args: list[str], message: str) -> None:
    key = tmp_path / "key.pem"
    key.write_text("not a key")
    args = [str(key) if a == "KEY" else a for a in args]
    code, output = _invoke(str(folder / "a-passes.json"), *args)
    assert code == 2
    assert message in output


def test_serve_fhir_takes_exactly_one_scenario(folder: Path) -> None:
    code, output = _invoke(str(folder), "--serve-fhir")
    assert code == 2 and "one scenario" in output


def test_card_detail_is_rendered_as_markdown_with_raw_html_escaped() -> None:
    card = {"indicator": "critical", "summary": "<b>x</b>", "detail": "**Hold** <script>alert(1)</script> [x](javascript:alert(1))",
            "source": {"label": "NZ <regimen>", "url": "javascript:alert(1)", "topic": {"code": "liver-function-hold"}},
            "suggestions": [{"label": "Remove <order>"}]}
    html = card_html(card)
    assert "<strong>Hold</strong>" in html
    assert "<script" not in html and 'href="javascript' not in html
    assert "&lt;b&gt;x&lt;/b&gt;" in html and "Remove &lt;order&gt;" in html
    assert "bar-critical" in html
    assert render_markdown("| a | b |\n|---|---|\n| 1 | 2 |").count("<td>") == 2
