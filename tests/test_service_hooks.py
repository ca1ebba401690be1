"""The hook endpoint: envelope validation (400 naming the field), 404, wrong hook, malformed
JSON, and never a 500 for anything a client sends (cds-hooks.md §1.3, §1.4)."""

from __future__ import annotations

import copy
import json
import logging
import random
import re
from typing import Any

import httpx
import pytest
from _fakes import FakeEngine, app_with, call, calls, hook_request

SELECT = "/cds-services/SactOrderSelect"
SIGN = "/cds-services/SactOrderSign"


def field_of(response: Any) -> list[str]:
    issues = response.json()["issue"]
    return [e for i in issues for e in i.get("expression", [])]


def test_a_valid_order_select_call_returns_200_and_cards() -> None:
    app, engine, _ = app_with()
    r = call(app, "POST", SELECT, json=hook_request())
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    cards = r.json()["cards"]
    assert [c["source"]["topic"]["code"] for c in cards] == ["monotherapy"]
    assert engine.calls[0][1].selections == ("MedicationRequest/draft-1",)


def test_responses_carry_no_null_members_g2() -> None:
    app, _, _ = app_with()
    text = call(app, "POST", SELECT, json=hook_request()).text
    assert "null" not in text  # the fake engine's card has detail=None


def test_nothing_to_say_is_an_empty_cards_array_r1() -> None:
    class Silent(FakeEngine):
        def evaluate(self, service_id: str, record: Any, now: Any) -> Any:
            return super().evaluate(service_id, record, now).__class__([], [])

    app, _, _ = app_with(Silent())
    r = call(app, "POST", SIGN, json=hook_request("order-sign"))
    assert r.status_code == 200 and r.json() == {"cards": []}


def test_an_extension_member_is_accepted_g3() -> None:
    app, _, _ = app_with()
    body = hook_request(extension={"org.example.config": {"a": 1}})
    body["context"]["extension"] = {"org.example.flag": True}
    assert call(app, "POST", SELECT, json=body).status_code == 200


def _without(body: dict[str, Any], dotted: str) -> dict[str, Any]:
    body = copy.deepcopy(body)
    *parents, last = dotted.split(".")
    target = body
    for p in parents:
        target = target[p]
    del target[last]
    return body


@pytest.mark.parametrize(
    ("hook", "missing"),
    [
        ("order-select", "hook"),
        ("order-select", "hookInstance"),
        ("order-select", "context"),
        ("order-select", "context.userId"),
        ("order-select", "context.patientId"),
        ("order-select", "context.selections"),
        ("order-select", "context.draftOrders"),
        ("order-sign", "context.userId"),
        ("order-sign", "context.patientId"),
        ("order-sign", "context.draftOrders"),
    ],
)
def test_each_required_field_missing_is_a_400_naming_it(hook: str, missing: str) -> None:
    app, engine, _ = app_with()
    r = call(
        app, "POST", SELECT if hook == "order-select" else SIGN, json=_without(hook_request(hook), missing)
    )
    assert r.status_code == 400
    assert r.json()["resourceType"] == "OperationOutcome"
    assert field_of(r) == [missing] and missing in r.json()["issue"][0]["diagnostics"]
    assert engine.calls == []


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"hookInstance": 5}, "hookInstance"),
        ({"hookInstance": ""}, "hookInstance"),
        ({"context": []}, "context"),
        ({"context.patientId": 7}, "context.patientId"),
        ({"context.encounterId": {"id": 1}}, "context.encounterId"),
        ({"context.selections": []}, "context.selections"),
        ({"context.selections": "MedicationRequest/1"}, "context.selections"),
        ({"context.selections": [5]}, "context.selections[0]"),
        ({"context.draftOrders": "bundle"}, "context.draftOrders"),
        ({"context.draftOrders": {"resourceType": "Patient"}}, "context.draftOrders.resourceType"),
        ({"context.draftOrders": {"resourceType": "Bundle", "entry": 3}}, "context.draftOrders.entry"),
        ({"context.draftOrders": {"resourceType": "Bundle", "entry": [7]}}, "context.draftOrders.entry[0]"),
        ({"fhirServer": "not a url"}, "fhirServer"),
        ({"fhirServer": 42}, "fhirServer"),
        ({"fhirAuthorization": {"access_token": "t", "token_type": "Bearer"}}, "fhirServer"),
        (
            {"fhirServer": "https://f.example", "fhirAuthorization": {"token_type": "Bearer"}},
            "fhirAuthorization.access_token",
        ),
        (
            {
                "fhirServer": "https://f.example",
                "fhirAuthorization": {"access_token": "t", "token_type": "MAC"},
            },
            "fhirAuthorization.token_type",
        ),
        (
            {
                "fhirServer": "https://f.example",
                "fhirAuthorization": {"access_token": "t", "token_type": "Bearer", "expires_in": "soon"},
            },
            "fhirAuthorization.expires_in",
        ),
        ({"fhirServer": "https://f.example", "fhirAuthorization": "token"}, "fhirAuthorization"),
        ({"prefetch": ["patient"]}, "prefetch"),
        ({"prefetch": {"patient": {"resourceType": "Bundle", "entry": {"a": 1}}}}, "prefetch.patient.entry"),
    ],
)
def test_a_malformed_field_is_a_400_naming_it(change: dict[str, Any], named: str) -> None:
    body = hook_request()
    for dotted, value in change.items():
        target = body
        *parents, last = dotted.split(".")
        for p in parents:
            target = target[p]
        target[last] = value
    app, _, _ = app_with()
    r = call(app, "POST", SELECT, json=body)
    assert r.status_code == 400, r.text
    assert field_of(r) == [named]


def test_an_unknown_service_is_a_404_with_an_operation_outcome() -> None:
    app, _, _ = app_with()
    r = call(app, "POST", "/cds-services/NoSuchService", json=hook_request())
    assert r.status_code == 404
    assert r.json()["issue"][0]["code"] == "not-found" and "NoSuchService" in r.text


def test_the_wrong_hook_for_the_service_is_a_400_naming_hook() -> None:
    app, _, _ = app_with()
    r = call(app, "POST", SIGN, json=hook_request("order-select"))
    assert r.status_code == 400 and field_of(r) == ["hook"]
    assert "order-sign" in r.json()["issue"][0]["diagnostics"]


@pytest.mark.parametrize(
    "body",
    [b"{not json", b"", b"   ", b"[1, 2]", b'"text"', b"null", b"\xff\xfe", b'{"hook": "order-select"'],
)
def test_malformed_json_or_a_non_object_is_a_400(body: bytes) -> None:
    app, _, _ = app_with()
    r = call(app, "POST", SELECT, content=body, headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["resourceType"] == "OperationOutcome"


def test_a_body_over_the_size_limit_is_a_413() -> None:
    app, _, _ = app_with(max_request_bytes=1000)
    body = hook_request()
    body["context"]["padding"] = "x" * 2000
    assert call(app, "POST", SELECT, json=body).status_code == 413


def test_unknown_routes_and_methods_answer_with_operation_outcomes() -> None:
    app, _, _ = app_with()
    missing, wrong = calls(app, ("GET", "/nothing-here", {}), ("GET", SELECT, {}))
    assert missing.status_code == 404 and missing.json()["resourceType"] == "OperationOutcome"
    assert wrong.status_code == 405 and wrong.json()["resourceType"] == "OperationOutcome"


def test_a_genuine_server_fault_is_a_500_naming_the_request_id_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app, _, _ = app_with(FakeEngine(fail=True))
    with caplog.at_level(logging.ERROR):
        r = call(app, "POST", SELECT, json=hook_request(), headers={"X-Request-ID": "req-42"})
    assert r.status_code == 500 and r.headers["x-request-id"] == "req-42"
    assert "req-42" in r.json()["issue"][0]["diagnostics"]
    faults = [rec for rec in caplog.records if rec.levelno >= logging.ERROR]
    assert faults and getattr(faults[0], "request_id", None) == "req-42"
    assert "Jane Doe" not in caplog.text  # type and stack only, never the message


def test_a_request_id_is_made_when_the_client_sends_none() -> None:
    app, _, _ = app_with()
    r = call(app, "POST", SELECT, json=hook_request(), headers={"X-Request-ID": "bad id with spaces"})
    assert re.fullmatch(r"[0-9a-f]{32}", r.headers["x-request-id"])


# -- never a 500 for client input: a seeded fuzz over junk bodies ---------------------------

JUNK = [
    None,
    True,
    0,
    -1,
    1.5e308,
    "",
    "x",
    "Patient/p1",
    [],
    [None],
    {},
    {"resourceType": "Bundle", "entry": [{}]},
    {"resourceType": "OperationOutcome"},
    {"resourceType": 5},
    {"resourceType": "Bundle", "entry": None},
    {"resourceType": "MedicationOrder", "id": "m", "dosageInstruction": [5, "x", None]},
    ["MedicationOrder/1"],
    {
        "resourceType": "Bundle",
        "entry": [{"resource": {"resourceType": "MedicationOrder", "dosageInstruction": 3}}],
    },
    {"resourceType": "Bundle", "entry": [{"resource": [1]}]},
    "\u0000",
    "💊" * 50,
]


def _mutations(rng: random.Random, n: int) -> list[Any]:
    out: list[Any] = []
    for _ in range(n):
        body: Any = hook_request(rng.choice(["order-select", "order-sign"]))
        body["fhirServer"] = rng.choice(["https://fhir.invalid/r4", "http://fhir.invalid/r4", "ftp://x", ""])
        paths = [("",), ("context",), ("prefetch",), ("context", "draftOrders"), ("prefetch", "patient")]
        for _ in range(rng.randint(1, 4)):
            parent_path = rng.choice(paths)
            target = body
            for p in parent_path[1:] if parent_path[0] == "" else parent_path:
                target = target.get(p) if isinstance(target, dict) else None
            if not isinstance(target, dict) or not target:
                continue
            key = rng.choice(sorted(target))
            if rng.random() < 0.3:
                del target[key]
            else:
                target[key] = copy.deepcopy(rng.choice(JUNK))
        out.append(body)
    out += [copy.deepcopy(j) for j in JUNK]
    return out


def test_junk_bodies_never_produce_a_500() -> None:
    rng = random.Random(20261123)
    unavailable = httpx.MockTransport(lambda request: httpx.Response(503))  # no network in tests
    app, _, _ = app_with(transport=unavailable, fetch_timeout_seconds=0.5)
    bodies = _mutations(rng, 250)
    raw = [bytes(rng.randrange(256) for _ in range(rng.randint(0, 64))) for _ in range(30)]
    as_json = {"Content-Type": "application/json"}
    requests = [("POST", rng.choice([SELECT, SIGN]), {"content": json.dumps(b), "headers": as_json}) for b in bodies]
    requests += [("POST", SELECT, {"content": b, "headers": as_json}) for b in raw]
    requests += [
        ("POST", f"{SELECT}/feedback", {"content": json.dumps(b), "headers": as_json}) for b in bodies[:60]
    ]
    statuses = [r.status_code for r in calls(app, *requests)]
    assert max(statuses) < 500, sorted(set(statuses))
    assert {400, 412} <= set(statuses)


@pytest.mark.parametrize("depth", [200, 1000])
def test_deeply_nested_json_is_read_or_refused_but_never_a_500(depth: int) -> None:
    app, _, _ = app_with()
    text = json.dumps(hook_request()).replace(
        '"observations": null', '"observations": ' + "[" * depth + "]" * depth
    )
    r = call(app, "POST", SELECT, content=text, headers={"Content-Type": "application/json"})
    assert r.status_code == (200 if depth < 500 else 400)


# -- one end-to-end call through the real engine and knowledge ------------------------------


def test_the_real_engine_and_knowledge_serve_discovery_and_a_hook_call_end_to_end() -> None:
    from cds_service.api import create_app
    from cds_service.settings import Settings
    from cds_service.store import AuditStore

    store = AuditStore("sqlite://")
    app = create_app(Settings(database_url="sqlite://"), store=store)
    services = call(app, "GET", "/cds-services").json()["services"]
    assert services and {s["hook"] for s in services} <= {"order-select", "order-sign"}
    for s in services:
        for template in s.get("prefetch", {}).values():
            assert all(
                re.fullmatch(
                    r"context\.\w+|user(Practitioner|PractitionerRole|Patient|RelatedPerson)Id", t.strip()
                )
                for t in re.findall(r"\{\{(.*?)\}\}", template)
            ), template
    service = next(s for s in services if s["hook"] == "order-select")
    prefetch = {k: None for k in service.get("prefetch", {})}
    prefetch["patient"] = {
        "resourceType": "Patient",
        "id": "p1",
        "birthDate": "2016-05-01",
        "gender": "female",
    }
    body = hook_request("order-select", prefetch=prefetch)
    r = call(app, "POST", f"/cds-services/{service['id']}", json=body)
    assert r.status_code == 200, r.text
    for card in r.json()["cards"]:
        assert card["uuid"] and len(card["summary"]) < 140
        assert card["indicator"] in {"info", "warning", "critical"} and card["source"]["label"]
        if card.get("suggestions"):
            assert card["selectionBehavior"] in {"at-most-one", "any"}
        assert all(reason.get("display") for reason in card.get("overrideReasons", []))
    rows, _ = store.recent()
    assert rows[0]["knowledge_version"] and rows[0]["status"] == 200
