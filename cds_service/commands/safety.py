"""`cds-service safety`: regenerate the hazard log's human view and the safety case's
generated sections, or check that they are current and that the log holds together.

Thin over ``cds_service.safety`` (which reads and checks the log): this module only decides
what to write and how to fail, as `cds-service trace` does for the traceability table.
"""

from __future__ import annotations

from pathlib import Path

import click

from cds_service.commands import CONTEXT_SETTINGS


def _listing(header: str, items: list[str]) -> str:
    return "\n".join([header, *(f"  - {item}" for item in items)])


@click.command("safety", context_settings=CONTEXT_SETTINGS)
@click.option("--check", is_flag=True,
              help="Do not write; exit 1 if the hazard log breaks its schema or its rules, names a test "
                   "that does not exist, leaves a rule code uncovered, or a generated view is stale (for CI).")
@click.option("--root", type=click.Path(file_okay=False, exists=True, path_type=Path), default=None,
              help="Repository root holding docs/safety/, tests/ and fhir_profiles/ [default: this checkout].")
def safety(check: bool, root: Path | None) -> None:
    """Check the hazard log (docs/safety/hazard-log.json) and regenerate its views.

    Writes docs/safety/hazard-log.md and the generated sections of docs/safety/safety-case.md
    (site policies, residual risks, open hazards). Checks that the log matches its JSON
    Schema, that every rating follows from the DCB0129 matrix, that every test a control
    names exists (read from the test files, without running pytest), and that every rule
    code of the card contract belongs to a hazard.
    """
    from cds_service.commands.readme import replace_marked, site_policy_markdown
    from cds_service.safety import (
        CASE_FILE,
        LOG_FILE,
        REPO_ROOT,
        VIEW_FILE,
        case_sections,
        check_log,
        load_safety_file,
        render_hazard_log,
    )

    root = root or REPO_ROOT
    try:
        sf = load_safety_file(root)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    problems = check_log(sf)
    if problems and any(p.startswith(f"{LOG_FILE} at ") for p in problems):
        raise click.ClickException(_listing(f"{LOG_FILE} does not match its schema:", problems))
    view_path, case_path = root / VIEW_FILE, root / CASE_FILE
    view = render_hazard_log(sf.log, sf.rule_codes)
    try:
        case_text = case_path.read_text(encoding="utf-8")
        case = replace_marked(case_text, "site-policies", site_policy_markdown())
        for name, body in case_sections(sf.log).items():
            case = replace_marked(case, name, body)
    except FileNotFoundError:
        raise click.ClickException(f"{case_path} does not exist") from None
    except ValueError as exc:
        raise click.ClickException(f"{case_path}: {exc}") from None
    hazards = sf.log["hazards"]
    summary = (f"{len(hazards)} hazards ({sum(h['status'] == 'open' for h in hazards)} open), "
               f"{len(sf.rule_codes)} rule codes covered")
    if check:
        failures = list(problems)
        current = view_path.read_text(encoding="utf-8") if view_path.exists() else None
        if current != view:
            failures.append(f"{view_path} is stale: run `cds-service safety` and commit the result.")
        if case != case_text:
            failures.append(f"{case_path}: a generated section is stale: run `cds-service safety`.")
        if failures:
            raise click.ClickException(_listing(f"{len(failures)} clinical safety problem(s):", failures))
        click.echo(f"{LOG_FILE}: {summary}; {VIEW_FILE} and {CASE_FILE} are up to date.")
        return
    view_path.write_text(view, encoding="utf-8")
    if case != case_text:
        case_path.write_text(case, encoding="utf-8")
    click.echo(f"wrote {view_path} and {case_path} ({summary})")
    if problems:
        raise click.ClickException(_listing(f"{len(problems)} clinical safety problem(s):", problems))
