"""/healthz, /readyz (knowledge loaded, store reachable) and Prometheus /metrics."""

from __future__ import annotations

from typing import Any

from _fakes import LoopbackFhir, app_with, call, calls, hook_request, searchset

from cds_service.store import AuditStore

SELECT = "/cds-services/SactOrderSelect"


def test_healthz_answers_while_the_process_runs() -> None:
    app, _, _ = app_with()
    r = call(app, "GET", "/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok"}


def test_readyz_reports_the_knowledge_version_and_store() -> None:
    app, _, _ = app_with()
    r = call(app, "GET", "/readyz")
    assert r.status_code == 200
    assert r.json() == {"status": "ready", "checks": {"knowledge": "0.1.0", "store": "ok"}}


def test_readyz_is_503_when_the_store_is_unreachable() -> None:
    class Down(AuditStore):
        def ping(self) -> bool:
            return False

    app, _, _ = app_with(store=Down("sqlite://"))
    r = call(app, "GET", "/readyz")
    assert r.status_code == 503 and r.json()["checks"]["store"] == "unreachable"


def _metric(text: str, name: str, **labels: str) -> float:
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith(name + "{"):
            got = ",".join(sorted(line[len(name) + 1 : line.index("}")].split(",")))
            if got == wanted:
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_metrics_count_latency_by_service_cards_by_rule_and_errors() -> None:
    app, _, _ = app_with()
    body = hook_request()
    body["prefetch"]["observations"] = {"resourceType": "OperationOutcome", "issue": []}
    *_, metrics = calls(
        app,
        ("POST", SELECT, {"json": body}),
        ("POST", SELECT, {"json": hook_request()}),
        ("POST", SELECT, {"json": {}}),
        ("GET", "/metrics", {}),
    )
    assert metrics.headers["content-type"].startswith("text/plain")
    text = metrics.text
    assert _metric(text, "cds_hook_request_seconds_count", service="SactOrderSelect") == 2
    assert _metric(text, "cds_hook_responses_total", service="SactOrderSelect", status="200") == 2
    assert _metric(text, "cds_cards_total", rule_code="monotherapy") == 2
    assert _metric(text, "cds_cards_total", rule_code="data-unavailable") == 1


def test_metrics_count_fallback_fetches_by_outcome() -> None:
    resources: dict[str, Any] = {
        "Patient/p1": {"resourceType": "Patient", "id": "p1"},
        "Observation": searchset(),
    }
    with LoopbackFhir(resources, token=None) as server:
        app, _, _ = app_with(fhir_server_allowlist=("http://127.0.0.1",))
        call(app, "POST", SELECT, json=hook_request(prefetch=None, fhirServer=server.base))
    text = call(app, "GET", "/metrics").text
    assert _metric(text, "cds_fallback_fetches_total", outcome="ok") == 2
    assert (
        _metric(text, "cds_fallback_fetches_total", outcome="error") == 1
    )  # MedicationRequest: 404 on search
    assert _metric(text, "cds_hook_responses_total", service="SactOrderSelect", status="412") == 1


def test_an_internal_error_is_counted() -> None:
    from _fakes import FakeEngine

    app, _, _ = app_with(FakeEngine(fail=True))
    _, metrics = calls(app, ("POST", SELECT, {"json": hook_request()}), ("GET", "/metrics", {}))
    assert _metric(metrics.text, "cds_errors_total", kind="internal") == 1


def test_each_app_has_its_own_registry() -> None:
    first, _, _ = app_with()
    second, _, _ = app_with()
    call(first, "POST", SELECT, json=hook_request())
    assert (
        _metric(
            call(second, "GET", "/metrics").text, "cds_hook_request_seconds_count", service="SactOrderSelect"
        )
        == 0
    )
