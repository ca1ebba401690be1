"""`cds-service cards-doc`: the README section "What the cards check", from the rules."""

from __future__ import annotations

from pathlib import Path

import click

from cds_service.commands import CONTEXT_SETTINGS


@click.command("cards-doc", context_settings=CONTEXT_SETTINGS)
@click.option(
    "--knowledge",
    "knowledge_dirs",
    multiple=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Knowledge directory (repeatable). Default: the bundled plan_definitions/ and fhir_profiles/.",
)
@click.option(
    "--write",
    "write_to",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Replace the text between <!-- cards-doc:start --> and <!-- cards-doc:end --> in this file.",
)
@click.option(
    "--check",
    is_flag=True,
    help="Do not write; exit 1 if the file (--write, default README.md) is not up to date.",
)
def cards_doc(knowledge_dirs: tuple[Path, ...], write_to: Path | None, check: bool) -> None:
    """Print (or write into the README) one table row per card rule of the rule
    PlanDefinitions: rule code, hook, indicator, summary, what fires it, source."""
    from cds_service.commands.readme import replace_marked
    from cds_service.engine.cards_doc import cards_doc_markdown
    from cds_service.errors import KnowledgeError
    from cds_service.knowledge import KNOWLEDGE_DIRS, load_knowledge

    try:
        kb = load_knowledge(knowledge_dirs or KNOWLEDGE_DIRS)
    except KnowledgeError as exc:
        raise click.ClickException(f"{exc}\nFix the knowledge first (`cds-service validate`).") from exc
    section = cards_doc_markdown(kb.rule_plans())
    if not write_to and not check:
        click.echo(section, nl=False)
        return
    target = write_to or Path("README.md")
    try:
        text = target.read_text(encoding="utf-8")
        updated = replace_marked(text, "cards-doc", section)
    except FileNotFoundError:
        raise click.ClickException(f"{target} does not exist") from None
    except ValueError as exc:
        raise click.ClickException(
            f"{target} has {exc}: add them where the table belongs, then run "
            f"`cds-service cards-doc --write {target}`"
        ) from exc
    if check:
        if updated != text:
            click.echo(f"{target} is stale: run `cds-service cards-doc --write {target}`", err=True)
            raise SystemExit(1)
        click.echo(f"{target} is up to date")
        return
    if updated != text:
        target.write_text(updated, encoding="utf-8")
        click.echo(f"updated {target}")
    else:
        click.echo(f"{target} is up to date")
