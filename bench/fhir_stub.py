"""A slow local FHIR endpoint for the fallback measurement (prefetch absent).

Serves one synthetic patient's record: read ``GET /Patient/{id}`` and search
``GET /{type}?patient=…[&code=…]`` (a searchset Bundle, one page), each answered after
``await asyncio.sleep(delay)`` to stand in for a remote FHIR server. It counts the calls
and the most that were in flight at once, so the benchmark can show that the service's
fetches overlap: ``GET /_bench/stats`` returns them, ``POST /_bench/reset`` clears them.

Run as ``uvicorn bench.fhir_stub:app_from_env --factory`` with ``BENCH_FHIR_DATA`` (a JSON
list of resources) and ``BENCH_FHIR_DELAY`` (seconds, default 0.05) in the environment.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

FHIR_JSON = "application/fhir+json"


def _json(value: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(value), status_code=status, media_type=FHIR_JSON)


def _matches_code(res: dict[str, Any], tokens: set[str]) -> bool:
    concept = res.get("code") or res.get("medicationCodeableConcept") or {}
    for c in concept.get("coding") or ():
        if f"{c.get('system', '')}|{c.get('code', '')}" in tokens or c.get("code") in tokens:
            return True
    return False


def create_stub(resources: Sequence[dict[str, Any]], delay: float = 0.05) -> Starlette:
    by_type: dict[str, list[dict[str, Any]]] = {}
    by_ref: dict[str, dict[str, Any]] = {}
    for res in resources:
        by_type.setdefault(res["resourceType"], []).append(res)
        by_ref[f"{res['resourceType']}/{res['id']}"] = res
    stats = {"calls": 0, "in_flight": 0, "max_in_flight": 0}

    async def serve(request: Request) -> Response:
        stats["calls"] += 1
        stats["in_flight"] += 1
        stats["max_in_flight"] = max(stats["max_in_flight"], stats["in_flight"])
        try:
            await asyncio.sleep(delay)
            rtype = request.path_params["rtype"]
            rid = request.path_params.get("rid")
            if rid is not None:
                res = by_ref.get(f"{rtype}/{rid}")
                return _json(res) if res else _json({"resourceType": "OperationOutcome", "issue": [
                    {"severity": "error", "code": "not-found"}]}, 404)
            found = by_type.get(rtype, [])
            code = request.query_params.get("code")
            if code:
                tokens = set(code.split(","))
                found = [r for r in found if _matches_code(r, tokens)]
            return _json({"resourceType": "Bundle", "type": "searchset", "total": len(found),
                          "entry": [{"resource": r} for r in found]})
        finally:
            stats["in_flight"] -= 1

    async def get_stats(request: Request) -> Response:
        return _json({k: v for k, v in stats.items() if k != "in_flight"})

    async def reset(request: Request) -> Response:
        stats.update(calls=0, max_in_flight=0)
        return _json({"ok": True})

    return Starlette(routes=[
        Route("/_bench/stats", get_stats, methods=["GET"]),
        Route("/_bench/reset", reset, methods=["POST"]),
        Route("/{rtype}/{rid}", serve, methods=["GET"]),
        Route("/{rtype}", serve, methods=["GET"]),
    ])


def app_from_env() -> Starlette:
    data = orjson.loads(Path(os.environ["BENCH_FHIR_DATA"]).read_bytes())
    return create_stub(data, float(os.environ.get("BENCH_FHIR_DELAY", "0.05")))
