"""The lean request path (issue 11): one log line per hook call, nothing built for a log
level that is off, each step of a call timed in the server (audit ``timings_ms``), and the
relevance gate's answer through HTTP with prefetch, with missing prefetch and through the
FHIR-server fallback."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import httpx
import pytest
from _fakes import FakeEngine, LoopbackFhir, app_with, call, hook_request

import cds_service.api.app as app_module
from cds_service.api.logging import JsonFormatter, RedactFilter
from cds_service.engine import Engine
from cds_service.knowledge import load_knowledge
from cds_service.store import AuditStore


def _post(app: Any, body: dict[str, Any], service: str = "SactOrderSelect") -> Any:
    return call(app, "POST", f"/cds-services/{service}", json=body)


def test_a_hook_call_writes_one_log_line_with_its_card_count(caplog: pytest.LogCaptureFixture) -> None:
    app, engine, _ = app_with()
    with caplog.at_level(logging.INFO):
        resp = _post(app, hook_request())
    assert resp.status_code == 200
    lines = [r for r in caplog.records if r.name in ("cds_service.api.app", "cds_service.api.hooks")]
    assert len(lines) == 1
    (line,) = lines
    formatted = json.loads(JsonFormatter().format(line if RedactFilter().filter(line) else line))
    assert formatted["status"] == 200 and formatted["cards"] == len(resp.json()["cards"])
    assert formatted["path"] == "/cds-services/SactOrderSelect" and "latency_ms" in formatted


def test_no_request_line_is_built_when_info_is_off(monkeypatch: pytest.MonkeyPatch,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    app, _, _ = app_with()

    def boom(*args: Any, **kw: Any) -> None:
        raise AssertionError("log.info called although INFO is off")

    monkeypatch.setattr(app_module.log, "info", boom)
    with caplog.at_level(logging.WARNING):
        assert _post(app, hook_request()).status_code == 200


def test_each_step_of_a_call_is_timed_in_the_server() -> None:
    store = AuditStore("sqlite://")
    app, _, _ = app_with(FakeEngine(), store)
    assert _post(app, hook_request()).status_code == 200
    (row,) = store.recent(1)[0]
    assert {"auth", "read", "parse", "validate", "fetch", "record"} <= set(row["timings_ms"])
    assert all(v >= 0 for v in row["timings_ms"].values())


# -- the relevance gate through HTTP, with the real engine --------------------------------------

PARACETAMOL = {"coding": [{"system": "http://www.whocc.no/atc", "code": "N02BE01"}], "text": "paracetamol"}


def _draft(rid: str, medication: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "MedicationRequest", "id": rid, "status": "draft", "intent": "order",
            "subject": {"reference": "Patient/p1"}, "medicationCodeableConcept": medication}


@pytest.fixture(scope="module")
def engines() -> tuple[Engine, Engine]:
    kb = load_knowledge()
    return Engine(kb), Engine(kb, relevance_gate=False)


def _real_app(engine: Engine, transport: Any = None) -> Any:
    return app_with(engine, transport=transport, allow_http_fhir_server=True,  # type: ignore[arg-type]
                    fhir_server_allowlist=("http://127.0.0.1",))[0]


def _strip(cards: list[dict[str, Any]]) -> str:
    def walk(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: walk(x) for k, x in v.items() if k != "uuid"}
        if isinstance(v, list):
            return [walk(x) for x in v]
        return v
    return json.dumps(walk(cards), sort_keys=True)


def _sact_request(prefetch: dict[str, Any] | None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "hook": "order-select", "hookInstance": "d1f0c7a2-5d1e-4b8e-9a43-0f1e6c2b7a11",
        "context": {"userId": "Practitioner/u1", "patientId": "p1",
                    "selections": ["MedicationRequest/para-1"],
                    "draftOrders": {"resourceType": "Bundle", "type": "collection",
                                    "entry": [{"resource": _draft("para-1", PARACETAMOL)}]}},
        **extra,
    }
    if prefetch is not None:
        body["prefetch"] = prefetch
    return body


def _full_prefetch(engine: Engine) -> dict[str, Any]:
    keys = engine.service("SactOrderSelect").prefetch
    out: dict[str, Any] = {k: {"resourceType": "Bundle", "type": "searchset", "entry": []} for k in keys}
    out["patient"] = {"resourceType": "Patient", "id": "p1", "birthDate": "2016-01-01"}
    return out


def test_an_order_no_rule_is_about_is_answered_by_the_gate_with_the_full_paths_cards(engines) -> None:
    gated, plain = engines
    store = AuditStore("sqlite://")
    body = _sact_request(_full_prefetch(plain))
    app = app_with(gated, store)[0]  # type: ignore[arg-type]
    got = _post(app, body)
    want = _post(_real_app(plain), body)
    assert got.status_code == want.status_code == 200
    assert got.json()["cards"] == [] and _strip(got.json()["cards"]) == _strip(want.json()["cards"])
    (row,) = store.recent(1)[0]
    assert any("not evaluated" in n for n in row["notes"]) and "gate" in row["timings_ms"]


def test_a_prefetch_error_still_shows_the_data_problems_card_through_the_gate(engines) -> None:
    gated, plain = engines
    prefetch = _full_prefetch(plain)
    prefetch["patient"] = {"resourceType": "OperationOutcome",
                           "issue": [{"severity": "error", "code": "timeout", "diagnostics": "upstream timed out"}]}
    body = _sact_request(prefetch)
    got = _post(_real_app(gated), body).json()["cards"]
    want = _post(_real_app(plain), body).json()["cards"]
    assert len(got) == 1 and "patient data incomplete" in got[0]["summary"]
    assert _strip(got) == _strip(want)


def test_the_gate_answers_the_same_through_the_fhir_server_fallback(engines) -> None:
    gated, plain = engines

    def empty(path: str, base: str) -> dict[str, Any]:
        return {"resourceType": "Bundle", "type": "searchset", "entry": []}

    templates = plain.service("SactOrderSelect").prefetch
    resources: dict[str, Any] = {t.split("?", 1)[0]: empty for t in templates.values()}
    resources["Patient/p1"] = {"resourceType": "Patient", "id": "p1", "birthDate": "2016-01-01"}
    with LoopbackFhir(resources, token=None) as fhir:
        body = _sact_request(None, fhirServer=fhir.base)
        got = _post(_real_app(gated), body)
        want = _post(_real_app(plain), body)
        assert len(fhir.seen) >= 2 * len(templates) - 2  # both fetched what they were not sent
    assert got.status_code == want.status_code == 200, got.text
    assert got.json()["cards"] == [] and _strip(got.json()["cards"]) == _strip(want.json()["cards"])


# -- the audit rows of concurrent calls are committed together (audit_writer.py) -----------------


class _Batches(AuditStore):
    def __init__(self) -> None:
        super().__init__("sqlite://")
        self.batches: list[int] = []

    def record_invocations(self, records: Any) -> list[int]:
        self.batches.append(len(records))
        return super().record_invocations(records)


def test_concurrent_hook_calls_share_audit_commits_and_none_is_left_counted_in_flight() -> None:
    store = _Batches()
    app, _, _ = app_with(FakeEngine(), store)
    bad = {**hook_request(), "context": "not an object"}  # 400: counted in flight, then out again

    async def at_once() -> list[Any]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as client:
            return await asyncio.gather(*(client.post("/cds-services/SactOrderSelect", json=body)
                                          for body in [hook_request()] * 8 + [bad]))

    responses = asyncio.run(at_once())
    assert [r.status_code for r in responses] == [200] * 8 + [400]
    assert len(store.recent(100)[0]) == 8  # every row stored
    assert sum(store.batches) == 8 and len(store.batches) < 8  # ... in fewer transactions than calls
    assert app.state.cds.hooks_in_flight == 0  # the 400 did not leave a call counted in flight
    started = time.monotonic()
    assert _post(app, hook_request()).status_code == 200  # alone: its row is committed at once
    assert time.monotonic() - started < 1.0
