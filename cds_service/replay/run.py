"""Send scenarios to the service and judge the cards: in-process or to a running server.

In-process (the default) drives the real app through ``httpx.ASGITransport`` (STYLE.md
§12), with the evaluation time handed to the engine, so a scenario is judged exactly at its
``now``. Against ``--url`` the service reads its own clock, so the scenario's dates are
moved to it first (:func:`dates.shift_dates`). Either way the request is what an EHR
sends: discovery first, then each service of the scenario's hook with its prefetch filled
from the bundle by the service's own templates.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import httpx
import jwt

from cds_service.replay import dates
from cds_service.replay._compare import Diff, compare
from cds_service.replay.request import build_request
from cds_service.replay.scenario import Scenario, ScenarioError, load_scenario

Clock = Callable[[], datetime]


def wall_clock() -> datetime:
    return datetime.now(UTC)


@dataclass
class ScenarioResult:
    """The outcome of replaying one scenario.

    ``status``: ``passed`` / ``failed`` (expectations not met) / ``error`` (could not be
    replayed: invalid file, HTTP error) / ``shown`` (no expectations: cards printed only).
    """

    path: Path
    title: str
    status: str
    now: datetime | None = None
    cards: list[dict[str, Any]] = field(default_factory=list)
    diffs: list[Diff] = field(default_factory=list)
    error: str | None = None
    notes: list[str] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    expected: Any = None
    hook: str | None = None

    @property
    def ok(self) -> bool:
        return self.status in ("passed", "shown")

    def as_json(self) -> dict[str, Any]:
        return {
            "file": str(self.path),
            "title": self.title,
            "status": self.status,
            "now": dates.format_datetime(self.now) if self.now else None,
            "cards": self.cards,
            "diffs": [d.as_json() for d in self.diffs],
            "error": self.error,
            "notes": self.notes,
        }


class JwtSigner:
    """Signs the bearer JWT a CDS client sends (CDS Hooks 2.0 §trusting-cds-clients):
    header ``alg`` (ES384 for an EC key, RS384 for RSA), ``kid``, ``typ``; claims ``iss``,
    ``aud`` (the URL called), ``iat``, ``exp`` (+5 min), ``jti``."""

    def __init__(self, private_key_pem: bytes, *, iss: str, kid: str, clock: Clock = wall_clock) -> None:
        from cryptography.hazmat.primitives.asymmetric import ec, rsa
        from cryptography.hazmat.primitives.serialization import load_pem_private_key

        key = load_pem_private_key(private_key_pem, password=None)
        if isinstance(key, ec.EllipticCurvePrivateKey):
            self.algorithm = "ES384"
        elif isinstance(key, rsa.RSAPrivateKey):
            self.algorithm = "RS384"
        else:
            raise ValueError("the JWT signing key must be an EC (ES384) or RSA (RS384) private key")
        self._key = key
        self.iss, self.kid, self._clock = iss, kid, clock

    def token(self, audience: str) -> str:
        issued = int(self._clock().timestamp())
        claims = {"iss": self.iss, "aud": audience, "iat": issued, "exp": issued + 300, "jti": str(uuid.uuid4())}
        return jwt.encode(claims, self._key, algorithm=self.algorithm, headers={"kid": self.kid, "typ": "JWT"})


class Replayer:
    """Replays scenarios against one service endpoint through an httpx client."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        base_url: str,
        *,
        signer: JwtSigner | None = None,
        set_evaluation_time: Callable[[datetime | None], None] | None = None,
        clock: Clock = wall_clock,
    ) -> None:
        self.client = client
        self.base_url = base_url.rstrip("/")
        self.signer = signer
        self._set_time = set_evaluation_time
        self._clock = clock
        self._services: list[dict[str, Any]] | None = None

    @property
    def in_process(self) -> bool:
        return self._set_time is not None

    def _headers(self, url: str) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if self.signer is not None:
            headers["Authorization"] = f"Bearer {self.signer.token(url)}"
        return headers

    async def services(self) -> list[dict[str, Any]]:
        """The service's discovery document (``GET {base}/cds-services``), fetched once."""
        if self._services is None:
            url = f"{self.base_url}/cds-services"
            response = await self.client.get(url, headers=self._headers(url))
            if response.status_code != 200:
                raise ReplayError(f"discovery {url} answered HTTP {response.status_code}: {_excerpt(response)}")
            self._services = list(response.json().get("services") or [])
        return self._services

    async def call(self, service_id: str, body: Mapping[str, Any]) -> list[dict[str, Any]]:
        url = f"{self.base_url}/cds-services/{service_id}"
        response = await self.client.post(url, json=body, headers=self._headers(url))
        if response.status_code != 200:
            raise ReplayError(f"{url} answered HTTP {response.status_code}: {_excerpt(response)}")
        return list(response.json().get("cards") or [])

    async def replay(
        self,
        scenario: Scenario,
        replay_now: datetime,
        *,
        fhir_server: str | None = None,
        send_prefetch: bool = True,
    ) -> ScenarioResult:
        """Replay one scenario: every service of its hook, cards merged in service order."""
        started = time.perf_counter()
        result = ScenarioResult(scenario.path, scenario.title, "error", expected=scenario.expect, hook=scenario.hook)
        try:
            resolved = scenario.resolved(replay_now)
            result.now = resolved.now
            if not self.in_process:
                resolved = _moved_to_clock(resolved, self._clock(), result.notes)
            services = [s for s in await self.services() if s.get("hook") == scenario.hook]
            if not services:
                raise ReplayError(f"the service offers no {scenario.hook} service")
            for service in services:
                built = build_request(
                    resolved,
                    (service.get("prefetch") or {}) if send_prefetch else None,
                    fhir_server=fhir_server,
                )
                result.notes.extend(built.notes)
                result.requests.append({"service": service.get("id"), "request": built.body})
                if self._set_time is not None:
                    self._set_time(resolved.now)
                try:
                    result.cards.extend(await self.call(str(service["id"]), built.body))
                finally:
                    if self._set_time is not None:
                        self._set_time(None)
        except (ReplayError, httpx.HTTPError, ValueError) as exc:
            result.error = str(exc) or type(exc).__name__
            result.seconds = time.perf_counter() - started
            return result
        if scenario.expect is None:
            result.status = "shown"
        else:
            result.diffs = compare(scenario.expect, result.cards)
            result.status = "failed" if result.diffs else "passed"
        result.seconds = time.perf_counter() - started
        return result


class ReplayError(Exception):
    """A scenario could not be replayed (HTTP error, no service for its hook)."""


def _excerpt(response: httpx.Response) -> str:
    text = response.text.strip().replace("\n", " ")
    return text[:300] + ("…" if len(text) > 300 else "")


def _moved_to_clock(resolved: Any, server_now: datetime, notes: list[str]) -> Any:
    """The resolved scenario with its data moved to the server's clock (remote mode)."""
    from dataclasses import replace

    if abs(server_now - resolved.now) < timedelta(seconds=1):
        return resolved
    shift = lambda v: dates.shift_dates(v, resolved.now, server_now)  # noqa: E731
    notes.append(
        f"dates moved by {(server_now.date() - resolved.now.date()).days} days so the "
        f"scenario's now ({dates.format_datetime(resolved.now)}) is the server's clock"
    )
    return replace(
        resolved,
        now=server_now,
        patient=shift(resolved.patient),
        record=shift(resolved.record),
        draft_orders=shift(resolved.draft_orders),
    )


def error_result(path: Path, error: ScenarioError | str) -> ScenarioResult:
    return ScenarioResult(path, path.stem, "error", error=str(error))


def load_all(paths: Iterable[Path]) -> list[Scenario | ScenarioResult]:
    """Load each file; an invalid one becomes an ``error`` result instead of stopping."""
    out: list[Scenario | ScenarioResult] = []
    for path in paths:
        try:
            out.append(load_scenario(path))
        except ScenarioError as exc:
            out.append(error_result(path, exc))
    return out


async def replay_all(
    replayer: Replayer,
    items: Sequence[Scenario | ScenarioResult],
    replay_now: datetime,
    *,
    advance: Callable[[ScenarioResult], None] | None = None,
    **kw: Any,
) -> list[ScenarioResult]:
    results = []
    for item in items:
        result = item if isinstance(item, ScenarioResult) else await replayer.replay(item, replay_now, **kw)
        results.append(result)
        if advance is not None:
            advance(result)
    return results


# ---------------------------------------------------------------- targets


@asynccontextmanager
async def remote(url: str, *, signer: JwtSigner | None = None, timeout: float = 30.0,
                 clock: Clock = wall_clock) -> AsyncIterator[Replayer]:
    """A replayer for a running service at ``url`` (its base URL, before ``/cds-services``)."""
    base = url.rstrip("/").removesuffix("/cds-services")
    async with httpx.AsyncClient(timeout=timeout) as client:
        yield Replayer(client, base, signer=signer, clock=clock)


#: The evaluation time of the scenario being replayed in-process (None: the engine's own).
_EVALUATION_TIME: ContextVar[datetime | None] = ContextVar("replay_evaluation_time", default=None)


class ClockedEngine:
    """The real engine, evaluating at the replayed scenario's time instead of the clock.

    Everything else (discovery, services, knowledge) is the wrapped engine's, so the app
    under test is the real one; only ``now`` comes from the scenario (architecture.md §5:
    time is an input of ``Engine.evaluate``).
    """

    def __init__(self, engine: Any) -> None:
        self._engine = engine

    def __getattr__(self, name: str) -> Any:
        return getattr(self._engine, name)

    def evaluate(self, service_id: str, record: Any, now: datetime, *args: Any, **kw: Any) -> Any:
        return self._engine.evaluate(service_id, record, _EVALUATION_TIME.get() or now, *args, **kw)


def replay_settings(**changes: Any) -> Any:
    """Settings for an in-process service: the deployment's settings (``CDS_*``
    environment, ``CDS_CONFIG`` file: knowledge directories, site policy) with an
    in-memory SQLite audit store, so a replay leaves no audit trail behind, and the
    loopback ``replay --serve-fhir`` endpoints added to the fhirServer allow-list (the
    in-process service may fetch from them; a deployed one only if its site lists them)."""
    from cds_service.settings import load_settings

    settings = load_settings()
    changes.setdefault("fhir_server_allowlist", (*settings.fhir_server_allowlist, LOOPBACK_FHIR))
    return settings.replace(database_url="sqlite:///:memory:", **changes)


#: Where ``replay --serve-fhir`` listens (any port): allowed for the in-process service.
LOOPBACK_FHIR = "http://127.0.0.1"


def make_engine(settings: Any) -> Any:
    """The real engine for ``settings`` (its knowledge directories and site policy), as
    ``create_app`` builds it; cached per knowledge and policy, since loading is the slow part."""
    return _engine(tuple(settings.knowledge_dirs), settings.policy)


@cache
def _engine(knowledge_dirs: tuple[Any, ...], policy: Any) -> Any:
    from cds_service.engine import Engine
    from cds_service.knowledge import load_knowledge

    return Engine(load_knowledge(knowledge_dirs), policy=policy)


@asynccontextmanager
async def in_process(
    settings: Any = None,
    *,
    engine: Any = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> AsyncIterator[Replayer]:
    """A replayer driving the real app in-process through ``httpx.ASGITransport``.

    ``settings`` default to :func:`replay_settings`; ``engine`` to the real engine of those
    settings; ``transport`` is what the app uses to reach a ``fhirServer`` (default: the
    network, i.e. a loopback ``--serve-fhir`` endpoint). The app's lifespan runs around
    the replay, as under uvicorn.
    """
    from cds_service.api import create_app

    settings = settings or replay_settings()
    clocked = ClockedEngine(engine or make_engine(settings))
    app = create_app(settings, engine=clocked, transport=transport)
    base = "http://sact-cds.replay"
    async with app.router.lifespan_context(app):
        asgi = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=asgi, base_url=base, timeout=60.0) as client:
            yield Replayer(client, base, set_evaluation_time=_EVALUATION_TIME.set)
