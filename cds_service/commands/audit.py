"""`cds-service audit`: recent invocations and feedback, readable at a terminal, CSV or JSON
for a pipe or a file.

Reads the store at ``database_url``, resolved exactly as ``serve`` resolves it (option >
``CDS_*`` environment > ``--config`` file > defaults; the default SQLite file is
``<data_dir>/audit.sqlite``, ``data_dir`` relative to the working directory unless the config
file sets it). It only reads: a SQLite store that does not exist is an error naming the path
it looked at (never an empty table, never a new ``data/`` folder). The CSV has one row per
card, joined with the feedback given on it by card uuid, which is the shape an analyst needs
to see which rules are accepted or overridden and why.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, TextIO

import click
from rich import box
from rich.console import Console
from rich.table import Table

from cds_service.commands import CONTEXT_SETTINGS
from cds_service.commands.serve import resolve
from cds_service.settings import mask_url

FORMATS = ("auto", "table", "csv", "json")


def _checked_url(url: str) -> str:
    """The URL, or a ClickException saying in words what is wrong with it (before SQLAlchemy
    can create anything)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    shown = mask_url(url)
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise click.ClickException(
            f"{shown} is not a database URL: use sqlite:///path/to/audit.sqlite or "
            "postgresql+psycopg://user:password@host/db") from None
    try:
        parsed.get_dialect()
    except NoSuchModuleError:
        raise click.ClickException(
            f"unknown database scheme '{parsed.drivername}' in {shown}: use sqlite:///path/to/audit.sqlite "
            "or postgresql+psycopg://user:password@host/db") from None
    except ImportError as exc:
        raise click.ClickException(
            f"the driver for {parsed.drivername} is not installed ({exc.name}): for PostgreSQL "
            "`pip install \"sact-cds[postgres]\"`") from None
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        path = Path(parsed.database).resolve()
        if not path.is_file():
            raise click.ClickException(
                f"no audit store at {path}: `serve` writes it to <data_dir>/audit.sqlite (data_dir "
                "relative to the directory serve was started in, or to its config file). Run audit "
                "with the same --config / CDS_DATA_DIR / CDS_DATABASE_URL as serve, or --database-url.")
    return url


def _short_time(value: str) -> str:
    """``2026-11-23T10:00:00.123456+00:00`` -> ``11-23 10:00`` (UTC, as stored)."""
    return value[5:16].replace("T", " ") if len(value) >= 16 else value


def _table(title: str) -> Table:
    # No vertical rules and no outer edge: 80 columns go to the data, not to box drawing.
    return Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)


def _tables(console: Console, invocations: list[dict[str, Any]], feedback: list[dict[str, Any]]) -> None:
    """Two tables that fit 80 columns: what was asked and what was said, then what the
    clinicians did with it. Uuids and hookInstances are in the CSV/JSON, not here."""
    table = _table(f"Recent invocations ({len(invocations)})")
    table.add_column("time (UTC)", no_wrap=True)
    table.add_column("service", no_wrap=True)
    table.add_column("patient", overflow="fold")
    table.add_column("status", no_wrap=True, justify="right")
    table.add_column("cards (rule codes) or what the app did", ratio=1)
    for i in invocations:
        notes = len(i["notes"])
        status = f"{i['status']} {i['latency_ms']:.0f}ms"
        if i.get("kind") == "app":  # the INO2 form app: its operation, and what it did instead of cards
            table.add_row(_short_time(i["time"]), f"{i['service']} {i['hook']}", i["patient"] or "", status,
                          "; ".join(i["notes"]) or "-")
            continue
        cards = ", ".join(i["rule_codes"]) or "-"
        table.add_row(_short_time(i["time"]), i["service"], i["patient"] or "", status,
                      cards + (f"; {notes} note{'s' * (notes != 1)}" if notes else ""))
    console.print(table)
    table = _table(f"Recent feedback ({len(feedback)})")
    table.add_column("time (UTC)", no_wrap=True)
    table.add_column("service", no_wrap=True)
    table.add_column("card", no_wrap=True)
    table.add_column("outcome", no_wrap=True)
    table.add_column("override reason / comment", ratio=1)
    for f in feedback:
        reason = f["override_display"] or f["override_code"] or ""
        comment = f["user_comment"] or ""
        table.add_row(_short_time(f["time"]), f["service"], (f["card_uuid"] or "")[:8],
                      f["outcome"], " / ".join(x for x in (reason, comment) if x))
    console.print(table)


def _write(out: TextIO, store: Any, fmt: str, limit: int) -> int:
    if fmt == "csv":
        return int(store.export_csv(out, limit=limit))
    invocations, feedback = store.recent(limit)
    json.dump({"invocations": invocations, "feedback": feedback}, out, indent=2, default=str, ensure_ascii=False)
    out.write("\n")
    return len(invocations) + len(feedback)


@click.command(context_settings=CONTEXT_SETTINGS)
@click.option(
    "--limit", type=click.IntRange(min=1), default=20, show_default=True,
    help="How many recent invocations and feedback items.",
)
@click.option(
    "--format", "fmt", type=click.Choice(FORMATS), default="auto", show_default=True,
    help="table at a terminal; csv (one row per card, with its feedback) or json. auto = table "
         "on a terminal, csv when piped.",
)
@click.option(
    "--csv", "csv_path", type=click.Path(dir_okay=False, allow_dash=True),
    help="Write the CSV (one row per card) to FILE ('-' = stdout).",
)
@click.option("--config", type=click.Path(dir_okay=False), help="TOML config file (the one serve uses).")
@click.option("--database-url", help="Audit store URL (default: from settings, as serve resolves it).")
def audit(limit: int, fmt: str, csv_path: str | None, config: str | None, database_url: str | None) -> None:
    """Show recent invocations and feedback (table, CSV or JSON); reads, never creates, the store."""
    from cds_service.store import AuditStore

    settings = resolve(config, database_url=database_url)
    url = _checked_url(settings.database_url)
    if csv_path and csv_path != "-" and Path(csv_path).parent.is_file():
        raise click.ClickException(f"cannot write {csv_path}: {Path(csv_path).parent} is a file, not a folder")
    if fmt == "auto":
        fmt = "csv" if csv_path or not sys.stdout.isatty() else "table"
    elif csv_path and fmt != "csv":
        raise click.UsageError("--csv FILE writes CSV: leave out --format or use --format csv")
    store = AuditStore(url)
    try:
        if not store.ping():
            raise click.ClickException(f"cannot reach the audit store at {mask_url(url)}")
        if csv_path and csv_path != "-":
            with open(csv_path, "w", newline="", encoding="utf-8") as out:
                rows = _write(out, store, "csv", limit)
            click.echo(f"wrote {rows} row(s) to {csv_path}", err=True)
        elif fmt in ("csv", "json"):
            _write(sys.stdout, store, fmt, limit)
        else:
            _tables(Console(highlight=False), *store.recent(limit))
    finally:
        store.close()
