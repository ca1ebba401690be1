"""Prefetch: absent / null / resource / Bundle / OperationOutcome keys, the fallback fetch
from fhirServer against a real loopback FHIR server, and 412 (cds-hooks.md §1.3.2 P1-P7)."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest
from _fakes import PREFETCH, FakeEngine, LoopbackFhir, app_with, call, full_prefetch, hook_request, searchset

from cds_service.record._fetch import fhir_server_allowed, render_template

SELECT = "/cds-services/SactOrderSelect"
TOKEN = "secret-token"
PATIENT = {"resourceType": "Patient", "id": "p1", "birthDate": "2015-01-01"}
OUTCOME = {
    "resourceType": "OperationOutcome",
    "issue": [{"severity": "error", "code": "timeout", "diagnostics": "EHR timed out"}],
}


def obs(n: int) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": f"o{n}", "status": "final", "code": {"text": "platelets"}}


def fhir_resources() -> dict[str, Any]:
    def observations(path: str, base: str) -> dict[str, Any]:
        if "page=2" in path:
            return searchset(obs(2))
        return searchset(obs(1), next_url=f"{base}/Observation?subject=p1&category=laboratory&page=2")

    return {
        "Patient/p1": PATIENT,
        "MedicationRequest": searchset(),
        "Observation": observations,
    }


LOOPBACK = ("http://127.0.0.1",)  # the test FHIR servers: loopback, any port, listed on purpose


def with_server(server: LoopbackFhir, body: dict[str, Any], token: str | None = TOKEN) -> dict[str, Any]:
    body["fhirServer"] = server.base
    if token:
        body["fhirAuthorization"] = {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": 300,
            "scope": "patient/*.read",
            "subject": "cds-service",
        }
    return body


def record_of(engine: FakeEngine) -> Any:
    return engine.calls[-1][1]


# -- prefetch as sent --------------------------------------------------------------------


def test_missing_keys_without_fhir_server_are_a_412_naming_each_key() -> None:
    app, engine, store = app_with()
    prefetch = full_prefetch()
    del prefetch["observations"], prefetch["patient"]
    r = call(app, "POST", SELECT, json=hook_request(prefetch=prefetch))
    assert r.status_code == 412
    body = r.json()
    assert body["resourceType"] == "OperationOutcome"
    assert sorted(e for i in body["issue"] for e in i["expression"]) == [
        "prefetch.observations",
        "prefetch.patient",
    ]
    assert all("no fhirServer" in i["diagnostics"] for i in body["issue"])
    assert engine.calls == []
    rows, _ = store.recent()
    assert rows[0]["status"] == 412 and "observations" in " ".join(rows[0]["notes"])


def test_no_prefetch_at_all_and_no_fhir_server_is_a_412() -> None:
    app, _, _ = app_with()
    assert call(app, "POST", SELECT, json=hook_request(prefetch=None)).status_code == 412


def test_a_null_key_means_no_data_and_is_not_fetched() -> None:
    app, engine, _ = app_with()
    r = call(
        app,
        "POST",
        SELECT,
        json=hook_request(prefetch={"patient": PATIENT, "medications": None, "observations": None}),
    )
    assert r.status_code == 200
    assert record_of(engine).notes == ()


def test_resources_and_bundles_reach_the_record() -> None:
    app, engine, _ = app_with()
    prefetch = {
        "patient": PATIENT,
        "medications": searchset({"resourceType": "MedicationRequest", "id": "m1", "status": "active"}),
        "observations": searchset(obs(1), obs(2)),
    }
    assert call(app, "POST", SELECT, json=hook_request(prefetch=prefetch)).status_code == 200
    record = record_of(engine)
    assert record.patient["id"] == "p1"
    assert [o["id"] for o in record.of_type("Observation")] == ["o1", "o2"]
    assert [m["id"] for m in record.of_type("MedicationRequest")] == ["m1"]


def test_an_operation_outcome_without_fhir_server_becomes_a_visible_note() -> None:
    app, engine, _ = app_with()
    prefetch = full_prefetch() | {"observations": OUTCOME}
    r = call(app, "POST", SELECT, json=hook_request(prefetch=prefetch))
    assert r.status_code == 200
    assert [n.kind for n in record_of(engine).notes] == ["error", "error"]
    assert "data-unavailable" in r.text and "EHR timed out" in r.text


# -- fallback fetch against a real loopback FHIR server ---------------------------------


def test_missing_keys_are_fetched_from_fhir_server_with_the_bearer_token() -> None:
    with LoopbackFhir(fhir_resources()) as server:
        app, engine, store = app_with(fhir_server_allowlist=LOOPBACK)
        r = call(app, "POST", SELECT, json=with_server(server, hook_request(prefetch=None)))
    assert r.status_code == 200, r.text
    record = record_of(engine)
    assert record.patient == PATIENT
    assert [o["id"] for o in record.of_type("Observation")] == ["o1", "o2"]  # both pages
    assert {auth for _, auth in server.seen} == {f"Bearer {TOKEN}"}
    assert sorted(p.split("?")[0] for p, _ in server.seen) == [
        "/fhir/MedicationRequest",
        "/fhir/Observation",
        "/fhir/Observation",
        "/fhir/Patient/p1",
    ]
    assert sorted(store.recent()[0][0]["fetched"]) == ["medications", "observations", "patient"]
    metrics = call(app, "GET", "/metrics").text
    assert 'cds_fallback_fetches_total{outcome="ok"} 3.0' in metrics


def test_only_the_missing_keys_are_fetched() -> None:
    with LoopbackFhir(fhir_resources()) as server:
        app, engine, _ = app_with(fhir_server_allowlist=LOOPBACK)
        prefetch = full_prefetch()
        del prefetch["patient"]
        assert (
            call(app, "POST", SELECT, json=with_server(server, hook_request(prefetch=prefetch))).status_code
            == 200
        )
    assert [p for p, _ in server.seen] == ["/fhir/Patient/p1"]


def test_an_operation_outcome_is_re_queried_from_fhir_server() -> None:
    with LoopbackFhir(fhir_resources()) as server:
        app, engine, _ = app_with(fhir_server_allowlist=LOOPBACK)
        prefetch = full_prefetch() | {"observations": OUTCOME}
        assert (
            call(app, "POST", SELECT, json=with_server(server, hook_request(prefetch=prefetch))).status_code
            == 200
        )
    assert [o["id"] for o in record_of(engine).of_type("Observation")] == ["o1", "o2"]
    assert record_of(engine).notes == ()


def test_a_failed_re_query_keeps_the_outcome_as_a_note_not_a_412() -> None:
    with LoopbackFhir({}) as server:
        app, engine, _ = app_with(fhir_server_allowlist=LOOPBACK)
        prefetch = full_prefetch() | {"observations": OUTCOME}
        assert (
            call(app, "POST", SELECT, json=with_server(server, hook_request(prefetch=prefetch))).status_code
            == 200
        )
    assert any(n.kind == "error" and n.key == "observations" for n in record_of(engine).notes)


def test_a_wrong_token_rejected_by_the_fhir_server_is_a_412() -> None:
    with LoopbackFhir(fhir_resources()) as server:
        app, _, _ = app_with(fhir_server_allowlist=LOOPBACK)
        r = call(app, "POST", SELECT, json=with_server(server, hook_request(prefetch=None), token="stale"))
    assert r.status_code == 412 and "could not be obtained from fhirServer" in r.text
    assert "401" not in r.text  # the client is not told what the server answered


def test_a_slow_fhir_server_hits_the_hard_timeout_and_is_a_412() -> None:
    with LoopbackFhir(fhir_resources(), delay=2.0) as server:
        app, _, _ = app_with(fhir_server_allowlist=LOOPBACK, fetch_timeout_seconds=0.2)
        r = call(app, "POST", SELECT, json=with_server(server, hook_request(prefetch=None)))
    assert r.status_code == 412 and "could not be obtained from fhirServer" in r.text
    assert "0.2" not in r.text


def test_a_patient_not_found_on_read_is_no_data_not_a_412() -> None:
    with LoopbackFhir({"MedicationRequest": searchset(), "Observation": searchset()}) as server:
        app, engine, _ = app_with(fhir_server_allowlist=LOOPBACK)
        assert (
            call(app, "POST", SELECT, json=with_server(server, hook_request(prefetch=None))).status_code
            == 200
        )
    assert record_of(engine).patient is None
    assert any(n.key == "patient" and "not found" in n.message for n in record_of(engine).notes)


@pytest.mark.parametrize(("concurrency", "overlap"), [(4, True), (1, False)])
def test_fetches_overlap_up_to_the_concurrency_bound(concurrency: int, overlap: bool) -> None:
    with LoopbackFhir(fhir_resources(), delay=0.3) as server:
        app, _, _ = app_with(fhir_server_allowlist=LOOPBACK, fetch_concurrency=concurrency)
        assert (
            call(app, "POST", SELECT, json=with_server(server, hook_request(prefetch=None))).status_code
            == 200
        )
    assert (server.max_in_flight > 1) is overlap
    assert server.max_in_flight <= concurrency


def test_pagination_stops_after_the_page_limit_with_a_note() -> None:
    def endless(path: str, base: str) -> dict[str, Any]:
        n = int(path.rsplit("page=", 1)[1]) if "page=" in path else 1
        return searchset(obs(n), next_url=f"{base}/Observation?page={n + 1}")

    with LoopbackFhir(fhir_resources() | {"Observation": endless}) as server:
        app, engine, _ = app_with(fhir_server_allowlist=LOOPBACK, fetch_max_pages=3)
        assert (
            call(app, "POST", SELECT, json=with_server(server, hook_request(prefetch=None))).status_code
            == 200
        )
    assert len(record_of(engine).of_type("Observation")) == 3
    assert any("stopped after 3 pages" in n.message for n in record_of(engine).notes)


def test_a_next_link_to_another_server_is_not_followed_and_gets_no_token() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.host)
        if request.url.path.endswith("/Observation"):
            return httpx.Response(
                200, json=searchset(obs(1), next_url="https://elsewhere.example/Observation?page=2")
            )
        if request.url.path.endswith("/Patient/p1"):
            return httpx.Response(200, json=PATIENT)
        return httpx.Response(200, json=searchset())

    app, engine, _ = app_with(transport=httpx.MockTransport(handler))
    body = hook_request(
        prefetch=None,
        fhirServer="https://fhir.example.org/r4",
        fhirAuthorization={"access_token": TOKEN, "token_type": "Bearer"},
    )
    assert call(app, "POST", SELECT, json=body).status_code == 200
    assert "elsewhere.example" not in seen
    assert any("another server" in n.message for n in record_of(engine).notes)


def test_plain_http_fhir_server_is_used_only_on_loopback_or_when_allowed() -> None:
    transport = httpx.MockTransport(
        lambda request: httpx.Response(200, json=PATIENT if "Patient" in request.url.path else searchset())
    )
    body = hook_request(prefetch=None, fhirServer="http://fhir.example.org/r4")
    app, _, _ = app_with(transport=transport)
    r = call(app, "POST", SELECT, json=body)
    assert r.status_code == 412 and "could not be obtained from fhirServer" in r.text
    app, _, _ = app_with(transport=transport, allow_http_fhir_server=True)
    assert call(app, "POST", SELECT, json=body).status_code == 200


def test_a_key_whose_token_the_request_cannot_fill_is_no_data_not_a_412() -> None:
    engine = FakeEngine(PREFETCH | {"encounter": "Encounter/{{context.encounterId}}"})
    app, engine, _ = app_with(engine)
    assert call(app, "POST", SELECT, json=hook_request()).status_code == 200  # no encounterId in context
    assert any(n.key == "encounter" and "context.encounterId" in n.message for n in record_of(engine).notes)


def test_the_access_token_never_reaches_the_logs(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG), LoopbackFhir(fhir_resources()) as server:
        app, _, _ = app_with(fhir_server_allowlist=LOOPBACK)
        call(app, "POST", SELECT, json=with_server(server, hook_request(prefetch=None)))
        call(app, "POST", SELECT, json=with_server(server, hook_request(prefetch=None), token="stale"))
    assert caplog.records and TOKEN not in caplog.text and "stale" not in caplog.text
    assert "p1" not in caplog.text  # no patient id: query strings are not logged


# -- template rendering (P1, P2) ----------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "context", "expected"),
    [
        ("Patient/{{context.patientId}}", {"patientId": "p1"}, ("Patient/p1", [])),
        (
            "Observation?subject={{ context.patientId }}&x=1",
            {"patientId": "p 1&a"},
            ("Observation?subject=p%201%26a&x=1", []),
        ),
        ("Practitioner/{{userPractitionerId}}", {"userId": "Practitioner/u1"}, ("Practitioner/u1", [])),
        (
            "PractitionerRole/{{userPractitionerRoleId}}",
            {"userId": "Practitioner/u1"},
            (None, ["userPractitionerRoleId"]),
        ),
        ("Encounter/{{context.encounterId}}", {"patientId": "p1"}, (None, ["context.encounterId"])),
        (
            "MedicationRequest/{{context.draftOrders.id}}",
            {"draftOrders": {"id": "x"}},
            (None, ["context.draftOrders.id"]),
        ),
        ("Patient/{{context.selections}}", {"selections": ["a"]}, (None, ["context.selections"])),
        ("Patient/{{context.patientId}}", {"patientId": "../admin"}, ("Patient/..%2Fadmin", [])),
    ],
)
def test_only_root_level_tokens_are_substituted(
    template: str, context: dict[str, Any], expected: tuple[Any, list[str]]
) -> None:
    assert render_template(template, context) == expected


@pytest.mark.parametrize(
    ("url", "allow_http", "allowlist", "ok"),
    [
        ("https://fhir.example.org/r4", False, (), True),
        ("http://fhir.example.org/r4", False, (), False),
        ("http://fhir.example.org/r4", True, (), True),
        ("ftp://fhir.example.org", True, (), False),
        # loopback, private and link-local: refused unless listed
        ("http://127.0.0.1:8080/fhir", True, (), False),
        ("https://localhost/fhir", False, (), False),
        ("https://[::1]/fhir", False, (), False),
        ("https://10.1.2.3/fhir", False, (), False),
        ("https://192.168.0.9/fhir", False, (), False),
        ("https://169.254.169.254/latest", False, (), False),
        ("http://127.0.0.1:8080/fhir", False, ("http://127.0.0.1",), True),
        ("http://127.0.0.1:8080/fhir", False, ("http://127.0.0.1:9090",), False),
        # listed = only those, path prefix on a segment boundary
        ("https://fhir.example.org/r4", False, ("https://fhir.example.org/r4",), True),
        ("https://fhir.example.org/r4/", False, ("https://fhir.example.org/r4",), True),
        ("https://fhir.example.org/r4x", False, ("https://fhir.example.org/r4",), False),
        ("https://other.example.org/r4", False, ("https://fhir.example.org/r4",), False),
    ],
)
def test_the_fhir_server_policy(url: str, allow_http: bool, allowlist: tuple[str, ...], ok: bool) -> None:
    assert (fhir_server_allowed(url, allow_http, allowlist) is None) is ok
