"""`replay --serve-fhir`: a scenario as a read-only FHIR R4 endpoint, and the search behind it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from cds_service.replay import fhir_search, fhir_server
from cds_service.replay.scenario import ResolvedScenario, load_scenario

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
SCENARIO = Path(__file__).parent / "scenarios" / "whole-record-ph-positive-post-hsct-cycle-2.json"
PID = "wr-phpos-c2"


@pytest.fixture(scope="module")
def resolved() -> ResolvedScenario:
    return load_scenario(SCENARIO).resolved(NOW)


@pytest.fixture(scope="module")
def server(resolved: ResolvedScenario) -> Iterator[fhir_server.FhirServer]:
    with fhir_server.serve(resolved) as running:
        yield running


def _get(server: fhir_server.FhirServer, path: str) -> httpx.Response:
    return httpx.get(f"{server.url}/{path}", timeout=10)


def test_it_listens_on_loopback_only(server: fhir_server.FhirServer) -> None:
    assert server.url.startswith("http://127.0.0.1:")


def test_metadata_is_an_r4_capability_statement_for_the_types_held(server: fhir_server.FhirServer) -> None:
    response = _get(server, "metadata")
    assert response.status_code == 200 and response.headers["content-type"].startswith("application/fhir+json")
    cs = response.json()
    assert cs["resourceType"] == "CapabilityStatement" and cs["fhirVersion"] == "4.0.1"
    types = {r["type"] for r in cs["rest"][0]["resource"]}
    assert {"Patient", "Observation", "MedicationRequest", "MedicationAdministration", "Procedure",
            "QuestionnaireResponse"} <= types
    interactions = {i["code"] for i in cs["rest"][0]["resource"][0]["interaction"]}
    assert interactions == {"read", "search-type"}


def test_read_returns_the_resource_and_404_an_operation_outcome(server: fhir_server.FhirServer) -> None:
    assert _get(server, f"Patient/{PID}").json()["id"] == PID
    missing = _get(server, "Patient/nobody")
    assert missing.status_code == 404 and missing.json()["resourceType"] == "OperationOutcome"


def test_draft_orders_are_not_on_the_fhir_server(server: fhir_server.FhirServer) -> None:
    assert _get(server, "MedicationRequest/draft-ino-c2d1").status_code == 404
    bundle = _get(server, f"MedicationRequest?patient={PID}").json()
    assert all(e["resource"]["status"] != "draft" for e in bundle["entry"])


def test_search_by_patient_and_code_returns_a_searchset(server: fhir_server.FhirServer) -> None:
    bundle = _get(server, f"Observation?patient={PID}&code=http://loinc.org|14631-6,http://loinc.org|1975-2").json()
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "searchset"
    codes = {e["resource"]["code"]["coding"][0]["code"] for e in bundle["entry"]}
    assert codes == {"14631-6", "1975-2"}
    assert bundle["total"] == len(bundle["entry"]) > 50
    assert all(e["search"]["mode"] == "match" and e["fullUrl"].startswith(server.url) for e in bundle["entry"])


def test_count_sort_and_post_search(server: fhir_server.FhirServer) -> None:
    newest = _get(server, f"Observation?subject=Patient/{PID}&code=http://loinc.org|777-3&_sort=-date&_count=2").json()
    assert len(newest["entry"]) == 2 and newest["total"] > 2
    first, second = (e["resource"]["effectiveDateTime"] for e in newest["entry"])
    assert first >= second and first == "2026-11-22"
    posted = httpx.post(f"{server.url}/Procedure/_search", data={"patient": PID}, timeout=10).json()
    assert [e["resource"]["code"]["coding"][0]["code"] for e in posted["entry"] if "coding" in e["resource"]["code"]] == ["234336002"]


def test_an_unsupported_parameter_is_reported_not_silently_dropped(server: fhir_server.FhirServer) -> None:
    bundle = _get(server, f"Condition?patient={PID}&onset-age=lt10").json()
    outcomes = [e for e in bundle["entry"] if e["search"]["mode"] == "outcome"]
    assert len(outcomes) == 1 and "onset-age" in outcomes[0]["resource"]["issue"][0]["diagnostics"]


def test_the_endpoint_is_read_only(server: fhir_server.FhirServer) -> None:
    assert httpx.put(f"{server.url}/Patient/{PID}", json={}, timeout=10).status_code == 405
    assert httpx.delete(f"{server.url}/Patient/{PID}", timeout=10).status_code == 405


# ---------------------------------------------------------------- the search functions


def _index() -> fhir_search.ResourceIndex:
    obs = [
        {"resourceType": "Observation", "id": f"o{i}", "status": s, "subject": {"reference": "Patient/p"},
         "code": {"coding": [{"system": "http://loinc.org", "code": c}]}, "effectiveDateTime": d}
        for i, (c, s, d) in enumerate([("1742-6", "final", "2026-11-01"), ("1920-8", "final", "2026-11-20T10:00:00Z"),
                                       ("1742-6", "cancelled", "2026-10-01"), ("6768-6", "final", "2026-11-22")])
    ]
    other = {"resourceType": "Observation", "id": "x", "subject": {"reference": "Patient/q"},
             "code": {"coding": [{"system": "http://loinc.org", "code": "1742-6"}]}}
    return fhir_search.ResourceIndex.of([*obs, other, {"resourceType": "Patient", "id": "p"}])


def _ids(query: str, **kw: object) -> list[str]:
    result = fhir_search.evaluate(query, _index(), **kw)  # type: ignore[arg-type]
    assert result.value is not None
    return [e["resource"]["id"] for e in result.value["entry"]]


@pytest.mark.parametrize(
    ("query", "ids"),
    [
        ("Observation?patient=p", ["o0", "o1", "o2", "o3"]),
        ("Observation?patient=Patient/p&code=1742-6", ["o0", "o2"]),
        ("Observation?patient=p&code=http://loinc.org|1742-6,http://loinc.org|6768-6&status=final", ["o0", "o3"]),
        ("Observation?subject=Patient/p&code=http://snomed.info/sct|1742-6", []),
        ("Observation?patient=p&date=ge2026-11-01&date=lt2026-11-21", ["o0", "o1"]),
        ("Observation?patient=p&_sort=-date&_count=2", ["o3", "o1"]),
        ("Observation?patient=p&status:not=cancelled&_sort=date", ["o0", "o1", "o3"]),
    ],
)
def test_search_semantics(query: str, ids: list[str]) -> None:
    assert _ids(query) == ids


def test_code_in_a_valueset_uses_the_expansion_given() -> None:
    expand = {"https://vs/liver": [("http://loinc.org", "1742-6")]}.get
    assert _ids("Observation?patient=p&code:in=https://vs/liver", valueset_codes=expand) == ["o0", "o2"]


def test_an_instance_read_returns_the_resource_or_none() -> None:
    assert fhir_search.evaluate("Patient/p", _index()).value == {"resourceType": "Patient", "id": "p"}
    assert fhir_search.evaluate("Patient/zz", _index()).value is None


def test_prefetch_tokens_are_filled_from_context_or_the_key_is_dropped() -> None:
    context = {"patientId": "p", "userId": "Practitioner/dr-1"}
    assert fhir_search.fill_tokens("Patient/{{context.patientId}}", context) == "Patient/p"
    assert fhir_search.fill_tokens("Practitioner/{{userPractitionerId}}", context) == "Practitioner/dr-1"
    assert fhir_search.fill_tokens("Encounter/{{context.encounterId}}", context) is None
    assert fhir_search.fill_tokens("Observation?date=ge{{today() - 7 days}}", context, NOW) == "Observation?date=ge2026-11-16"


# ---------------------------------------------------------------- the fallback path


def test_the_service_fetching_from_the_served_endpoint_gives_the_prefetch_cards(
    replay_session: object, server: fhir_server.FhirServer
) -> None:
    scenario = load_scenario(SCENARIO)
    with_prefetch = replay_session.replay(scenario, NOW)  # type: ignore[attr-defined]
    fallback = replay_session.replay(scenario, NOW, fhir_server=server.url, send_prefetch=False)  # type: ignore[attr-defined]
    assert with_prefetch.status != "error", with_prefetch.error
    assert fallback.status != "error", fallback.error
    assert "prefetch" not in fallback.requests[0]["request"]
    assert fallback.requests[0]["request"]["fhirServer"] == server.url

    def view(cards: list[dict]) -> list[tuple[str, str, str]]:
        return sorted((c["source"]["topic"]["code"], c["indicator"], c["summary"]) for c in cards)

    assert view(fallback.cards) == view(with_prefetch.cards)
    assert view(with_prefetch.cards)
