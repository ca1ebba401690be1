"""What real clients send (cds-hooks.md §3.1, §3.3): the reference sandbox and the Da Vinci
CRD request generator must be served, not rejected and never answered with a 500."""

from __future__ import annotations

import time
from typing import Any

import httpx
from _fakes import PREFETCH, FakeEngine, Signer, app_with, call, calls, draft, hook_request, searchset

SELECT = "/cds-services/SactOrderSelect"
SIGN = "/cds-services/SactOrderSign"
CRD_HOOK_INSTANCE = "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea"  # hard-coded by crd-request-generator


def test_draft_orders_without_bundle_type_are_read() -> None:
    app, engine, _ = app_with()
    body = hook_request()
    del body["context"]["draftOrders"]["type"]
    assert call(app, "POST", SELECT, json=body).status_code == 200
    assert [o["id"] for o in engine.calls[0][1].draft_orders] == ["draft-1"]


def test_draft_orders_without_resource_type_are_read_as_a_bundle() -> None:
    app, engine, _ = app_with()
    body = hook_request()
    body["context"]["draftOrders"] = {"entry": [{"resource": draft()}]}
    assert call(app, "POST", SELECT, json=body).status_code == 200
    assert len(engine.calls[0][1].draft_orders) == 1


def test_a_medication_request_without_intent_is_read() -> None:
    app, engine, _ = app_with()
    r = call(app, "POST", SIGN, json=hook_request("order-sign", orders=[draft(intent=False)]))
    assert r.status_code == 200
    assert engine.calls[0][1].selections == ("MedicationRequest/draft-1",)


def test_the_same_hook_instance_twice_is_served_twice_and_audited_twice() -> None:
    app, _, store = app_with()
    body = hook_request()
    first, second = calls(app, ("POST", SELECT, {"json": body}), ("POST", SELECT, {"json": body}))
    assert first.status_code == second.status_code == 200
    assert first.json()["cards"][0]["uuid"] != second.json()["cards"][0]["uuid"]
    rows, _ = store.recent()
    assert [r["hook_instance"] for r in rows] == [body["hookInstance"]] * 2


def test_a_dstu2_medication_order_is_read_as_a_medication_request() -> None:
    app, engine, _ = app_with()
    order = draft("request-123", resource_type="MedicationOrder")
    order["dateWritten"] = "2026-11-23"
    body = hook_request(orders=[order])  # selections: ["MedicationOrder/request-123"]
    r = call(app, "POST", SELECT, json=body)
    assert r.status_code == 200
    record = engine.calls[0][1]
    (read,) = record.draft_orders
    assert read["resourceType"] == "MedicationRequest" and read["subject"] == {"reference": "Patient/p1"}
    assert record.selections == ("MedicationRequest/request-123",) and record.selected_orders() == (read,)
    assert any(n.kind == "unsupported" for n in record.notes)
    assert "data-unavailable" in r.text  # the clinician is told what was only partly read


def test_the_sandbox_default_dstu2_server_is_read_through_the_fallback() -> None:
    """The sandbox sends no prefetch it could not fill, a DSTU2 fhirServer, no fhirAuthorization."""
    dstu2 = "https://launch.smarthealthit.org/v/r2/fhir"
    served: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        served.append(request.url.path)
        assert "authorization" not in request.headers
        if request.url.path.endswith("/Patient/smart-1288992"):
            return httpx.Response(
                200, json={"resourceType": "Patient", "id": "smart-1288992", "birthDate": "2014-04-04"}
            )
        if request.url.path.endswith("/MedicationRequest"):
            return httpx.Response(
                404, json={"resourceType": "OperationOutcome", "issue": []}
            )  # DSTU2 has none
        return httpx.Response(200, json=searchset())

    app, engine, _ = app_with(
        FakeEngine({"patient": PREFETCH["patient"], "observations": PREFETCH["observations"]}),
        transport=httpx.MockTransport(handler),
    )
    order = draft("request-123", resource_type="MedicationOrder")
    order["patient"] = {"reference": "Patient/smart-1288992"}  # this patient's order (HAZ-001 leaves others out)
    body = {
        "hookInstance": "0f4e1b3a-6a55-4a2c-9d3e-0d2b0c8f6a11",
        "hook": "order-select",
        "fhirServer": dstu2,
        "context": {
            "patientId": "smart-1288992",
            "userId": "Practitioner/COREPRACTITIONER1",
            "selections": ["MedicationRequest/request-123"],
            "draftOrders": {"resourceType": "Bundle", "entry": [{"resource": order}]},
        },
    }
    r = call(app, "POST", SELECT, json=body)
    assert r.status_code == 200, r.text
    assert engine.calls[0][1].patient["id"] == "smart-1288992"
    assert engine.calls[0][1].selected_orders()[0]["resourceType"] == "MedicationRequest"


def test_a_crd_like_client_signing_rs256_is_served_where_its_issuer_allows_it() -> None:
    crd = Signer("RS256", iss="https://crd-request-generator.example")
    issuer = crd.issuer(max_lifetime_seconds=2 * 86400)
    app, _, _ = app_with(trusted_issuers=(issuer,), transport=crd.transport())
    body = hook_request(
        "order-sign",
        hookInstance=CRD_HOOK_INSTANCE,
        fhirServer="https://fhir.crd.example/r4",
        fhirAuthorization={
            "access_token": "crd-token",
            "token_type": "Bearer",
            "expires_in": 300,
            "scope": "patient/Patient.read patient/Observation.read",
            "subject": "cds-service4",
        },
    )
    url = "http://testserver" + SIGN

    def signed() -> dict[str, Any]:
        return {
            "json": body,
            "headers": {"Authorization": f"Bearer {crd.token(url, exp=time.time() + 86400)}"},
        }

    first, second = calls(app, ("POST", SIGN, signed()), ("POST", SIGN, signed()))
    assert first.status_code == second.status_code == 200  # same hookInstance, one-day RS256 tokens


def test_rs256_is_refused_where_the_issuer_is_not_configured_for_it() -> None:
    crd = Signer("RS256", iss="https://crd-request-generator.example")
    app, _, _ = app_with(
        trusted_issuers=(crd.issuer(algorithms=("RS384", "ES384")),), transport=crd.transport()
    )
    url = "http://testserver" + SIGN
    r = call(
        app,
        "POST",
        SIGN,
        json=hook_request("order-sign"),
        headers={"Authorization": f"Bearer {crd.token(url)}"},
    )
    assert r.status_code == 401 and r.content == b""
