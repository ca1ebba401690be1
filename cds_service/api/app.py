"""The application factory: settings + engine + audit store -> an ASGI app.

``create_app`` takes its collaborators as arguments so tests inject a fake engine, an
in-memory store and an httpx transport (STYLE.md §12); left out, they come from the
settings: the bundled knowledge through ``cds_service.engine.Engine`` and an
``AuditStore`` at ``database_url``. Everything per-app (metrics registry, JWT replay
cache, JWKS cache, httpx client) lives on ``app.state.cds``; nothing is module-global.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import logging
import re
import time
import traceback
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:  # httpx is imported where a fetch happens: it costs ~0.15 s at start-up
    import httpx

from cds_service import __version__
from cds_service.api import logging as cds_logging
from cds_service.api.audit_writer import AuditWriter
from cds_service.api.cors import cors
from cds_service.api.discovery import discovery, hooks_of, render_services
from cds_service.api.errors import (
    JSON,
    PayloadTooLarge,
    PrefetchMissing,
    RequestTimeout,
    UnknownService,
    UnsupportedMediaType,
    issue,
    outcome,
    outcome_response,
    unauthorized,
)
from cds_service.api.feedback import feedback
from cds_service.api.health import healthz, readyz
from cds_service.api.hooks import call_service
from cds_service.api.metrics import Metrics, metrics_endpoint
from cds_service.api.openapi import openapi_document
from cds_service.api.security import Authenticator, AuthError, base_urls, check_startup, endpoint_urls
from cds_service.api.sources import source_page, sources_index
from cds_service.errors import MalformedRequest, PrefetchUnavailable
from cds_service.record import FhirServerPolicy
from cds_service.settings import Settings, SettingsError, load_settings, mask_url
from cds_service.store import AuditStore, InvocationRecord

log = logging.getLogger(__name__)
_REQUEST_ID = re.compile(r"^[\w.-]{1,64}$")


class CpuTurns:
    """Turns of the event loop for CPU-bound hook steps (evaluation runs on the loop: a
    worker thread would only trade the GIL with it).

    Steps whose requests are ready together run back to back until they have used
    ``slice_seconds`` of one loop turn; later ones wait (``await wait()``) until the
    loop has polled its sockets again, so probes, new connections and finished fetches
    get in between. 10 ms is about one evaluation of a large record, or several small
    ones. Measured (``python -m bench.health_under_load``, 500-resource order-sign,
    c=16, 2 busy cores): /healthz p99 0.63-0.81 s -> 0.36-0.40 s, /readyz 0.96-1.06 s
    -> 0.49-0.50 s, hooks/s unchanged (57-58 -> 55-58). A lock held across a yield (one
    step per turn, strictly) cost a third of the throughput in the same runs.
    """

    def __init__(self, slice_seconds: float = 0.01) -> None:
        self.slice = slice_seconds
        self.used = 0.0
        self._reset_on: asyncio.AbstractEventLoop | None = None

    async def wait(self) -> None:
        loop = asyncio.get_running_loop()
        if self._reset_on is not None and self._reset_on is not loop:  # a new loop (tests)
            self._reset()
        while self.used >= self.slice:
            await asyncio.sleep(0)

    def spent(self, seconds: float) -> None:
        self.used += seconds
        if self.used >= self.slice and self._reset_on is None:
            self._reset_on = asyncio.get_running_loop()
            self._reset_on.call_soon(self._reset)  # runs after what is ready now: the next turn

    def _reset(self) -> None:
        self.used, self._reset_on = 0.0, None


class ServiceState:
    """What the endpoints share: settings, engine, store, metrics, auth, HTTP client."""

    hooks_of = staticmethod(hooks_of)

    def __init__(
        self, settings: Settings, engine: Any, store: AuditStore, transport: httpx.AsyncBaseTransport | None
    ) -> None:
        self.settings, self.engine, self.store, self.transport = settings, engine, store, transport
        self.metrics = Metrics()
        self.auth = Authenticator(
            settings, self.http, claim=store.claim_token if settings.trusted_issuers else None
        )
        self.aud_bases = base_urls(settings)
        self.services: dict[str, list[Any]] = {}
        for definition in engine.services:
            self.services.setdefault(definition.id, []).append(definition)
        self.discovery_document = render_services(engine.services)
        self.openapi: dict[str, Any] | None = None  # built on first GET /openapi.json
        kb = getattr(engine, "kb", None)
        self.knowledge_version: str | None = getattr(kb, "version", None)
        policy = getattr(engine, "policy", None) or settings.policy
        self.policy_json = policy.as_json() if hasattr(policy, "as_json") else {}
        params = inspect.signature(engine.evaluate).parameters
        self.evaluate_takes_hook = "hook" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())
        #: the engine's relevance gate (Engine.screen), if it has one
        self.screen = getattr(engine, "screen", None)
        self._http: httpx.AsyncClient | None = None
        self._http_loop: asyncio.AbstractEventLoop | None = None
        #: hook calls inside call_service now: with two or more, the audit writer waits for
        #: their rows; with one (a clinician's call at a time) it writes at once, in the idle
        #: time after the response, not during the next call (audit_writer.py)
        self.hooks_in_flight = 0
        self.audit_writer = AuditWriter(store, busy=lambda: self.hooks_in_flight > 1)
        self.cpu_turns = CpuTurns()
        self.fhir_server_policy = FhirServerPolicy(settings.fhir_server_allowlist, settings.allow_http_fhir_server)
        # DNS only when fetching over the network (an injected test transport resolves nothing)
        self.resolve_host = _resolve if transport is None else None

    def http(self) -> httpx.AsyncClient:
        """The outbound client (fhirServer fallback, JWKS), one per event loop."""
        loop = asyncio.get_running_loop()
        if self._http is None or self._http_loop is not loop:
            import httpx

            self._http = httpx.AsyncClient(
                transport=self.transport, follow_redirects=False, timeout=self.settings.fetch_timeout_seconds
            )
            self._http_loop = loop
        return self._http

    async def aclose(self) -> None:
        await run_in_threadpool(self.audit_writer.close)  # commit what is queued
        if self._http is not None:
            await self._http.aclose()

    def lookup(self, service_id: str) -> list[Any]:
        found = self.services.get(service_id)
        if not found:
            raise UnknownService(f"no CDS service '{service_id}'; GET /cds-services lists them", field="id")
        return found

    async def authenticate(self, request: Request, path: str, *, parent_too: bool = False) -> dict[str, Any]:
        """Verify the bearer JWT with ``aud`` = this endpoint's URL under the configured base
        (``parent_too``: or the URL one path segment up, which feedback tolerates)."""
        audiences = endpoint_urls(self.aud_bases, path)
        if parent_too:
            audiences += endpoint_urls(self.aud_bases, path.rsplit("/", 1)[0])
        return await self.auth.verify(request.headers.get("authorization"), audiences)

    async def write_audit(self, record: InvocationRecord) -> None:
        """Store an invocation; a failure is logged and counted, never raised."""
        try:
            await asyncio.wrap_future(self.audit_writer.submit(record))
        except Exception as exc:  # noqa: BLE001 - the audit must never fail a hook call
            self.metrics.errors.labels("audit").inc()
            log.error("audit write failed (%s); the hook response was not affected", type(exc).__name__)


async def _resolve(host: str) -> list[str]:
    """The addresses ``host`` resolves to (for the fhirServer policy)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, None)
    return [str(info[4][0]) for info in infos]


def build_engine(settings: Settings) -> Any:
    """Load, validate and compile the knowledge named by ``settings`` (KnowledgeError if bad)."""
    from cds_service.engine import Engine
    from cds_service.knowledge import load_knowledge

    return Engine(load_knowledge(settings.knowledge_dirs), policy=settings.policy)


def create_app(
    settings: Settings | None = None,
    *,
    engine: Any | None = None,
    store: AuditStore | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> FastAPI:
    """Build the service. Raises SettingsError / KnowledgeError if it must not start."""
    settings = settings or load_settings()
    check_startup(settings)
    cds_logging.quiet_http_clients()
    if engine is None:
        engine = build_engine(settings)
    if store is None:
        settings.ensure_data_dir()
        try:
            store = AuditStore(settings.database_url)
        except (SQLAlchemyError, ImportError) as exc:  # bad URL or missing driver
            raise SettingsError(
                f"cannot use database_url {mask_url(settings.database_url)}: "
                f"{type(exc).__name__}: {mask_url(str(exc))}",
                field="database_url",
            ) from None
    state = ServiceState(settings, engine, store, transport)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await state.aclose()

    app = FastAPI(
        title="sact-cds",
        version=__version__,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        lifespan=lifespan,
    )
    app.state.cds = state
    app.add_api_route("/cds-services", discovery, methods=["GET"])
    app.add_api_route("/cds-services/{service_id}", call_service, methods=["POST"])
    app.add_api_route("/cds-services/{service_id}/feedback", feedback, methods=["POST"])
    app.add_api_route("/healthz", healthz, methods=["GET"])
    app.add_api_route("/readyz", readyz, methods=["GET"])
    app.add_api_route("/metrics", metrics_endpoint, methods=["GET"])
    app.add_api_route("/openapi.json", openapi_json, methods=["GET"], include_in_schema=False)
    if settings.docs:
        app.add_api_route("/docs", docs_page, methods=["GET"], include_in_schema=False)
    from cds_service.apps.ino2.web import install as install_ino2_form  # apps sit on the api layer

    install_ino2_form(app, settings, engine)
    app.add_api_route("/sources", sources_index, methods=["GET"])
    app.add_api_route("/sources/{page}", source_page, methods=["GET"])
    _install_handlers(app, state)
    app.add_middleware(_RequestContext, state=state)
    app.add_middleware(_Cors, origins=settings.cors_origins)
    return app


async def openapi_json(request: Request) -> JSON:
    state = request.app.state.cds
    if state.openapi is None:
        form = any(getattr(r, "path", "") == "/fhir/Questionnaire/Ino2Attestation/$populate" for r in request.app.routes)
        state.openapi = openapi_document(state.discovery_document, public_base_url=state.settings.public_base_url,
                                         ino2_form=form)
    return JSON(state.openapi)


async def docs_page(request: Request) -> Response:
    from fastapi.openapi.docs import get_swagger_ui_html

    return get_swagger_ui_html(openapi_url="/openapi.json", title="sact-cds API")


def _Cors(app: ASGIApp, origins: tuple[str, ...]) -> ASGIApp:  # noqa: N802 - middleware factory
    return cors(app, origins)


def _install_handlers(app: FastAPI, state: ServiceState) -> None:
    async def malformed(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, MalformedRequest)
        return outcome_response(400, str(exc.message), field=exc.field)

    async def unknown(request: Request, exc: Exception) -> Response:
        return outcome_response(404, str(exc.args[0]), code="not-found")

    async def too_large(request: Request, exc: Exception) -> Response:
        return outcome_response(413, str(exc.args[0]), code="too-long")

    async def media_type(request: Request, exc: Exception) -> Response:
        return outcome_response(415, str(exc.args[0]), code="not-supported")

    async def request_timeout(request: Request, exc: Exception) -> Response:
        return outcome_response(408, str(exc.args[0]), code="timeout", headers={"Connection": "close"})

    async def precondition(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, PrefetchUnavailable)
        reasons = getattr(exc, "reasons", None) or {k: f"prefetch '{k}' unavailable" for k in exc.missing}
        issues = [
            issue(text, code="incomplete", expression=[f"prefetch.{key}"]) for key, text in reasons.items()
        ]
        return JSON(outcome(*issues), status_code=412)

    async def auth_failed(request: Request, exc: Exception) -> Response:
        state.metrics.errors.labels("auth").inc()
        log.info("authentication failed: %s", exc)
        return unauthorized()

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        text = "no such endpoint" if exc.status_code == 404 else str(exc.detail)
        return outcome_response(
            exc.status_code,
            text,
            code="not-found" if exc.status_code == 404 else "not-supported",
            headers=exc.headers,
        )

    app.add_exception_handler(MalformedRequest, malformed)
    app.add_exception_handler(UnknownService, unknown)
    app.add_exception_handler(PayloadTooLarge, too_large)
    app.add_exception_handler(UnsupportedMediaType, media_type)
    app.add_exception_handler(RequestTimeout, request_timeout)
    app.add_exception_handler(PrefetchMissing, precondition)
    app.add_exception_handler(PrefetchUnavailable, precondition)
    app.add_exception_handler(AuthError, auth_failed)
    app.add_exception_handler(HTTPException, http_error)


class _RequestContext:
    """Request id, structured access log, and the last-resort 500 for genuine faults."""

    def __init__(self, app: ASGIApp, state: ServiceState) -> None:
        self.app, self.state = app, state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = ""
        for name, value in scope.get("headers") or ():
            if name == b"x-request-id":
                given = value.decode("latin-1")
                break
        rid = given if _REQUEST_ID.match(given) else uuid.uuid4().hex
        tokens = [
            cds_logging.request_id.set(rid),
            cds_logging.service.set(None),
            cds_logging.hook_instance.set(None),
        ]
        started, status, response_started = time.perf_counter(), 500, False

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started, status = True, message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", rid.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except ClientDisconnect:
            # The client went away mid-request (closed tab, EHR timeout): nothing is wrong
            # with the service and there is nobody to answer. Counted apart, no traceback.
            status = 499  # nginx's "client closed request", for the access log only
            self.state.metrics.errors.labels("client_disconnect").inc()
            log.info("client disconnected before the response was sent")
        except Exception as exc:
            self.state.metrics.errors.labels("internal").inc()
            # type and stack only: an exception message may quote request data (PHI)
            log.error(
                "internal error: %s\n%s",
                type(exc).__name__,
                "".join(traceback.format_tb(exc.__traceback__)),
                extra={"request_id": rid},
            )
            if not response_started:
                body = JSON(
                    outcome(issue(f"internal error; quote request id {rid}", code="exception")),
                    status_code=500,
                )
                await body(scope, receive, send_with_id)
        finally:
            if log.isEnabledFor(logging.INFO):  # nothing built for a line that is not written
                log.info(
                    "%s %s -> %d",
                    scope["method"],
                    scope["path"],
                    status,
                    extra={
                        "method": scope["method"],
                        "path": scope["path"],
                        "status": status,
                        "latency_ms": round((time.perf_counter() - started) * 1000, 2),
                        "cards": scope.get(cds_logging.CARDS_KEY),
                    },
                )
            for var, token in zip(
                (cds_logging.request_id, cds_logging.service, cds_logging.hook_instance), tokens, strict=True
            ):
                var.reset(token)


def tune_gc() -> None:
    """Set the cyclic garbage collector up for serving, once the app is built.

    A hook request parses into tens of thousands of objects; with the default thresholds
    they set off several full collections per request, each walking everything the
    process holds (knowledge, compiled rules, libraries). Freezing what exists at start
    takes those objects out of every later collection, and a larger first threshold runs
    fewer collections per request. Only timing changes (bench/, docs/readme-performance.md:
    about a quarter more hooks per second for a 500-resource patient)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 50, 100)


def app_from_env() -> FastAPI:
    """uvicorn factory for ``--workers N``: each worker reads its settings from ``CDS_*``."""
    settings = load_settings()
    cds_logging.configure_logging(settings.log_level, settings.log_format)
    app = create_app(settings)
    tune_gc()
    return app
