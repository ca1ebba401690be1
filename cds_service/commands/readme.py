"""`cds-service readme`: regenerate the README sections that are generated, or check them.

Four sections are derived, so they cannot drift from what they describe (datasette keeps
its docs true the same way): the card table (from the rule PlanDefinitions), the settings and site-policy
tables (from their help text) and the command reference (from each command's
``--help``). Each lives between ``<!-- NAME:start -->`` and ``<!-- NAME:end -->`` markers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields
from pathlib import Path

import click
from click.testing import CliRunner

from cds_service.commands import CONTEXT_SETTINGS


def replace_marked(text: str, name: str, body: str) -> str:
    """Put ``body`` between the ``name`` markers of ``text`` (ValueError if they are missing)."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    i, j = text.find(start), text.find(end)
    if i < 0 or j < i:
        raise ValueError(f"no {start} ... {end} markers")
    return text[: i + len(start)] + "\n" + body.rstrip("\n") + "\n" + text[j:]


def site_policy_markdown() -> str:
    from cds_service.features import SitePolicy

    rows = ["| policy | environment | default | allowed (HAZ-026) | why it is a policy |", "|---|---|---|---|---|"]
    helps, allowed = SitePolicy.help(), SitePolicy.allowed()
    for f in fields(SitePolicy):
        rng = allowed[f.name]
        shown = f"`{rng.text()}`: {rng.why}" if rng else "not set"
        rows.append(
            f"| `{f.name}` | `CDS_POLICY_{f.name.upper()}` | `{f.default}` | {_cell(shown)} | {_cell(helps[f.name])} |"
        )
    return "\n".join(rows) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def cli_help_markdown() -> str:
    from cds_service.cli import COMMANDS, main

    runner = CliRunner()
    parts = []
    for args in ([], *([name] for name in sorted(COMMANDS))):
        result = runner.invoke(main, [*args, "--help"], terminal_width=100, prog_name="cds-service")
        title = " ".join(["cds-service", *args])
        parts.append(f"#### `{title}`\n\n```text\n{result.output.rstrip()}\n```\n")
    return "\n".join(parts)


def cards_markdown() -> str:
    from cds_service.engine.cards_doc import cards_doc_markdown
    from cds_service.knowledge import load_knowledge

    return cards_doc_markdown(load_knowledge().rule_plans())


def settings_markdown() -> str:
    from cds_service.settings import settings_markdown as table

    return table()


SECTIONS: dict[str, Callable[[], str]] = {
    "cards-doc": cards_markdown,
    "settings": settings_markdown,
    "site-policy": site_policy_markdown,
    "cli-help": cli_help_markdown,
}


def render(text: str) -> str:
    """``text`` with every generated section brought up to date."""
    for name, make in SECTIONS.items():
        text = replace_marked(text, name, make())
    return text


@click.command(context_settings=CONTEXT_SETTINGS)
@click.argument("path", default="README.md", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--check", is_flag=True, help="Do not write; exit 1 if a generated section is stale.")
def readme(path: Path, check: bool) -> None:
    """Regenerate the README's generated sections (cards, site policies, command help)."""
    from cds_service.errors import KnowledgeError

    try:
        text = path.read_text(encoding="utf-8")
        updated = render(text)
    except FileNotFoundError:
        raise click.ClickException(f"{path} does not exist") from None
    except (ValueError, KnowledgeError) as exc:
        raise click.ClickException(f"{path}: {exc}") from exc
    if check:
        if updated != text:
            click.echo(f"{path} is stale: run `cds-service readme {path}`", err=True)
            raise SystemExit(1)
        click.echo(f"{path} is up to date")
    elif updated != text:
        path.write_text(updated, encoding="utf-8")
        click.echo(f"updated {path}")
    else:
        click.echo(f"{path} is up to date")
