"""`cds-service readme`: regenerate the README sections that are generated, or check them.

Four sections are derived, so they cannot drift from what they describe (datasette keeps
its docs true the same way): the card table (from the rule PlanDefinitions), the settings and site-policy
tables (from their help text) in README.md, and the command reference (from each command's
``--help``) in docs/cli.md. Each lives between ``<!-- NAME:start -->`` and ``<!-- NAME:end -->``
markers.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path

import click
from click.testing import CliRunner

from cds_service.commands import CONTEXT_SETTINGS


def _marker(text: str, marker: str, after: int = 0) -> int:
    """Where ``marker`` stands on a line of its own in ``text`` (-1 if nowhere): a marker
    quoted inside other text (a command's help names them) is not one."""
    found = re.compile(r"^" + re.escape(marker) + r"[ \t]*$", re.M).search(text, after)
    return found.start() if found else -1


def replace_marked(text: str, name: str, body: str) -> str:
    """Put ``body`` between the ``name`` markers of ``text`` (ValueError if they are missing)."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    i = _marker(text, start)
    j = _marker(text, end, i + 1) if i >= 0 else -1
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

#: The documents with generated sections, checked and rewritten by default: the README keeps
#: what a reader needs first (cards, settings, site policies); the command reference is long
#: and lives in docs/ (the README links to it).
DOCUMENTS = (Path("README.md"), Path("docs") / "cli.md")


def render(text: str) -> str:
    """``text`` with every generated section it holds brought up to date (ValueError if it
    holds none: a document without markers is the wrong file)."""
    present = [name for name in SECTIONS if _marker(text, f"<!-- {name}:start -->") >= 0]
    if not present:
        names = ", ".join(f"<!-- {name}:start -->" for name in SECTIONS)
        raise ValueError(f"no generated-section markers ({names} ... :end -->)")
    for name in present:
        text = replace_marked(text, name, SECTIONS[name]())
    return text


@click.command(context_settings=CONTEXT_SETTINGS)
@click.argument("paths", nargs=-1, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--check", is_flag=True, help="Do not write; exit 1 if a generated section is stale.")
def readme(paths: tuple[Path, ...], check: bool) -> None:
    """Regenerate the generated sections (cards, settings, site policies in README.md; the
    command reference in docs/cli.md), or check them. PATHS default to those two files."""
    from cds_service.errors import KnowledgeError

    stale = False
    for path in paths or DOCUMENTS:
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
                stale = True
            else:
                click.echo(f"{path} is up to date")
        elif updated != text:
            path.write_text(updated, encoding="utf-8")
            click.echo(f"updated {path}")
        else:
            click.echo(f"{path} is up to date")
    if stale:
        raise SystemExit(1)
