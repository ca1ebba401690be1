"""`cds-service trace`: write docs/traceability.md, or check that it is current.

Thin over ``cds_service.knowledge._traceability`` (which finds, locates and cross-checks the
``source-statement`` extensions): this module only decides what to write and how to fail.
"""

from __future__ import annotations

from pathlib import Path

import click

from cds_service.commands import CONTEXT_SETTINGS
from cds_service.knowledge._traceability import (
    REPO_ROOT,
    TRACE_FILE,
    UNMAPPED_FILE,
    Trace,
    build_trace,
    render_markdown,
)


def _listing(header: str, items: list[str]) -> str:
    return "\n".join([header, *(f"  - {item}" for item in items)])


def _uncovered_message(trace: Trace) -> str | None:
    missing = trace.uncovered()
    if not missing:
        return None
    return _listing(
        f"{len(missing)} source line(s) are neither quoted by a source-statement nor listed "
        f"with a reason in {UNMAPPED_FILE}:",
        [f"{document} line {number}: {text}" for document, number, text in missing],
    )


@click.command("trace", context_settings=CONTEXT_SETTINGS)
@click.option("--check", is_flag=True,
              help="Do not write; exit 1 if the output file is stale or anything is unmapped "
                   "or wrong (for CI).")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help=f"Where to write the table [default: ROOT/{TRACE_FILE}].")
@click.option("--root", type=click.Path(file_okay=False, exists=True, path_type=Path),
              default=REPO_ROOT,
              help="Repository root holding plan_definitions/, fhir_profiles/ and provenance/ "
                   "[default: this checkout].")
def trace(check: bool, output: Path | None, root: Path) -> None:
    """Map every source line to the artifact elements that encode it, and back.

    Fails if a quote is not found verbatim in its document, or if a non-blank line of the
    INO2 or NZ source is neither quoted by an artifact nor listed with a reason in
    provenance/unmapped-source-lines.json. Without --check the table is still written when
    only unmapped lines remain (they show as UNMAPPED), so they can be reviewed.
    """
    result = build_trace(root)
    if result.problems:
        raise click.ClickException(_listing(
            f"{len(result.problems)} traceability problem(s); fix the artifact element or "
            f"{UNMAPPED_FILE} named:",
            [str(problem) for problem in result.problems],
        ))
    target = output if output is not None else root / TRACE_FILE
    text = render_markdown(result)
    uncovered = _uncovered_message(result)
    if check:
        current = target.read_text(encoding="utf-8") if target.exists() else None
        failures = [uncovered] if uncovered else []
        if current != text:
            failures.append(f"{target} is stale: run `cds-service trace` and commit the result.")
        if failures:
            raise click.ClickException("\n".join(failures))
        click.echo(f"{target} is up to date ({len(result.statements)} source statements).")
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    click.echo(f"wrote {target} ({len(result.statements)} source statements)")
    if uncovered:
        raise click.ClickException(uncovered)
