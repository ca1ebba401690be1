"""README "What the cards check" is generated from the rule PlanDefinitions."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from fixtures.engine import kit

import cds_service.knowledge as knowledge_pkg
from cds_service.commands.cards_doc import cards_doc
from cds_service.commands.readme import replace_marked
from cds_service.engine.cards_doc import cards_doc_markdown, cards_doc_rows

START, END = "<!-- cards-doc:start -->", "<!-- cards-doc:end -->"


def rows() -> list[list[str]]:
    return cards_doc_rows(kit.knowledge().rule_plans())


def test_one_row_per_top_level_action_with_code_hook_indicator_summary_trigger_and_source() -> None:
    table = rows()
    assert len(table) == 8
    assert table[0] == [
        "`azole-antifungal`",
        "`order-select`",
        "warning",
        "Systemic azole drafted during an inotuzumab course",
        "A systemic azole antifungal is among the draft orders.",
        "SmPC",
    ]
    liver = next(r for r in table if r[0] == "`liver-function-hold`")
    assert liver[4] == "Total bilirubin is above 1.5 times the upper limit of normal."
    sign_only = next(r for r in table if r[0] == "`cycle-limit`")
    assert sign_only[1] == "`order-sign`" and sign_only[5] == "—"
    assert next(r for r in table if r[0] == "`monotherapy`")[1] == "`order-sign`, `order-select`"


def test_the_markdown_is_a_table_that_says_it_is_generated() -> None:
    text = cards_doc_markdown(kit.knowledge().rule_plans())
    assert "cds-service cards-doc" in text.splitlines()[0]
    assert "| Rule | Hook | Indicator | Card summary | Fires when | Source |" in text
    assert text.count("\n| `") == 8


def test_the_section_between_the_markers_is_replaced_and_the_rest_kept() -> None:
    readme = f"# X\n\n## What the cards check\n\n{START}\nold\n{END}\n\n## Next\n"
    out = replace_marked(readme, "cards-doc", "new table\n")
    assert out == f"# X\n\n## What the cards check\n\n{START}\nnew table\n{END}\n\n## Next\n"
    with pytest.raises(ValueError):
        replace_marked("no markers", "cards-doc", "x")


@pytest.fixture
def fixture_knowledge(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(knowledge_pkg, "load_knowledge", lambda dirs=None: kit.knowledge())


def test_write_then_check_passes_and_a_stale_readme_fails_check(tmp_path: Path, fixture_knowledge: None) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{START}\nstale\n{END}\n", encoding="utf-8")
    runner = CliRunner()
    stale = runner.invoke(cards_doc, ["--check", "--write", str(readme)])
    assert stale.exit_code == 1 and "stale" in stale.output
    written = runner.invoke(cards_doc, ["--write", str(readme)])
    assert written.exit_code == 0, written.output
    assert "`azole-antifungal`" in readme.read_text(encoding="utf-8")
    assert runner.invoke(cards_doc, ["--check", "--write", str(readme)]).exit_code == 0


def test_without_options_the_table_is_printed(fixture_knowledge: None) -> None:
    result = CliRunner().invoke(cards_doc, [])
    assert result.exit_code == 0 and "| `ino2-eligibility` |" in result.output


def test_a_readme_without_markers_is_an_error_that_says_what_to_do(tmp_path: Path, fixture_knowledge: None) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("no markers here\n", encoding="utf-8")
    result = CliRunner().invoke(cards_doc, ["--write", str(readme)])
    assert result.exit_code != 0 and "cards-doc:start" in result.output


def test_the_same_action_in_both_plans_is_one_row_listing_both_hooks() -> None:
    resources = kit.fixture_resources()
    azole = resources[kit.SELECT_PD]["action"][0]
    resources[kit.SIGN_PD]["action"].append({**azole, "trigger": [{"type": "named-event", "name": "order-sign"}]})
    table = cards_doc_rows(kit.knowledge(resources).rule_plans())
    azole_rows = [r for r in table if r[0] == "`azole-antifungal`"]
    assert len(azole_rows) == 1 and azole_rows[0][1] == "`order-select`, `order-sign`"
