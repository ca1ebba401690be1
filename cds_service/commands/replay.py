"""`cds-service replay`: replay FHIR bundles as CDS Hooks calls and check the cards.

A thin shell over :mod:`cds_service.replay` (STYLE.md §12). Exit status: 0 every scenario
passed (or had no expectations), 1 a scenario failed or could not be replayed, 2 a usage
error or an invalid scenario file (nothing is replayed then).
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from cds_service.commands import CONTEXT_SETTINGS
from cds_service.errors import SactCdsError
from cds_service.replay import dates, report, run
from cds_service.replay.scenario import (
    Scenario,
    ScenarioError,
    collect_paths,
    load_scenario,
)

#: The sandbox screen that fires each hook (cds-hooks/sandbox src/reducers/hook-reducers.js):
#: without ``screen`` the link opens the patient view and no order hook fires.
SANDBOX_SCREENS = {"order-select": "rx-view", "order-sign": "rx-sign", "patient-view": "patient-view"}


def sandbox_link(fhir_url: str, patient: str, discovery: str, hook: str,
                 sandbox: str = "https://sandbox.cds-hooks.org/") -> str:
    """The sandbox URL that opens ``patient`` on ``fhir_url`` with this service, on the
    screen that fires ``hook`` (the sandbox reads these five query parameters)."""
    from urllib.parse import quote

    return (
        f"{sandbox}?fhirServiceUrl={quote(fhir_url, safe='')}&patientId={quote(patient, safe='')}"
        f"&serviceDiscoveryURL={quote(discovery, safe='')}&hook={hook}"
        f"&screen={SANDBOX_SCREENS.get(hook, 'patient-view')}"
    )


class UsageProblem(click.ClickException):
    """A usage error or an invalid scenario: exit status 2."""

    exit_code = 2


def _parse_now(value: str | None) -> datetime:
    if value is None:
        return run.wall_clock()
    try:
        return dates.evaluation_time(value, run.wall_clock())
    except ValueError as exc:
        raise UsageProblem(
            f"--now {value!r} is not an ISO 8601 date/dateTime (2026-11-23T09:00:00Z) or a token (now-2d)"
        ) from exc


def _signer(key: Path | None, iss: str | None, kid: str | None, url: str | None) -> run.JwtSigner | None:
    if key is None:
        if iss or kid:
            raise UsageProblem("--jwt-iss/--jwt-kid need --jwt-key PEM (the private key to sign with)")
        return None
    if not url:
        raise UsageProblem("--jwt-key signs calls to a running service: give its --url too")
    if not iss or not kid:
        raise UsageProblem("--jwt-key needs --jwt-iss (the issuer the service trusts) and --jwt-kid (the key id in its JWK Set)")
    try:
        return run.JwtSigner(key.read_bytes(), iss=iss, kid=kid)
    except (OSError, ValueError, TypeError) as exc:
        raise UsageProblem(f"cannot use --jwt-key {key}: {exc}") from exc


def _load(paths: Sequence[str]) -> list[Scenario]:
    try:
        files = collect_paths(paths)
    except ScenarioError as exc:
        raise UsageProblem(str(exc)) from exc
    if not files:
        raise UsageProblem(f"no scenario files (*.json) found in {', '.join(paths)}")
    scenarios, problems = [], []
    for path in files:
        try:
            scenarios.append(load_scenario(path))
        except ScenarioError as exc:
            problems.append(str(exc))
    if problems:
        raise UsageProblem("fix these scenario files first:\n" + "\n".join(problems))
    return scenarios


@contextmanager
def _quiet_service_log() -> Iterator[None]:
    """The in-process app is private to this command: its start-up warning about serving
    without JWT checks is not the tester's concern (errors still show)."""
    api_log = logging.getLogger("cds_service.api")
    level = api_log.level
    api_log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        api_log.setLevel(level)


def _target(url: str | None, signer: run.JwtSigner | None) -> Any:
    """The replayer context: a running service at ``url``, else the bundled one in-process."""
    if url:
        return run.remote(url, signer=signer)
    try:  # load the knowledge now, so a broken knowledge base is one clear message
        settings = run.replay_settings()
        engine = run.make_engine(settings)
    except SactCdsError as exc:
        raise UsageProblem(f"the service cannot start in-process: {exc}") from exc
    return run.in_process(settings, engine=engine)


async def _replay(
    scenarios: list[Scenario], now: datetime, url: str | None, signer: run.JwtSigner | None, progress: Any
) -> list[run.ScenarioResult]:
    advance = (lambda _r: progress.advance(progress.task_ids[0])) if progress is not None else None
    with _quiet_service_log():
        async with _target(url, signer) as replayer:
            return await run.replay_all(replayer, scenarios, now, advance=advance)


@click.command("replay", context_settings=CONTEXT_SETTINGS)
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=str))
@click.option("--url", metavar="URL", help="Base URL of a running service (local or remote). Default: the bundled service in-process.")
@click.option("--jwt-key", type=click.Path(exists=True, dir_okay=False, path_type=Path), metavar="PEM",
              help="Private key (EC -> ES384, RSA -> RS384) to sign the bearer JWT sent to --url.")
@click.option("--jwt-iss", metavar="ISS", help="JWT issuer (`iss`), as configured in the service's trusted issuers.")
@click.option("--jwt-kid", metavar="KID", help="JWT key id (`kid`) of --jwt-key in the issuer's JWK Set.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON instead of cards.")
@click.option("--junit", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE", help="Write a JUnit XML report for CI.")
@click.option("--html", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE", help="Write an HTML report (cards as an EHR shows them, expectation diffs).")
@click.option("--now", "now_text", metavar="ISO", help="Evaluation time for scenarios without their own `now` (default: the current time). Relative dates resolve against it.")
@click.option("--serve-fhir", is_flag=True, help="Serve ONE scenario as a FHIR R4 endpoint on 127.0.0.1 (for the CDS Hooks sandbox or the service's fhirServer fallback) until Ctrl-C; it is also a SMART EHR for the INO2 form app (smart-configuration, EHR launch, authorize, token; QuestionnaireResponse writes kept in memory).")
@click.option("--stats", "show_stats", is_flag=True, help="Also report the alert burden: cards per hook call by indicator over the scenarios given.")
@click.option("--port", type=click.IntRange(0, 65535), default=0, show_default="any free port", help="Port for --serve-fhir.")
def replay(
    paths: tuple[str, ...],
    url: str | None,
    jwt_key: Path | None,
    jwt_iss: str | None,
    jwt_kid: str | None,
    as_json: bool,
    junit: Path | None,
    html: Path | None,
    now_text: str | None,
    serve_fhir: bool,
    show_stats: bool,
    port: int,
) -> None:
    """Replay scenario files or folders of FHIR bundles (PATH...) as CDS Hooks calls.

    Each scenario becomes the request an EHR would send: discovery first, then the hook
    call with prefetch filled from the bundle by the service's own prefetch templates.
    Cards are printed grouped by indicator; scenarios with expectations pass or fail.
    """
    now = _parse_now(now_text)
    signer = _signer(jwt_key, jwt_iss, jwt_kid, url)
    scenarios = _load(paths)
    if serve_fhir:
        if len(scenarios) != 1:
            raise UsageProblem(f"--serve-fhir serves one scenario; {len(scenarios)} were given")
        _serve(scenarios[0], now, port, url, signer)
        return
    if port:
        raise UsageProblem("--port is only used with --serve-fhir")
    console = Console(highlight=False, soft_wrap=False)
    progress = None
    if len(scenarios) > 1:
        progress = report.progress_bar()
        progress.add_task("replaying", total=len(scenarios))
    if progress is not None:
        with progress:
            results = asyncio.run(_replay(scenarios, now, url, signer, progress))
    else:
        results = asyncio.run(_replay(scenarios, now, url, signer, None))
    if as_json:
        click.echo(report.as_json(results, with_stats=show_stats))
    else:
        for result in results:
            report.print_result(console, result, show_cards=not show_stats)
        report.print_summary(console, results)
        if show_stats:
            report.print_stats(console, results)
    if junit:
        report.write_junit(junit, results)
    if html:
        report.write_html(html, results, generated=dates.format_datetime(run.wall_clock()))
    if not all(r.ok for r in results):
        sys.exit(1)


def _serve(scenario: Scenario, now: datetime, port: int, url: str | None, signer: run.JwtSigner | None) -> None:

    from cds_service.replay import fhir_server

    resolved = scenario.resolved(now)
    try:
        serving = fhir_server.serve(resolved, port=port)
        server = serving.__enter__()
    except (OSError, RuntimeError) as exc:
        raise UsageProblem(f"cannot serve on 127.0.0.1:{port}: {exc}") from exc
    try:
        patient = str((resolved.patient or {}).get("id", ""))
        discovery = (url.rstrip("/").removesuffix("/cds-services") if url else "http://127.0.0.1:8080") + "/cds-services"
        console = Console(highlight=False)
        click.echo(f"FHIR R4 endpoint (loopback; reads, and QuestionnaireResponse writes with a SMART token): {server.url}")
        click.echo(f"SMART EHR launch of the INO2 form: {server.url}/ehr/launch?app=<the card's SMART link url>")
        click.echo(f"patientId: {patient}   hook: {scenario.hook}   dates resolved at {dates.format_datetime(resolved.now)}")
        click.echo(f"CDS Hooks sandbox: {sandbox_link(server.url, patient, discovery, scenario.hook)}")
        if url:
            click.echo(
                f"(the service at {url} fetches from this endpoint only if its fhir_server_allowlist "
                f"lists it, e.g. CDS_FHIR_SERVER_ALLOWLIST={run.LOOPBACK_FHIR})"
            )
        click.echo("Fallback path (hook call without prefetch, fhirServer = the endpoint above):")
        result = asyncio.run(_fallback(scenario, now, url, signer, server.url))
        report.print_result(console, result)
        click.echo("Serving until Ctrl-C.")
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        serving.__exit__(None, None, None)


async def _fallback(scenario: Scenario, now: datetime, url: str | None, signer: run.JwtSigner | None,
                    fhir_url: str) -> run.ScenarioResult:
    with _quiet_service_log():
        async with _target(url, signer) as replayer:
            return await replayer.replay(scenario, now, fhir_server=fhir_url, send_prefetch=False)
