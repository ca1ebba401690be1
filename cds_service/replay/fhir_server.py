"""``replay --serve-fhir``: a scenario's record as a FHIR R4 endpoint on loopback (reads; form writes).

So the same scenario can be driven from the CDS Hooks sandbox (point its FHIR server at
this URL) or through the service's FHIR-server fallback (a hook call without prefetch
whose ``fhirServer`` is this URL). Interactions (FHIR R4 RESTful API): ``GET /metadata``
(CapabilityStatement), read ``GET /{type}/{id}``, search ``GET /{type}?…`` and
``POST /{type}/_search`` (form body, as the sandbox tries first) returning a ``searchset``
Bundle, with the parameters of :mod:`cds_service.replay.fhir_search`. Any other write is
405. Draft orders are not served (an EHR keeps unsigned orders
in the ordering session, not on its FHIR server). Binds 127.0.0.1 only.

It is also a SMART EHR for tests (``smart_ehr.py``): smart-configuration, an EHR launch,
authorize and token, and ``POST``/``PUT`` of QuestionnaireResponse with one of its tokens
(kept in memory, then read and searched like the rest).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl

import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from cds_service.replay import dates, fhir_search
from cds_service.replay.scenario import ResolvedScenario
from cds_service.replay.smart_ehr import SmartEhr

FHIR_JSON = "application/fhir+json"
LOOPBACK = "127.0.0.1"


class FhirJSONResponse(JSONResponse):
    media_type = FHIR_JSON


def outcome(code: str, diagnostics: str, severity: str = "error") -> dict[str, Any]:
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": severity, "code": code, "diagnostics": diagnostics}],
    }


def capability_statement(index: fhir_search.ResourceIndex, now: datetime) -> dict[str, Any]:
    """What this endpoint does: read and search-type on every type it holds."""
    params = (
        [{"name": n, "type": "reference"} for n in fhir_search.REFERENCE_PARAMS]
        + [{"name": n, "type": "token"} for n in fhir_search.TOKEN_PARAMS]
        + [{"name": n, "type": "date"} for n in fhir_search.DATE_PARAMS]
        + [{"name": "_id", "type": "token"}]
    )
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": dates.format_datetime(now),
        "kind": "instance",
        "software": {"name": "sact-cds replay --serve-fhir"},
        "implementation": {"description": "Read-only FHIR R4 view of one replay scenario (loopback only)"},
        "fhirVersion": "4.0.1",
        "format": ["json", FHIR_JSON],
        "rest": [
            {
                "mode": "server",
                "documentation": "Read-only except QuestionnaireResponse create/update with a token of its SMART EHR. Search supports _count and _sort; an unsupported parameter is ignored and reported in an OperationOutcome entry.",
                "resource": [
                    {
                        "type": rtype,
                        "interaction": [{"code": "read"}, {"code": "search-type"}] + (
                            [{"code": "create"}, {"code": "update"}] if rtype == "QuestionnaireResponse" else []),
                        "searchParam": params,
                    }
                    for rtype in sorted({*index.types(), "QuestionnaireResponse"})
                ],
            }
        ],
    }


def make_app(resolved: ResolvedScenario, *, base_url: str = "") -> Starlette:
    """The ASGI app serving one resolved scenario's record (patient included, drafts not)."""
    index = fhir_search.ResourceIndex.of(resolved.record)

    async def metadata(request: Request) -> FhirJSONResponse:
        return FhirJSONResponse(capability_statement(index, resolved.now))

    async def read(request: Request) -> FhirJSONResponse:
        rtype, rid = request.path_params["type"], request.path_params["id"]
        resource = index.read(rtype, rid)
        if resource is None:
            return FhirJSONResponse(outcome("not-found", f"{rtype}/{rid} is not known"), status_code=404)
        return FhirJSONResponse(resource)

    async def search(request: Request) -> FhirJSONResponse:
        rtype = request.path_params["type"]
        params = list(request.query_params.multi_items())
        if request.method == "POST":
            params += parse_qsl((await request.body()).decode("utf-8"), keep_blank_values=True)
        if not rtype[:1].isupper():
            return FhirJSONResponse(outcome("not-supported", f"unknown resource type {rtype}"), status_code=404)
        try:
            result = fhir_search.search(rtype, params, index, base_url=base_url or str(request.base_url))
        except ValueError as exc:
            return FhirJSONResponse(outcome("invalid", str(exc)), status_code=400)
        bundle = dict(result.value or {})
        if result.ignored:
            warning = outcome("not-supported", f"search parameter(s) ignored: {', '.join(result.ignored)}", "warning")
            bundle["entry"] = [*bundle.get("entry", []), {"resource": warning, "search": {"mode": "outcome"}}]
        return FhirJSONResponse(bundle)

    async def read_only(request: Request) -> FhirJSONResponse:
        return FhirJSONResponse(outcome("not-supported", "this FHIR endpoint is read-only"), status_code=405)

    patient_id = str(resolved.patient.get("id")) if resolved.patient else None
    ehr = SmartEhr(index, patient_id, resolved.user_id, base_url)
    routes = [
        *ehr.routes(),
        Route("/metadata", metadata, methods=["GET"]),
        Route("/{type}/_search", search, methods=["POST"]),
        Route("/{type}/{id}", read, methods=["GET"]),
        Route("/{type}/{id}", read_only, methods=["PUT", "PATCH", "DELETE", "POST"]),
        Route("/{type}", search, methods=["GET"]),
        Route("/{type}", read_only, methods=["POST", "PUT", "DELETE"]),
    ]
    # The CDS Hooks sandbox is a browser app: it needs CORS to read this server.
    middleware = [Middleware(CORSMiddleware, allow_origins=["*"], allow_methods=["GET", "POST"], allow_headers=["*"])]
    app = Starlette(routes=routes, middleware=middleware)
    app.state.ehr = ehr
    return app


@dataclass
class FhirServer:
    """A running ``--serve-fhir`` endpoint; ``url`` is its FHIR base URL."""

    url: str
    server: uvicorn.Server
    thread: threading.Thread

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@contextmanager
def serve(resolved: ResolvedScenario, *, port: int = 0, startup_timeout: float = 10.0) -> Iterator[FhirServer]:
    """Serve a scenario on ``127.0.0.1:port`` (0 = any free port) in a background thread."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((LOOPBACK, port))
    url = f"http://{LOOPBACK}:{sock.getsockname()[1]}"
    config = uvicorn.Config(make_app(resolved, base_url=url), log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True, name="serve-fhir")
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            sock.close()
            raise RuntimeError(f"the FHIR endpoint did not start on {url}")
        time.sleep(0.02)
    running = FhirServer(url, server, thread)
    try:
        yield running
    finally:
        running.stop()
        sock.close()
