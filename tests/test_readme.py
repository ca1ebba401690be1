"""The README tells the truth: its set-up commands are the ones CI runs, and its generated
sections (cards, settings, site policies, command help) match what they describe."""

from __future__ import annotations

import re
from pathlib import Path

from click.testing import CliRunner

from cds_service.cli import main
from cds_service.commands.readme import render, replace_marked

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _console_blocks(text: str) -> list[str]:
    return [b.strip() for b in re.findall(r"```console\n(.*?)```", text, flags=re.S)]


def test_the_readme_starts_with_the_two_set_up_commands() -> None:
    setup = README.split("## Set-up: the two commands", 1)[1].split("\n## ", 1)[0]
    blocks = _console_blocks(setup)
    venv = "python3 -m venv .venv && . .venv/bin/activate && "
    assert blocks[0] == venv + 'python3 -m pip install -e . && cds-service serve'
    assert blocks[1] == venv + 'python3 -m pip install -e ".[test]" && python3 -m pytest'
    assert README.index("## Set-up: the two commands") < README.index("## Who uses what")


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    setup = README.split("## Set-up: the two commands", 1)[1].split("\n## ", 1)[0]
    test_command = _console_blocks(setup)[1]
    ci_lines = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert test_command in ci_lines


def test_every_generated_section_is_up_to_date() -> None:
    assert render(README) == README, "README is stale: run `cds-service readme`"


def test_a_stale_section_is_detected_and_rewritten() -> None:
    stale = replace_marked(README, "site-policy", "| nothing |\n")
    assert render(stale) != stale
    assert render(stale) == README


def test_missing_markers_are_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "README.md"
    bad.write_text("# no markers\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["readme", str(bad), "--check"])
    assert result.exit_code != 0
    assert "markers" in result.output


def test_every_command_is_in_the_command_reference() -> None:
    from cds_service.cli import COMMANDS

    reference = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    assert render(reference) == reference, "docs/cli.md is stale: run `cds-service readme`"
    for name in COMMANDS:
        assert f"#### `cds-service {name}`" in reference, name
    assert "(docs/cli.md)" in README  # the README links to it
