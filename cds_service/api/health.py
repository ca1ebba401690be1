"""Liveness and readiness for orchestrators: /healthz answers while the process runs;
/readyz only when the knowledge is loaded and the audit store answers."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from cds_service.api.errors import JSON


async def healthz(request: Request) -> JSON:
    return JSON({"status": "ok"})


async def readyz(request: Request) -> JSON:
    state = request.app.state.cds
    version = state.knowledge_version
    store_ok = await run_in_threadpool(state.store.ping)
    checks = {"knowledge": version or "not loaded", "store": "ok" if store_ok else "unreachable"}
    ready = bool(version) and store_ok
    return JSON(
        {"status": "ready" if ready else "not ready", "checks": checks}, status_code=200 if ready else 503
    )
