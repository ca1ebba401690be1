"""The fallback fetch of one hook call is bounded as a whole (issue 12 point 6): one
deadline, one byte budget over all keys and pages, a fhirServer policy (loopback and
private addresses only when listed), and one 412 text that tells nothing about the network."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest
from _fakes import LoopbackFhir, app_with, call, full_prefetch, hook_request, searchset
from _replay_support import free_port

from cds_service.record import FhirServerPolicy, complete_prefetch
from cds_service.record._fetch import NOT_OBTAINABLE

SELECT = "/cds-services/SactOrderSelect"
TOKEN = "secret-token"
LOOPBACK = ("http://127.0.0.1",)
PATIENT = {"resourceType": "Patient", "id": "p1", "birthDate": "2015-01-01"}
OUTCOME = {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "timeout"}]}


def loopback_resources() -> dict[str, Any]:
    return {"Patient/p1": PATIENT, "MedicationRequest": searchset(), "Observation": searchset()}


def fallback_request(server: str, prefetch: Any = None) -> dict[str, Any]:
    return hook_request(
        prefetch=prefetch,
        fhirServer=server,
        fhirAuthorization={"access_token": TOKEN, "token_type": "Bearer", "expires_in": 300},
    )


def diagnostics(response: httpx.Response) -> list[str]:
    return sorted(i["diagnostics"] for i in response.json()["issue"])


def test_one_deadline_bounds_the_whole_fetch_phase() -> None:
    """Three keys, fetched one at a time, 0.4 s each: each call is within its own 5 s
    timeout, but the phase has 0.6 s, so the hook answers 412 in about that time."""
    with LoopbackFhir(loopback_resources(), delay=0.4) as server:
        app, engine, store = app_with(
            fhir_server_allowlist=LOOPBACK, fetch_concurrency=1, fetch_timeout_seconds=5, fetch_deadline_seconds=0.6
        )
        started = time.perf_counter()
        r = call(app, "POST", SELECT, json=fallback_request(server.base))
        elapsed = time.perf_counter() - started
    assert r.status_code == 412 and elapsed < 1.1
    assert engine.calls == []
    (row,), _ = store.recent()
    assert any("deadline" in n for n in row["notes"])  # the audit keeps the real reason


def _endless_pages(page_bytes: int, seen: list[str]) -> httpx.MockTransport:
    """A FHIR server whose searchsets never end: every page ~``page_bytes`` and a next link."""
    pad = "x" * page_bytes

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        if request.url.path.endswith("/Patient/p1"):
            return httpx.Response(200, json=PATIENT)
        n = int(request.url.params.get("page", "1"))
        obs = {"resourceType": "Observation", "id": f"o{n}", "status": "final", "note": [{"text": pad}]}
        nxt = str(request.url.copy_set_param("page", str(n + 1)))
        return httpx.Response(200, json=searchset(obs, next_url=nxt))

    return httpx.MockTransport(handler)


def test_one_byte_budget_spans_every_key_and_page() -> None:
    seen: list[str] = []
    app, engine, _ = app_with(
        transport=_endless_pages(100_000, seen), fetch_max_bytes=450_000, fetch_max_pages=50
    )
    r = call(app, "POST", SELECT, json=fallback_request("https://fhir.example.org/r4"))
    assert r.status_code == 412  # the endless searches ran out of budget: no partial record
    assert engine.calls == []
    assert len(seen) <= 7  # ~4.5 pages of 100 kB in all, not 50 pages per key
    assert all(d.endswith(NOT_OBTAINABLE) for d in diagnostics(r))


def test_a_key_that_held_an_error_and_ran_out_of_budget_becomes_a_visible_card() -> None:
    seen: list[str] = []
    app, engine, _ = app_with(transport=_endless_pages(100_000, seen), fetch_max_bytes=250_000)
    prefetch = full_prefetch() | {"observations": OUTCOME}
    r = call(app, "POST", SELECT, json=fallback_request("https://fhir.example.org/r4", prefetch))
    assert r.status_code == 200
    (card,) = [c for c in r.json()["cards"] if c["source"]["topic"]["code"] == "data-unavailable"]
    assert "observations" in card["detail"] and "could not be re-queried" in card["detail"]
    assert "byte" not in card["detail"]  # the client is not told why


@pytest.mark.parametrize(
    "server",
    ["http://127.0.0.1:{port}/fhir", "https://localhost/fhir", "https://10.0.0.5/fhir", "https://169.254.169.254/x"],
)
def test_loopback_and_private_fhir_servers_are_refused_unless_listed(server: str) -> None:
    seen: list[str] = []
    transport = httpx.MockTransport(lambda request: seen.append(str(request.url)) or httpx.Response(200, json=PATIENT))
    app, engine, _ = app_with(transport=transport, allow_http_fhir_server=True)
    r = call(app, "POST", SELECT, json=fallback_request(server.format(port=free_port())))
    assert r.status_code == 412 and seen == [] and engine.calls == []


def test_a_listed_loopback_server_is_used() -> None:
    with LoopbackFhir(loopback_resources()) as server:
        app, _, _ = app_with(fhir_server_allowlist=(server.base,))
        assert call(app, "POST", SELECT, json=fallback_request(server.base)).status_code == 200
        app, _, _ = app_with()  # the default: not listed, not used
        assert call(app, "POST", SELECT, json=fallback_request(server.base)).status_code == 412
    assert len(server.seen) == 3


def test_a_host_name_that_resolves_to_a_private_address_is_refused() -> None:
    seen: list[str] = []
    transport = httpx.MockTransport(lambda request: seen.append(str(request.url)) or httpx.Response(200, json=PATIENT))

    async def fetch(addresses: list[str], allowlist: tuple[str, ...] = ()) -> Any:
        async def resolve(host: str) -> list[str]:
            return addresses

        async with httpx.AsyncClient(transport=transport) as client:
            return await complete_prefetch(
                {"patient": "Patient/{{context.patientId}}"},
                {"context": {"patientId": "p1"}, "fhirServer": "https://fhir.internal.example/r4"},
                client,
                policy=FhirServerPolicy(allowlist),
                resolve=resolve,
            )

    refused = asyncio.run(fetch(["10.20.30.40"]))
    assert refused.missing == {"patient": NOT_OBTAINABLE} and seen == []
    assert "private" in refused.reasons["patient"]
    assert asyncio.run(fetch(["93.184.216.34"])).prefetch["patient"] == PATIENT
    listed = asyncio.run(fetch(["10.20.30.40"], ("https://fhir.internal.example/r4",)))
    assert listed.prefetch["patient"] == PATIENT


def test_the_412_text_is_the_same_for_a_closed_port_a_slow_server_an_error_and_a_refusal() -> None:
    """An attacker must not tell an open port from a closed one by the answer."""
    texts = []
    closed = f"http://127.0.0.1:{free_port()}/fhir"
    with LoopbackFhir(loopback_resources(), delay=1.0) as slow, LoopbackFhir({}) as empty:
        for server, changes in [
            (closed, {"fhir_server_allowlist": LOOPBACK}),
            (slow.base, {"fhir_server_allowlist": LOOPBACK, "fetch_timeout_seconds": 0.2}),
            (empty.base, {"fhir_server_allowlist": LOOPBACK}),  # 404 on every search
            (closed, {}),  # refused by policy
        ]:
            app, _, _ = app_with(**changes)
            body = fallback_request(server, {"patient": PATIENT})  # only the searches are missing
            r = call(app, "POST", SELECT, json=body)
            assert r.status_code == 412
            texts.append(diagnostics(r))
    assert all(t == texts[0] for t in texts), texts
    assert not any(word in " ".join(texts[0]) for word in ("HTTP", "connect", "timeout", "within", "refused"))
