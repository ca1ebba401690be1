"""Test doubles for the service tests: a fake engine with the contract's interface
(architecture.md §5), a JWT signer, settings and request builders.

The fake engine lets the HTTP layer be tested while the real engine is written; it
keeps every record it was given (``engine.calls``) so tests can check what reached it.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from cds_service.api import create_app
from cds_service.features import SitePolicy
from cds_service.record import PatientRecord
from cds_service.settings import Issuer, Settings
from cds_service.store import AuditStore

RULE_SYSTEM = "https://sact-cds.org/fhir/CodeSystem/sact-cds-rule"
PREFETCH = {
    "patient": "Patient/{{context.patientId}}",
    "medications": "MedicationRequest?subject={{context.patientId}}&status=active",
    "observations": "Observation?subject={{context.patientId}}&category=laboratory",
}


@dataclass(frozen=True)
class ServiceDefinition:
    id: str
    hook: str
    title: str
    description: str
    prefetch: Mapping[str, str] = field(default_factory=dict)
    usage_requirements: str | None = None


@dataclass
class Evaluation:
    cards: list[dict[str, Any]]
    rule_codes: list[str]
    notes: list[str] = field(default_factory=list)
    timings_ms: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class FakeKnowledge:
    version: str = "0.1.0"


class FakeEngine:
    """Engine stand-in: one card per selected order, one data-unavailable card if the
    record carries notes. ``fail=True`` makes evaluate raise (a genuine server fault)."""

    def __init__(self, prefetch: Mapping[str, str] | None = None, *, fail: bool = False) -> None:
        prefetch = dict(PREFETCH if prefetch is None else prefetch)
        self.kb = FakeKnowledge()
        self.policy = SitePolicy()
        self.fail = fail
        self.fault_text = "patient Jane Doe"  # must never reach a log
        self.calls: list[tuple[str, PatientRecord, datetime]] = []
        self.services = [
            ServiceDefinition(
                "SactOrderSelect",
                "order-select",
                "SACT order select",
                "Checks a selected SACT order.",
                prefetch,
                "Requires the patient's labs.",
            ),
            ServiceDefinition(
                "SactOrderSign", "order-sign", "SACT order sign", "Checks SACT orders at signing.", prefetch
            ),
        ]

    def service(self, service_id: str) -> ServiceDefinition:
        for s in self.services:
            if s.id == service_id:
                return s
        raise KeyError(service_id)

    def evaluate(self, service_id: str, record: PatientRecord, now: datetime) -> Evaluation:
        self.service(service_id)
        self.calls.append((service_id, record, now))
        if self.fail:
            raise RuntimeError(f"engine exploded on {self.fault_text}")
        cards = [_card("monotherapy", f"Order {ref} checked", "info") for ref in record.selections]
        if record.notes:
            cards.append(
                _card(
                    "data-unavailable",
                    "Some data could not be read",
                    "warning",
                    "\n".join(f"- {n.key}: {n.message}" for n in record.notes),
                )
            )
        return Evaluation(cards, [c["source"]["topic"]["code"] for c in cards], [], {"rules": 0.1})


def _card(code: str, summary: str, indicator: str, detail: str | None = None) -> dict[str, Any]:
    card = {
        "uuid": str(uuid.uuid4()),
        "summary": summary,
        "indicator": indicator,
        "source": {"label": "sact-cds", "topic": {"system": RULE_SYSTEM, "code": code}},
        "detail": detail,  # None on purpose: the service must drop nulls
    }
    return card


def settings(**changes: Any) -> Settings:
    """Settings for tests: in-memory audit store, no knowledge dirs, loopback."""
    base: dict[str, Any] = {"database_url": "sqlite://", "knowledge_dirs": (), "public_base_url": "http://testserver"}
    base.update(changes)
    return Settings(**base)


def app_with(
    engine: FakeEngine | None = None, store: AuditStore | None = None, transport: Any = None, **changes: Any
):
    engine = engine or FakeEngine()
    store = store or AuditStore("sqlite://")
    return create_app(settings(**changes), engine=engine, store=store, transport=transport), engine, store


def draft(
    order_id: str = "draft-1", *, resource_type: str = "MedicationRequest", intent: bool = True
) -> dict[str, Any]:
    res: dict[str, Any] = {
        "resourceType": resource_type,
        "id": order_id,
        "status": "draft",
        "medicationCodeableConcept": {"text": "inotuzumab ozogamicin"},
    }
    if resource_type == "MedicationRequest":
        res["subject"] = {"reference": "Patient/p1"}
        if intent:
            res["intent"] = "order"
    else:
        res["patient"] = {"reference": "Patient/p1"}
    return res


def hook_request(
    hook: str = "order-select",
    *,
    prefetch: Any = "full",
    orders: Sequence[dict[str, Any]] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    orders = list(orders) if orders is not None else [draft()]
    context: dict[str, Any] = {
        "userId": "Practitioner/u1",
        "patientId": "p1",
        "draftOrders": {
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [{"resource": o} for o in orders],
        },
    }
    if hook == "order-select":
        context["selections"] = [f"{orders[0]['resourceType']}/{orders[0]['id']}"] if orders else []
    body: dict[str, Any] = {"hook": hook, "hookInstance": str(uuid.uuid4()), "context": context}
    if prefetch == "full":
        body["prefetch"] = full_prefetch()
    elif prefetch is not None:
        body["prefetch"] = prefetch
    body.update(extra)
    return body


def full_prefetch() -> dict[str, Any]:
    return {
        "patient": {"resourceType": "Patient", "id": "p1", "birthDate": "2015-01-01"},
        "medications": {"resourceType": "Bundle", "type": "searchset", "entry": []},
        "observations": None,
    }


class Signer:
    """A CDS client's key pair; signs JWTs the way CDS clients do (CDS Hooks 2.0 §trusting-cds-clients)."""

    def __init__(
        self, alg: str = "ES384", iss: str = "https://ehr.example.org", kid: str | None = None
    ) -> None:
        self.alg, self.iss, self.kid = alg, iss, kid or str(uuid.uuid4())
        if alg.startswith("ES"):
            curve = {"ES256": ec.SECP256R1(), "ES384": ec.SECP384R1(), "ES512": ec.SECP521R1()}[alg]
            self.private = ec.generate_private_key(curve)
            algo = jwt.algorithms.ECAlgorithm
        else:
            self.private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            algo = jwt.algorithms.RSAAlgorithm
        public = algo.to_jwk(self.private.public_key(), as_dict=True)
        self.jwks = {"keys": [{**public, "kid": self.kid, "use": "sig", "alg": alg}]}

    def token(
        self,
        aud: str | list[str],
        *,
        iss: str | None = None,
        exp: float | None = None,
        iat: float | None = None,
        jti: str | None = None,
        alg: str | None = None,
        headers: Mapping[str, Any] | None = None,
        drop: Sequence[str] = (),
    ) -> str:
        now = time.time()
        claims = {
            "iss": iss or self.iss,
            "aud": aud,
            "iat": int(iat or now),
            "exp": int(exp or now + 300),
            "jti": jti or str(uuid.uuid4()),
        }
        for name in drop:
            claims.pop(name)
        header = {"kid": self.kid, "typ": "JWT", **(headers or {})}
        return jwt.encode(claims, self.private, algorithm=alg or self.alg, headers=header)

    def issuer(self, **changes: Any) -> Issuer:
        fields = {
            "iss": self.iss,
            "jwks_url": f"{self.iss}/.well-known/jwks.json",
            "algorithms": (self.alg,),
            "jku": (f"{self.iss}/.well-known/jwks.json",),
        }
        fields.update(changes)
        return Issuer(**fields)

    def transport(self, fallback: httpx.MockTransport | None = None) -> httpx.MockTransport:
        """A transport that serves this signer's JWK Set at its issuer's well-known URL."""

        def handler(request: httpx.Request) -> httpx.Response:
            if str(request.url) == f"{self.iss}/.well-known/jwks.json":
                return httpx.Response(200, json=self.jwks)
            return httpx.Response(404)

        return httpx.MockTransport(handler)


async def _calls(app: Any, requests: Sequence[tuple[str, str, dict[str, Any]]]) -> list[httpx.Response]:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver"
    ) as client:
        return [await client.request(method, url, **kw) for method, url, kw in requests]


def call(app: Any, method: str, url: str, **kw: Any) -> httpx.Response:
    """One in-process request through ASGITransport (runs the app's background tasks too)."""
    return asyncio.run(_calls(app, [(method, url, kw)]))[0]


def calls(app: Any, *requests: tuple[str, str, dict[str, Any]]) -> list[httpx.Response]:
    return asyncio.run(_calls(app, requests))


class LoopbackFhir:
    """A tiny FHIR server on 127.0.0.1 in a thread (http.server), for the fallback fetch.

    ``resources`` maps a path+query (``Patient/p1``, ``Observation?...``) to the JSON it
    returns (a callable gets the query string); anything else is 404. Requests without
    ``Authorization: Bearer <token>`` get 401. ``delay`` seconds are slept per request;
    ``max_in_flight`` records the most requests handled at once (overlap, not time).
    """

    def __init__(
        self, resources: Mapping[str, Any], *, token: str | None = "secret-token", delay: float = 0.0
    ) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.resources, self.token, self.delay = dict(resources), token, delay
        self.seen: list[tuple[str, str | None]] = []
        self.in_flight = self.max_in_flight = 0
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server API
                with outer._lock:
                    outer.in_flight += 1
                    outer.max_in_flight = max(outer.max_in_flight, outer.in_flight)
                    outer.seen.append((self.path, self.headers.get("Authorization")))
                try:
                    if outer.delay:
                        time.sleep(outer.delay)
                    self._answer()
                finally:
                    with outer._lock:
                        outer.in_flight -= 1

            def _answer(self) -> None:

                if outer.token is not None and self.headers.get("Authorization") != f"Bearer {outer.token}":
                    return self._send(
                        401,
                        {
                            "resourceType": "OperationOutcome",
                            "issue": [{"severity": "error", "code": "login"}],
                        },
                    )
                path = self.path.removeprefix("/fhir/")
                body = outer.resources.get(path)
                if body is None and "?" in path:
                    body = outer.resources.get(path.split("?", 1)[0])
                if callable(body):
                    body = body(path, outer.base)
                if body is None:
                    return self._send(
                        404,
                        {
                            "resourceType": "OperationOutcome",
                            "issue": [{"severity": "error", "code": "not-found"}],
                        },
                    )
                self._send(200, body)

            def _send(self, status: int, body: Any) -> None:
                import json as _json

                data = _json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/fhir+json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}/fhir"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> LoopbackFhir:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def searchset(*resources: Mapping[str, Any], next_url: str | None = None) -> dict[str, Any]:
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [{"resource": dict(r)} for r in resources],
    }
    if next_url:
        bundle["link"] = [{"relation": "next", "url": next_url}]
    return bundle
