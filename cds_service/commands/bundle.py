"""`cds-service bundle -o FILE`: the knowledge as a FHIR transaction Bundle to POST to a server."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from cds_service.commands import CONTEXT_SETTINGS
from cds_service.errors import KnowledgeError
from cds_service.knowledge import load_knowledge, transaction_bundle


@click.command(context_settings=CONTEXT_SETTINGS)
@click.option("-o", "--output", "output", required=True, type=click.Path(path_type=Path),
              help="File to write the transaction Bundle (JSON) to; '-' for stdout.")
@click.option("--knowledge", "knowledge", multiple=True, type=click.Path(path_type=Path),
              help="Knowledge directory (repeatable). Default: the shipped knowledge.")
def bundle(output: Path, knowledge: tuple[Path, ...]) -> None:
    """Write every artifact as one transaction Bundle (PUT <Type>/<id>), ready to POST.

    The knowledge is checked first (as at service startup); a package with problems is not
    bundled. Load it with e.g. `curl -X POST -H 'Content-Type: application/fhir+json'
    --data @FILE <fhir-base>`.
    """
    try:
        kb = load_knowledge(knowledge or None)
    except KnowledgeError as exc:
        raise click.ClickException(f"{exc}\nFix the knowledge, then run bundle again.") from exc
    result = transaction_bundle(kb)
    text = json.dumps(result, indent=2, ensure_ascii=False) + "\n"
    console = Console(stderr=str(output) == "-", highlight=False)
    if str(output) == "-":
        click.echo(text, nl=False)
    else:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text, encoding="utf-8")
    counts = Counter(entry["resource"]["resourceType"] for entry in result["entry"])
    table = Table(show_footer=True)
    table.add_column("resource type", footer="total")
    table.add_column("entries", justify="right", footer=str(sum(counts.values())))
    for rtype, count in sorted(counts.items()):
        table.add_row(rtype, str(count))
    console.print(table)
    console.print(f"Wrote a transaction Bundle of knowledge {kb.version} "
                  f"({len(result['entry'])} PUT entries) to {output}", soft_wrap=True)
