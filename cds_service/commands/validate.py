"""`cds-service validate`: every problem in the knowledge, located by file and element.

There is deliberately no option to skip the R4 JSON schema: a check that did not run is not a
pass. If the schema cannot be fetched, that is itself reported as a problem and the exit is 1.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape

from cds_service.commands import CONTEXT_SETTINGS
from cds_service.engine import Engine, iter_rule_problems
from cds_service.errors import SactCdsError
from cds_service.features import default_registry
from cds_service.knowledge._base import split_canonical
from cds_service.knowledge._checks import Problem
from cds_service.knowledge._loader import Scan, build_knowledge, scan, scan_problems

_CANONICAL = re.compile(r"https://sact-cds\.org/fhir/[A-Za-z]+/[A-Za-z0-9.\-]+(?:\|[\w.\-]+)?")


def _engine_problems(found: Scan, console: Console) -> list[Problem]:
    """Build the rule engine, so expression and feature errors surface now, not at the bedside.

    ``iter_rule_problems`` lists each rule problem (including what the engine only logs as a
    warning at startup); constructing ``Engine`` proves the service would start.
    """
    try:
        kb = build_knowledge(found)
        registry = default_registry()
        messages = list(iter_rule_problems(kb, registry))
        if not messages:
            Engine(kb, registry)
    except SactCdsError as exc:
        messages = [str(exc)]
    files = {d.data["url"]: d.file for d in found.documents if isinstance(d.data.get("url"), str)}

    def file_of(message: str) -> str:
        urls = (split_canonical(u)[0] for u in _CANONICAL.findall(message))
        return next((files[u] for u in urls if u in files), "(rule engine)")

    return [Problem(file_of(m), "", f"rule engine: {m}") for m in messages]


def _settings_problems(config: str | None) -> list[Problem]:
    """A setting or site policy the service would refuse at start-up (HAZ-026), as a problem."""
    from cds_service.settings import SettingsError, load_settings

    try:
        load_settings(config_file=config)
    except SettingsError as exc:
        return [Problem(config or "(settings)", exc.field or "", exc.message)]
    return []


@click.command(context_settings=CONTEXT_SETTINGS)
@click.option(
    "--knowledge", "knowledge", multiple=True, type=click.Path(path_type=Path),
    help="Knowledge directory (repeatable). Default: the shipped plan_definitions/ and "
         "fhir_profiles/, or $CDS_KNOWLEDGE_DIRS.",
)
@click.option(
    "--config", type=click.Path(dir_okay=False), default=None,
    help="TOML config file whose settings and [policy] values are checked too (default: "
         "$CDS_CONFIG; CDS_* variables apply as for `serve`).",
)
def validate(knowledge: tuple[Path, ...], config: str | None) -> None:
    """Check every artifact: R4B models, the R4 JSON schema, references, codes, FHIRPath.

    Also checks the settings and site policies the service would start with (their types
    and allowed ranges), from --config or $CDS_CONFIG and CDS_* variables.

    Prints each problem as FILE: ELEMENT: MESSAGE and exits 1 if there is any.
    """
    console = Console(highlight=False, soft_wrap=True)
    started = time.perf_counter()
    found = scan(knowledge or None)
    problems = _settings_problems(config)
    problems += list(scan_problems(found, schema=True))
    if not problems:
        problems += _engine_problems(found, console)
    for problem in problems:
        where = f"{escape(problem.element)}: " if problem.element else ""
        console.print(f"[bold]{escape(problem.file)}[/]: {where}{escape(problem.message)}")
    elapsed = time.perf_counter() - started
    colour = "red" if problems else "green"
    console.print(f"[{colour}]{len(found.documents)} artifacts, {len(problems)} problems[/] "
                  f"({elapsed:.2f} s)")
    if problems:
        raise SystemExit(1)
