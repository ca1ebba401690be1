"""Discovery `GET /cds-services` (CDS Hooks 2.0 §discovery, cds-hooks.md §1.2 D1-D5)."""

from __future__ import annotations

from typing import Any

from _fakes import FakeEngine, ServiceDefinition, app_with, call, hook_request


def test_discovery_lists_every_service_with_its_required_fields_d1_d3() -> None:
    app, _, _ = app_with()
    r = call(app, "GET", "/cds-services")
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    services = r.json()["services"]
    assert [(s["id"], s["hook"]) for s in services] == [
        ("SactOrderSelect", "order-select"),
        ("SactOrderSign", "order-sign"),
    ]
    select = services[0]
    assert select["title"] == "SACT order select" and select["description"]
    assert select["usageRequirements"] == "Requires the patient's labs."
    assert select["prefetch"]["patient"] == "Patient/{{context.patientId}}"


def test_empty_optional_fields_are_left_out_g2() -> None:
    class Bare(FakeEngine):
        def __init__(self) -> None:
            super().__init__()
            bare = ServiceDefinition("Bare", "order-sign", None, "Only a description.")  # type: ignore[arg-type]
            self.services = [bare]

    app, _, _ = app_with(Bare())
    assert call(app, "GET", "/cds-services").json() == {
        "services": [{"hook": "order-sign", "id": "Bare", "description": "Only a description."}]
    }


def test_no_services_is_200_with_an_empty_array_d2() -> None:
    class Empty(FakeEngine):
        def __init__(self) -> None:
            super().__init__()
            self.services = []

    app, _, _ = app_with(Empty())
    r = call(app, "GET", "/cds-services")
    assert r.status_code == 200 and r.json() == {"services": []}


def test_one_id_may_serve_several_hooks_each_with_its_own_prefetch_d4() -> None:
    class TwoHooks(FakeEngine):
        def __init__(self) -> None:
            super().__init__()
            self.services = [
                ServiceDefinition(
                    "Sact", "order-select", "Sact", "Select.", {"patient": "Patient/{{context.patientId}}"}
                ),
                ServiceDefinition("Sact", "order-sign", "Sact", "Sign.", {}),
            ]

        def service(self, service_id: str) -> Any:
            return self.services[0]

    app, engine, _ = app_with(TwoHooks())
    services = call(app, "GET", "/cds-services").json()["services"]
    assert [(s["id"], s["hook"]) for s in services] == [("Sact", "order-select"), ("Sact", "order-sign")]
    select = hook_request("order-select", prefetch={"patient": {"resourceType": "Patient", "id": "p1"}})
    sign = hook_request("order-sign", prefetch=None)  # order-sign asks for no prefetch
    assert call(app, "POST", "/cds-services/Sact", json=select).status_code == 200
    assert call(app, "POST", "/cds-services/Sact", json=sign).status_code == 200
    assert [c[1].selections for c in engine.calls] == [
        ("MedicationRequest/draft-1",),
        ("MedicationRequest/draft-1",),
    ]


def test_discovery_is_at_the_fixed_path_and_nowhere_else_d1() -> None:
    app, _, _ = app_with()
    assert call(app, "GET", "/cds-services/").status_code in (200, 307, 404)
    assert call(app, "POST", "/cds-services").status_code == 405
