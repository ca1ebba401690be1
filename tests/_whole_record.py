"""Whole patient records sent to the real service in-process, the two ways an EHR sends them:
in ``prefetch``, or through the FHIR-server fallback (no prefetch; the service searches
``fhirServer``, here a mock transport answering with replay's own FHIR search over the
record). Used by the HAZ-001 and HAZ-006 tests."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx

from cds_service.replay import fhir_search, run
from cds_service.replay.request import build_request
from cds_service.replay.scenario import ResolvedScenario, load_scenario

SCENARIOS = Path(__file__).parent / "scenarios"
HOLD = SCENARIOS / "liver-function-hold-bilirubin-1.51-ast-2.6-critical.json"
QUIET = SCENARIOS / "ino2-eligibility-all-met-no-card.json"
FHIR = "https://ehr.example.org/fhir"
OTHER = "pt-other"


def rule(card: dict[str, Any]) -> str:
    return card["source"]["topic"]["code"]


def text(card: dict[str, Any]) -> str:
    return f"{card.get('summary', '')}\n{card.get('detail', '')}"


def resolved(path: Path) -> ResolvedScenario:
    return load_scenario(path).resolved(datetime.now(UTC))


def search_server(res: ResolvedScenario, foreign: list[dict[str, Any]],
                  patient: dict[str, Any] | None = None) -> httpx.MockTransport:
    """A FHIR server that answers each search with this patient's matches (replay's own
    search) plus ``foreign``: a server ignoring the ``patient`` parameter; ``patient``, if
    given, is what it answers the read ``Patient/<id>`` with."""
    index = fhir_search.ResourceIndex.of(res.record)

    def handler(request: httpx.Request) -> httpx.Response:
        query = unquote(str(request.url).removeprefix(FHIR + "/"))
        if patient is not None and query.startswith("Patient/"):
            return httpx.Response(200, json=patient)
        found = fhir_search.evaluate(query, index).value
        if found is None:
            return httpx.Response(404, json={"resourceType": "OperationOutcome", "issue": []})
        if found.get("resourceType") == "Bundle":
            rtype = query.split("?", 1)[0]
            found = {**found, "entry": [*found.get("entry", []),
                                        *({"resource": f} for f in foreign if f["resourceType"] == rtype)]}
        return httpx.Response(200, json=found)

    return httpx.MockTransport(handler)


def call(res: ResolvedScenario, *, path: str, foreign: list[dict[str, Any]] = (),  # type: ignore[assignment]
         foreign_drafts: list[dict[str, Any]] = (),  # type: ignore[assignment]
         edit: Callable[[dict[str, Any]], None] | None = None,
         served_patient: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The cards the real service answers for the scenario sent by ``path`` ("prefetch" or
    "fallback"), with ``foreign`` resources in the data and ``foreign_drafts`` in the session."""

    async def go() -> list[dict[str, Any]]:
        transport = search_server(res, list(foreign), served_patient) if path == "fallback" else None
        # the site lists its EHR's FHIR server (fhir_server_allowlist), as a deployment must
        settings = run.replay_settings(fhir_server_allowlist=(FHIR,))
        async with run.in_process(settings, transport=transport) as replayer:
            services = [s for s in await replayer.services() if s["hook"] == res.scenario.hook]
            cards: list[dict[str, Any]] = []
            for service in services:
                templates = service.get("prefetch") or {}
                body = build_request(res, templates if path == "prefetch" else None,
                                     fhir_server=FHIR if path == "fallback" else None).body
                if path == "prefetch":
                    for f in foreign:  # a mis-built prefetch: the resource under its type's key
                        key = next(k for k, t in templates.items() if t.startswith(f["resourceType"] + "?"))
                        bundle = body["prefetch"].get(key) or {"resourceType": "Bundle", "type": "searchset"}
                        body["prefetch"][key] = {**bundle, "entry": [*bundle.get("entry", []), {"resource": f}]}
                body["context"]["draftOrders"]["entry"] += [{"resource": d} for d in foreign_drafts]
                if edit:
                    edit(body)
                replayer._set_time(res.now)  # type: ignore[misc]
                try:
                    cards += await replayer.call(service["id"], body)
                finally:
                    replayer._set_time(None)  # type: ignore[misc]
            return cards

    return asyncio.run(go())


def cards_by_rule(cards: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for c in cards:
        out.setdefault(rule(c), []).append(c)
    return out
