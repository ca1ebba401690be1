"""``POST /cds-services/{id}``: authenticate, validate, complete prefetch, evaluate, audit.

The steps and their failures, in order (each maps to one HTTP status, never a 500 for
anything the client sent):

1. JWT (``security.py``) -> 401, no detail
2. service id known -> 404; body is JSON no larger than ``max_request_bytes`` -> 400 / 413
3. envelope (``envelope.py``) -> 400 naming the field
4. prefetch completed from ``fhirServer`` (``record/_fetch.py``) -> 412 naming the keys
5. relevance gate (``Engine.screen``, engine/relevance.py): drafted orders no rule can fire
   on are answered without building the record or computing features
6. record built leniently (``record.build_record``), fetch notes added; the engine
   evaluates on the event loop (pure CPU: a worker thread only adds GIL hand-offs), in turns
   behind ``state.cpu_turns`` so health probes wait for one slice, not for every evaluation
   in flight
7. the audit row is written after the response is sent; a failing store is logged and
   counted, never turned into a failed hook call
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import orjson
from starlette.background import BackgroundTask
from starlette.requests import Request

from cds_service.api import logging as cds_logging
from cds_service.api.envelope import validate_request
from cds_service.api.errors import JSON, PayloadTooLarge, PrefetchMissing, RequestTimeout, UnsupportedMediaType
from cds_service.api.sources import absolute_sources, base_url
from cds_service.apps.links import complete_smart_links
from cds_service.errors import MalformedRequest
from cds_service.record import FetchResult, build_record, complete_prefetch
from cds_service.store import CardRecord, InvocationRecord

log = logging.getLogger(__name__)


#: What a POST body may be declared as (CDS Hooks: JSON; FHIR clients may say fhir+json).
JSON_MEDIA_TYPES = frozenset({"application/json", "application/fhir+json"})


def check_json_media_type(content_type: str | None) -> None:
    """415 unless the body is declared as JSON in UTF-8 (RFC 8259 §8.1: JSON is UTF-8), so
    a form post or a text/plain "simple request" from a browser never reaches the parser."""
    media, _, params = (content_type or "").partition(";")
    media = media.strip().lower()
    charset = ""
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset":
            charset = value.strip().strip('"').lower()
    if media not in JSON_MEDIA_TYPES or charset not in ("", "utf-8", "utf8"):
        shown = f"'{media}'" if media else "none"
        raise UnsupportedMediaType(
            f"the request body must be JSON: send Content-Type: application/json (UTF-8; "
            f"application/fhir+json is accepted too), not {shown}"
            + (f" with charset {charset}" if media in JSON_MEDIA_TYPES else "")
        )


async def read_body(request: Request, max_bytes: int, timeout: float | None = None) -> bytes:
    """The request body as bytes; 415 if not declared JSON, 413 past ``max_bytes``, 408 if it
    takes longer than ``timeout`` seconds to arrive."""
    check_json_media_type(request.headers.get("content-type"))
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise PayloadTooLarge(f"request body larger than {max_bytes} bytes")
    body = bytearray()
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.stream():
                body += chunk
                if len(body) > max_bytes:
                    raise PayloadTooLarge(f"request body larger than {max_bytes} bytes")
    except TimeoutError:
        raise RequestTimeout(f"the request body did not arrive within {timeout:g} s") from None
    return bytes(body)


def parse_json(body: bytes) -> Any:
    """``body`` parsed as JSON (400 if empty or not JSON)."""
    if not body.strip():
        raise MalformedRequest("the request body is empty; expected a JSON object", field="(body)")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise MalformedRequest(f"the request body is not valid JSON ({exc})", field="(body)") from None


async def read_json(request: Request, max_bytes: int, timeout: float | None = None) -> Any:
    """The request body parsed as JSON; 415 if not declared JSON, 413 past ``max_bytes``,
    408 if it takes longer than ``timeout`` seconds to arrive, 400 if not JSON."""
    return parse_json(await read_body(request, max_bytes, timeout))


async def fetch_missing(state: Any, templates: Mapping[str, str], request: Mapping[str, Any]) -> FetchResult:
    """Fill what ``request`` lacks of ``templates`` from its ``fhirServer``, under the
    service's fallback settings: one deadline and one byte budget per call, the FHIR-server
    allow-list, bounded concurrency and pages. Every fetch the service makes for a caller
    (hook calls, the INO2 form's ``$populate`` and app) goes through here, so none escapes
    those bounds."""
    settings = state.settings
    return await complete_prefetch(
        templates,
        request,
        state.http,
        timeout=settings.fetch_timeout_seconds,
        concurrency=settings.fetch_concurrency,
        max_pages=settings.fetch_max_pages,
        on_fetch=lambda outcome: state.metrics.fallback_fetches.labels(outcome).inc(),
        deadline=settings.fetch_deadline_seconds,
        max_bytes=settings.fetch_max_bytes,
        policy=state.fhir_server_policy,
        resolve=state.resolve_host,
    )


async def call_service(request: Request) -> JSON:
    """The hook endpoint; counts itself in ``hooks_in_flight`` (the audit writer commits
    the rows of concurrent calls together: audit_writer.py)."""
    state = request.app.state.cds
    state.hooks_in_flight += 1
    try:
        return await _call_service(request, state)
    finally:
        state.hooks_in_flight -= 1


async def _call_service(request: Request, state: Any) -> JSON:
    service_id = request.path_params["service_id"]
    started = time.perf_counter()
    await state.authenticate(request, f"/cds-services/{service_id}")
    definitions = state.lookup(service_id)  # 404 if unknown
    t_read = time.perf_counter()
    raw = await read_body(request, state.settings.max_request_bytes, state.settings.request_read_timeout_seconds)
    # The CPU-bound steps (parse, envelope, gate or record, rules, card rendering) run on the
    # event loop, in turns (``CpuTurns``): once the steps run back to back in one turn of
    # the loop have used its slice, the rest wait for the next turn, so a health probe or a
    # new connection waits for about one slice, not for every evaluation in flight (issue
    # 12: /healthz took seconds under c=16). The turn is taken before the body is parsed:
    # a request waiting for its turn holds its bytes, not tens of thousands of parsed
    # objects (waiting after the parse cost ~2.8 ms CPU per order-sign at c=16, issue 11).
    await state.cpu_turns.wait()
    t_cpu = t_parse = time.perf_counter()
    body = parse_json(raw)
    del raw
    t_valid = time.perf_counter()
    hooks = {h: d for d in definitions for h in state.hooks_of(d)}
    req = validate_request(body, service_id, hooks)
    t_done = time.perf_counter()
    cds_logging.service.set(service_id)
    cds_logging.hook_instance.set(req["hookInstance"])
    definition = hooks[req["hook"]]
    templates = dict(definition.prefetch or {})
    audit = _AuditDraft(state, service_id, req, started)
    # the steps of this call, in the server (audit timings_ms; bench/steps.py reads them)
    audit.timings.update(auth=(t_read - started) * 1000, read=(t_parse - t_read) * 1000,
                         parse=(t_valid - t_parse) * 1000, validate=(t_done - t_valid) * 1000)

    settings = state.settings
    t_fetch = time.perf_counter()
    fetch = await fetch_missing(state, templates, req)
    audit.fetched = fetch.fetched
    audit.timings["fetch"] = (time.perf_counter() - t_fetch) * 1000
    if fetch.missing:
        audit.notes = [f"412 prefetch '{k}': {fetch.reasons.get(k, why)}" for k, why in fetch.missing.items()]
        await state.write_audit(audit.finish(412, []))
        raise PrefetchMissing(
            {k: f"prefetch '{k}' ({templates[k]}): {why}" for k, why in fetch.missing.items()}
        )

    full = {**req, "prefetch": fetch.prefetch}
    if fetch.fetched:  # the fetch awaited the network: take a turn again before the CPU work
        state.cpu_turns.spent(time.perf_counter() - t_cpu)
        await state.cpu_turns.wait()
        t_cpu = time.perf_counter()
    screened = state.screen(service_id, full, templates.keys(), fetch.notes) if state.screen else None
    if screened is not None:  # no rule can fire on these orders (engine/relevance.py)
        evaluation = screened
        audit.notes = [*screened.notes, "not evaluated: no rule of this hook is about the drafted orders"]
    else:
        evaluation, record, audit.timings["record"] = _evaluate(state, service_id, full, fetch.notes, templates)
        record_notes = {n.message for n in record.notes}
        audit.notes = [f"{n.kind} {n.key}: {n.message}" for n in record.notes]
        audit.notes += [str(n) for n in evaluation.notes if str(n) not in record_notes]
    cards = [_prune(c) for c in evaluation.cards]
    complete_smart_links(cards, settings.public_base_url or str(request.base_url), req)
    absolute_sources(cards, base_url(request, settings.public_base_url))
    codes = _rule_codes(cards, evaluation.rule_codes)
    for code in codes:
        state.metrics.cards.labels(code or "unknown").inc()
    audit.timings.update(evaluation.timings_ms or {})
    response = JSON({"cards": cards})
    state.cpu_turns.spent(time.perf_counter() - t_cpu)
    # The background task holds the audit row only: the request's objects (parsed body,
    # record, features: tens of thousands for a large record) are freed when this handler
    # returns. Keeping them until the audit write was done (so the response went out before
    # they were freed) cost 1.5-3.5 ms CPU per request at c=16: with 16 requests' objects
    # alive at once, collections and caches pay for all of them (issue 11, measured).
    response.background = BackgroundTask(state.write_audit, audit.finish(200, cards, codes))
    request.scope[cds_logging.CARDS_KEY] = len(cards)  # on the request line (app.py): one line per call
    return response


def _evaluate(state: Any, service_id: str, req: dict[str, Any], fetch_notes: Any,
              templates: dict[str, str]) -> tuple[Any, Any, float]:
    """Build the record and evaluate it: (evaluation, record, ms building the record);
    400 if the record cannot be read."""
    t_record = time.perf_counter()
    try:
        record = build_record(req, templates.keys())
    except (TypeError, AttributeError, ValueError, KeyError, RecursionError) as exc:
        raise MalformedRequest(
            f"context.draftOrders or prefetch could not be read ({type(exc).__name__})", field="prefetch"
        ) from None
    if fetch_notes:
        record = dataclasses.replace(record, notes=(*record.notes, *fetch_notes))
    record_ms = (time.perf_counter() - t_record) * 1000
    now = datetime.now(UTC)
    kw = {"hook": req["hook"]} if state.evaluate_takes_hook else {}
    # Evaluation is pure CPU under the GIL: a worker thread buys no parallelism, only GIL
    # hand-offs with the event loop (measured: 30 -> 50 hooks/s for a 500-resource patient
    # at concurrency 16, `python -m bench`). I/O (fallback fetch, audit write) stays async.
    return state.engine.evaluate(service_id, record, now, **kw), record, record_ms


class _AuditDraft:
    """Collects the audit row while the request is handled (no tokens ever enter it)."""

    def __init__(self, state: Any, service_id: str, req: dict[str, Any], started: float) -> None:
        context = req["context"]
        self.state, self.service_id, self.req, self.started = state, service_id, req, started
        self.request_id = cds_logging.request_id.get() or ""
        self.patient = (
            f"Patient/{context['patientId']}" if isinstance(context.get("patientId"), str) else None
        )
        user = context.get("userId")
        self.user = user if isinstance(user, str) else None
        self.received_at = datetime.now(UTC)
        self.fetched: list[str] = []
        self.notes: list[str] = []
        self.timings: dict[str, float] = {}

    def finish(
        self, status: int, cards: list[dict[str, Any]], codes: list[str | None] | None = None
    ) -> InvocationRecord:
        latency = time.perf_counter() - self.started
        self.state.metrics.hook_latency.labels(self.service_id).observe(latency)
        self.state.metrics.hook_responses.labels(self.service_id, str(status)).inc()
        codes = codes or [None] * len(cards)
        return InvocationRecord(
            service_id=self.service_id,
            hook=self.req["hook"],
            hook_instance=self.req["hookInstance"][:256],
            status_code=status,
            latency_ms=latency * 1000,
            received_at=self.received_at,
            request_id=self.request_id,
            patient_ref=self.patient,
            user_ref=self.user,
            knowledge_version=self.state.knowledge_version,
            cards=[
                CardRecord(c.get("uuid"), code, c.get("indicator"), c.get("summary"))
                for c, code in zip(cards, codes, strict=False)
            ],
            notes=self.notes,
            fetched=self.fetched,
            policy=self.state.policy_json,
            timings_ms={k: round(v, 3) for k, v in self.timings.items()},
        )


def _rule_codes(cards: list[dict[str, Any]], fallback: list[str]) -> list[str | None]:
    """Each card's rule code: ``source.topic.code``, else the engine's list by position."""
    out: list[str | None] = []
    for n, card in enumerate(cards):
        topic = (card.get("source") or {}).get("topic") or {}
        code = topic.get("code") if isinstance(topic, dict) else None
        out.append(code or (fallback[n] if n < len(fallback) else None))
    return out


def _prune(value: Any) -> Any:
    """Drop ``null`` members: CDS Hooks 2.0 §use-of-json forbids them in responses."""
    if isinstance(value, dict):
        return {k: _prune(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_prune(v) for v in value if v is not None]
    return value
