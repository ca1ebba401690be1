"""`cds-service audit`: recent invocations and feedback as tables, or everything as CSV.

Reads the store at ``database_url`` (settings precedence as for ``serve``). The CSV has
one row per card, joined with the feedback given on it by card uuid, which is the shape
an analyst needs to see which rules are accepted or overridden and why.
"""

from __future__ import annotations

import sys

import click
from rich.console import Console
from rich.table import Table

from cds_service.commands import CONTEXT_SETTINGS
from cds_service.commands.serve import resolve
from cds_service.settings import mask_url


@click.command(context_settings=CONTEXT_SETTINGS)
@click.option(
    "--limit", type=int, default=20, show_default=True, help="How many recent invocations and feedback items."
)
@click.option(
    "--csv",
    "csv_path",
    type=click.Path(dir_okay=False, allow_dash=True),
    help="Write a CSV (one row per card) to FILE ('-' = stdout).",
)
@click.option("--config", type=click.Path(dir_okay=False), help="TOML config file.")
@click.option("--database-url", help="Audit store URL (default: from settings).")
def audit(limit: int, csv_path: str | None, config: str | None, database_url: str | None) -> None:
    """Show recent invocations and feedback, or export them as CSV."""
    from cds_service.store import AuditStore

    settings = resolve(config, database_url=database_url)
    store = AuditStore(settings.database_url)
    if not store.ping():
        raise click.ClickException(f"cannot reach the audit store at {mask_url(settings.database_url)}")
    try:
        if csv_path:
            if csv_path == "-":
                rows = store.export_csv(sys.stdout, limit=limit)
            else:
                with open(csv_path, "w", newline="", encoding="utf-8") as out:
                    rows = store.export_csv(out, limit=limit)
            click.echo(f"wrote {rows} row(s) to {csv_path}", err=True)
            return
        invocations, feedback = store.recent(limit)
    finally:
        store.close()
    console = Console(soft_wrap=True)
    table = Table(title=f"Recent invocations ({len(invocations)})")
    for column in (
        "time",
        "service",
        "hook",
        "hookInstance",
        "patient",
        "user",
        "status",
        "ms",
        "rule codes",
        "card uuids",
        "notes",
    ):
        table.add_column(column)
    for i in invocations:
        table.add_row(
            i["time"],
            i["service"],
            i["hook"],
            i["hook_instance"],
            i["patient"] or "",
            i["user"] or "",
            str(i["status"]),
            f"{i['latency_ms']:.1f}",
            ", ".join(i["rule_codes"]),
            "\n".join(u for u in i["card_uuids"] if u),
            str(len(i["notes"])),
        )
    console.print(table)
    table = Table(title=f"Recent feedback ({len(feedback)})")
    for column in (
        "time",
        "service",
        "card uuid",
        "outcome",
        "override reason",
        "comment",
        "accepted suggestions",
    ):
        table.add_column(column)
    for f in feedback:
        table.add_row(
            f["time"],
            f["service"],
            f["card_uuid"],
            f["outcome"],
            f["override_display"] or f["override_code"] or "",
            f["user_comment"] or "",
            ", ".join(f["accepted_suggestions"]),
        )
    console.print(table)
