"""SDC ``$populate`` of the INO2 Questionnaire: valid R4, pre-filled from the card's own findings.

Every whole-record scenario is populated twice: with the record given as ``context`` content
(drafts included) and fetched from a ``replay --serve-fhir`` endpoint with a bearer token,
as a hook without prefetch would be. Both outputs are checked with the R4B models and the R4
JSON schema; the context answers are checked against the statuses on the card the same
record gets (``org.sact-cds.criteria``), so a form and a card cannot disagree.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from fhir.resources.R4B.parameters import Parameters
from fhir.resources.R4B.questionnaireresponse import QuestionnaireResponse

from cds_service.apps.ino2.populate import EXT_POPULATE_EVIDENCE
from cds_service.knowledge._schema import r4_schema, schema_path
from cds_service.knowledge.terms import CARD_EXT_CRITERIA, CRITERION_CODES, KNOWLEDGE_VERSION
from cds_service.replay import fhir_server
from cds_service.replay.run import in_process
from cds_service.replay.scenario import ResolvedScenario, load_scenario

SCENARIOS = Path(__file__).parent / "scenarios"
WHOLE_RECORDS = sorted(SCENARIOS.glob("whole-record-*.json"))
PATH = "/fhir/Questionnaire/Ino2Attestation/$populate"


def _bundle(resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in resources]}


def context_input(resolved: ResolvedScenario) -> dict[str, Any]:
    """$populate input with the record (and the ordering session's drafts) as context content."""
    assert resolved.patient is not None
    return {"resourceType": "Parameters", "parameter": [
        {"name": "subject", "valueReference": {"reference": f"Patient/{resolved.patient['id']}"}},
        {"name": "context", "part": [{"name": "name", "valueString": "record"},
                                     {"name": "content", "resource": _bundle(resolved.record)}]},
        {"name": "context", "part": [{"name": "name", "valueString": "draftOrders"},
                                     {"name": "content", "resource": _bundle(resolved.draft_orders)}]},
    ]}


def server_input(resolved: ResolvedScenario, url: str) -> dict[str, Any]:
    assert resolved.patient is not None
    return {"resourceType": "Parameters", "parameter": [
        {"name": "subject", "valueReference": {"reference": f"Patient/{resolved.patient['id']}"}},
        {"name": "fhirServer", "valueUrl": url},
        {"name": "fhirAuthorization", "part": [{"name": "access_token", "valueString": "opaque-test-token"}]},
    ]}


async def _call(requests: list[dict[str, Any]], scenario: Any, now: datetime) -> tuple[list[httpx.Response], Any]:
    async with in_process() as replayer:
        out = [await replayer.client.post(PATH, json=body) for body in requests]
        result = await replayer.replay(scenario, now)
    return out, result


def validate_r4(resource: dict[str, Any]) -> None:
    """Both validators the project uses for R4: the R4B models and the R4 JSON schema."""
    QuestionnaireResponse.model_validate(resource)
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in r4_schema(schema_path()).iter_errors(resource)]
    assert errors == [], errors


def answers(qr: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for item in qr["item"]:
        for answer in item.get("answer") or ():
            out[item["linkId"]] = answer.get("valueBoolean", answer.get("valueCoding"))
    return out


@pytest.fixture(scope="module")
def populated() -> dict[str, Any]:
    """Each whole-record scenario: (context response, server response, the replayed cards)."""
    now = datetime.now(UTC)
    out = {}
    for path in WHOLE_RECORDS:
        scenario = load_scenario(path)
        resolved = scenario.resolved(now)
        with fhir_server.serve(resolved) as served:
            (by_context, by_server), result = asyncio.run(
                _call([context_input(resolved), server_input(resolved, served.url)], scenario, now))
        out[path.stem] = (by_context, by_server, result, resolved)
    return out


@pytest.mark.parametrize("name", [p.stem for p in WHOLE_RECORDS])
def test_populate_returns_a_valid_r4_in_progress_response(populated: dict[str, Any], name: str) -> None:
    for response in populated[name][:2]:
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("application/fhir+json")
        params = response.json()
        Parameters.model_validate(params)
        qr = next(p["resource"] for p in params["parameter"] if p["name"] == "response")
        validate_r4(qr)
        resolved = populated[name][3]
        assert qr["status"] == "in-progress"
        assert qr["questionnaire"] == f"https://sact-cds.org/fhir/Questionnaire/Ino2Attestation|{KNOWLEDGE_VERSION}"
        assert qr["subject"] == {"reference": f"Patient/{resolved.patient['id']}"}
        assert [i["linkId"] for i in qr["item"]][:15] == list(CRITERION_CODES)  # every item, in order


@pytest.mark.parametrize("name", [p.stem for p in WHOLE_RECORDS])
def test_prefilled_answers_agree_with_the_card_criterion_statuses(populated: dict[str, Any], name: str) -> None:
    by_context, _, result, _ = populated[name]
    card = next((c for c in result.cards if c["source"]["topic"]["code"] == "ino2-eligibility"), None)
    open_ = {c["code"]: c["status"] for c in (card["extension"][CARD_EXT_CRITERIA] if card else [])}
    qr = next(p["resource"] for p in by_context.json()["parameter"] if p["name"] == "response")
    got = answers(qr)
    for code in CRITERION_CODES:
        status = open_.get(code, "met")
        expected = {"met": True, "unmet": False}.get(status)
        assert got.get(code) is expected, f"{code}: card says {status}, form pre-filled {got.get(code)!r}"


def test_the_imatinib_only_record_prefills_the_unmet_criteria_and_cites_the_data(populated: dict[str, Any]) -> None:
    by_context, _, result, _ = populated["whole-record-ph-positive-imatinib-only"]
    qr = next(p["resource"] for p in by_context.json()["parameter"] if p["name"] == "response")
    items = {i["linkId"]: i for i in qr["item"]}
    ps = items["performance-status"]["answer"][0]
    assert ps["valueBoolean"] is False
    lines = [(next(p["valueString"] for p in e["extension"] if p["url"] == "line"),
              next((p["valueReference"]["reference"] for p in e["extension"] if p["url"] == "source"), None))
             for e in ps["extension"] if e["url"] == EXT_POPULATE_EVIDENCE]
    assert any(line.startswith("ECOG performance status 3 on 20") and ref == "Observation/ps-001"
               for line, ref in lines), lines
    tki = items["ph-status-tki"]["answer"][0]
    assert tki["valueBoolean"] is False
    assert any("imatinib" in p.get("valueString", "") for e in tki["extension"] for p in e["extension"])


def test_time_varying_items_are_never_prefilled(populated: dict[str, Any]) -> None:
    for by_context, by_server, *_ in populated.values():
        for response in (by_context, by_server):
            qr = next(p["resource"] for p in response.json()["parameter"] if p["name"] == "response")
            got = answers(qr)
            assert "response-status" not in got and "mrd-negative" not in got


def test_without_the_draft_orders_monotherapy_is_left_to_the_clinician(populated: dict[str, Any]) -> None:
    """The FHIR server does not hold the ordering session: 'no other agent drafted' is unknown
    there; everything else agrees with the context path."""
    dropped = 0
    for name, (by_context, by_server, *_) in populated.items():
        ctx = answers(next(p["resource"] for p in by_context.json()["parameter"] if p["name"] == "response"))
        srv = answers(next(p["resource"] for p in by_server.json()["parameter"] if p["name"] == "response"))
        if ctx.get("monotherapy") is True:
            assert "monotherapy" not in srv, name
            dropped += 1
        ctx.pop("monotherapy", None)
        srv.pop("monotherapy", None)
        assert srv == ctx, name
    assert dropped >= 3  # the records where the drafts show monotherapy


def _one(scenario_name: str, body_of: Any) -> httpx.Response:
    now = datetime.now(UTC)
    scenario = load_scenario(SCENARIOS / scenario_name)
    (response,), _ = asyncio.run(_call([body_of(scenario.resolved(now))], scenario, now))
    return response


ATTESTATION_ONLY = ("application-consultant", "vod-risk-awareness", "mdt-discussion", "principal-treatment-centre",
                    "unlicensed-policy", "spc-use", "puberty-dosing", "treatment-duration-policy", "no-planned-break")


def test_without_a_signed_form_no_attestation_is_prefilled() -> None:
    response = _one("ino2-eligibility-no-form-no-birth-date-unknown.json", context_input)
    qr = next(p["resource"] for p in response.json()["parameter"] if p["name"] == "response")
    got = answers(qr)
    assert [c for c in ATTESTATION_ONLY if c in got] == []
    assert "child" not in got  # no birth date: the age is unknown, not assumed
    validate_r4(qr)


def test_an_earlier_signed_form_is_carried_over_and_cited_but_not_its_gaps() -> None:
    response = _one("ino2-eligibility-attestation-missing-unknown.json", context_input)
    qr = next(p["resource"] for p in response.json()["parameter"] if p["name"] == "response")
    got = answers(qr)
    assert "mdt-discussion" not in got  # the earlier form left it unanswered
    assert got["application-consultant"] is True
    cited = [p["valueReference"]["reference"] for i in qr["item"] if i["linkId"] == "application-consultant"
             for e in i["answer"][0]["extension"] for p in e["extension"] if p["url"] == "source"]
    assert cited == ["QuestionnaireResponse/ino2-form"]
    validate_r4(qr)


@pytest.mark.parametrize(("body", "field"), [
    ({"resourceType": "Bundle"}, "resourceType"),
    ({"resourceType": "Parameters", "parameter": []}, "parameter.subject"),
    ({"resourceType": "Parameters", "parameter": [
        {"name": "subject", "valueReference": {"reference": "Patient/p1"}}]}, "parameter.context"),
    ({"resourceType": "Parameters", "parameter": [
        {"name": "subject", "valueReference": {"reference": "Patient/p1"}},
        {"name": "context", "part": [{"name": "content", "valueString": "x"}]}]}, "parameter.context"),
])
def test_bad_input_is_a_400_operation_outcome_naming_the_parameter(body: dict[str, Any], field: str) -> None:
    async def go() -> httpx.Response:
        async with in_process() as replayer:
            return await replayer.client.post(PATH, json=body)

    response = asyncio.run(go())
    assert response.status_code == 400
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome" and outcome["issue"][0]["expression"] == [field]


def test_populate_is_authenticated_like_a_hook_call_when_issuers_are_trusted() -> None:
    from _fakes import Signer, call

    from cds_service.api import create_app
    from cds_service.replay.run import make_engine, replay_settings

    signer = Signer("ES384")
    settings = replay_settings(trusted_issuers=(signer.issuer(),), public_base_url="http://testserver")
    app = create_app(settings, engine=make_engine(settings), transport=signer.transport())
    body = context_input(load_scenario(SCENARIOS / "whole-record-ph-negative-cycle-1-day-1.json")
                         .resolved(datetime.now(UTC)))
    assert call(app, "POST", PATH, json=body).status_code == 401
    wrong_aud = signer.token("http://testserver/cds-services/SactOrderSign")
    assert call(app, "POST", PATH, json=body, headers={"Authorization": f"Bearer {wrong_aud}"}).status_code == 401
    token = signer.token("http://testserver" + PATH)
    assert call(app, "POST", PATH, json=body, headers={"Authorization": f"Bearer {token}"}).status_code == 200


def test_a_service_without_the_ino2_questionnaire_has_no_form_routes() -> None:
    from _fakes import app_with, call

    app, _, _ = app_with()
    assert call(app, "POST", PATH, json={}).status_code == 404
    assert call(app, "GET", "/apps/ino2/launch").status_code == 404


def test_an_earlier_attestation_the_record_contradicts_is_not_carried_over() -> None:
    """The earlier form attests relapsed/refractory CD22+ B-ALL, but no B-cell ALL diagnosis is
    recorded: the card says unknown, so the form must not pre-fill 'yes' from that form."""
    import dataclasses

    def without_diagnosis(resolved: ResolvedScenario) -> dict[str, Any]:
        kept = [r for r in resolved.record if r["resourceType"] != "Condition"]
        return context_input(dataclasses.replace(resolved, record=kept))

    response = _one("ino2-eligibility-attestation-missing-unknown.json", without_diagnosis)
    qr = next(p["resource"] for p in response.json()["parameter"] if p["name"] == "response")
    got = answers(qr)
    assert "rr-cd22-bcp-all" not in got
    assert got["application-consultant"] is True  # what the record does not contradict is carried over
