"""The INO2 form app end to end over HTTP (httpx, no browser): card -> SMART EHR launch ->
authorize (PKCE S256) -> token -> pre-filled form -> sign -> QuestionnaireResponse on the EHR
-> the next hook call no longer lists the criteria as unknown. Plus the security checks:
state, CSRF, registered issuers, session expiry, tokens never in a page or a log.

The service and the EHR (``replay --serve-fhir``) are real uvicorn servers on loopback; the
record is the Ph-negative whole record without its INO2 form, so the card lists the
attestations as unknown and the record answers the rest.
"""

from __future__ import annotations

import dataclasses
import html
import json
import logging
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from _replay_support import uvicorn_thread
from fhir.resources.R4B.questionnaireresponse import QuestionnaireResponse

from cds_service.api import create_app
from cds_service.apps.ino2.smart import MAX_SESSIONS, LaunchError, Sessions, check_issuer, scopes_for
from cds_service.knowledge._schema import r4_schema, schema_path
from cds_service.knowledge.terms import CARD_EXT_CRITERIA, KNOWLEDGE_VERSION
from cds_service.record import FhirServerPolicy
from cds_service.replay import fhir_server
from cds_service.replay.request import build_request
from cds_service.replay.run import make_engine, replay_settings
from cds_service.replay.scenario import ResolvedScenario, load_scenario
from cds_service.store import AuditStore, FormSessionStore

SCENARIO = Path(__file__).parent / "scenarios" / "whole-record-ph-negative-cycle-1-day-1.json"
SERVICE = "SactOrderSelect"


@dataclasses.dataclass
class Rig:
    service: str
    ehr: fhir_server.FhirServer
    resolved: ResolvedScenario

    @property
    def ehr_state(self) -> Any:
        return self.ehr.server.config.app.state.ehr

    def hook(self) -> list[dict[str, Any]]:
        """The hook call an EHR makes, the record read through the service's fhirServer fallback."""
        body = build_request(self.resolved, None, fhir_server=self.ehr.url).body
        response = httpx.post(f"{self.service}/cds-services/{SERVICE}", json=body, timeout=30)
        assert response.status_code == 200, response.text
        return response.json()["cards"]


def without_form(resolved: ResolvedScenario) -> ResolvedScenario:
    return dataclasses.replace(resolved, record=[r for r in resolved.record
                                                 if r["resourceType"] != "QuestionnaireResponse"])


@pytest.fixture
def rig() -> Iterator[Rig]:
    resolved = without_form(load_scenario(SCENARIO).resolved(datetime.now(UTC)))
    settings = replay_settings()
    app = create_app(settings, engine=make_engine(settings))
    with fhir_server.serve(resolved) as ehr, uvicorn_thread(app) as service:
        yield Rig(service, ehr, resolved)


def eligibility(cards: list[dict[str, Any]]) -> dict[str, Any] | None:
    return next((c for c in cards if c["source"]["topic"]["code"] == "ino2-eligibility"), None)


def launch_through_ehr(client: httpx.Client, rig: Rig, link: dict[str, Any]) -> dict[str, Any]:
    """What the EHR and the browser do from the card's link up to the form; returns each step."""
    steps: dict[str, Any] = {}
    opened = client.get(f"{rig.ehr.url}/ehr/launch", params={"app": link["url"], "appContext": link["appContext"]})
    assert opened.status_code == 302
    launch = client.get(opened.headers["location"])
    assert launch.status_code == 302, launch.text
    steps["launch"] = launch
    steps["authorize_query"] = parse_qs(urlsplit(launch.headers["location"]).query)
    authorized = client.get(launch.headers["location"])
    assert authorized.status_code == 302
    steps["callback_url"] = authorized.headers["location"]
    callback = client.get(authorized.headers["location"])
    steps["callback"] = callback
    return steps


def form_fields(page: str) -> dict[str, str]:
    """What a browser would post: the CSRF token, the page's one-time save token and each checked radio."""
    fields = {"csrf": re.search(r'name="csrf" value="([^"]+)"', page).group(1),  # type: ignore[union-attr]
              "form": re.search(r'name="form" value="([^"]+)"', page).group(1)}  # type: ignore[union-attr]
    for name, value in re.findall(r'name="([^"]+)" value="([^"]*)" aria-describedby="[^"]+" checked', page):
        fields[name] = value
    return fields


#: what a clinician must never read on a page: a FHIR reference, a urn, a canonical url, a Python error
_TECHNICAL = re.compile(r"\b(Patient|Practitioner|MedicationRequest|Observation|Condition|Procedure|QuestionnaireResponse|"
                        r"Questionnaire|ServiceRequest|MedicationAdministration|MedicationStatement)/[A-Za-z0-9\-.]+|"
                        r"urn:uuid:|https?://|Traceback|Error\b|draft-ino")


def visible_text(page: str) -> str:
    """The page as a person reads it: no tags, no hidden fields, no style sheet."""
    body = re.sub(r"<style>.*?</style>|<input type=\"hidden\"[^>]*>", "", page, flags=re.S)
    return html.unescape(re.sub(r"<[^>]+>", " ", body))


def assert_readable(page: str) -> None:
    """Names, never ids, references, urls or exception text (GUIDE: writing for clinicians)."""
    found = _TECHNICAL.findall(visible_text(page)) and _TECHNICAL.search(visible_text(page))
    assert not found, f"technical text on a clinician's page: {found.group(0) if found else ''!r}"


def test_the_whole_loop_card_launch_form_sign_and_the_next_hook_call(rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    card = eligibility(rig.hook())
    assert card is not None
    unknown = {c["code"] for c in card["extension"][CARD_EXT_CRITERIA] if c["status"] == "unknown"}
    assert {"mdt-discussion", "application-consultant", "unlicensed-policy"} <= unknown
    link = next(link for link in card["links"] if link["type"] == "smart")
    assert link["label"] == "Complete the INO2 form" and link["url"] == f"{rig.service}/apps/ino2/launch"
    assert json.loads(link["appContext"])["draftOrders"] == ["MedicationRequest/draft-ino-c1d1"]

    with httpx.Client(timeout=30) as client:
        steps = launch_through_ehr(client, rig, link)
        query = steps["authorize_query"]
        assert query["code_challenge_method"] == ["S256"] and len(query["code_challenge"][0]) == 43
        assert query["aud"] == [rig.ehr.url] and query["response_type"] == ["code"]
        assert query["redirect_uri"] == [f"{rig.service}/apps/ino2/callback"]
        assert set(query["scope"][0].split()) == {
            "launch", "openid", "fhirUser", "patient/QuestionnaireResponse.cu", "patient/Patient.rs",
            "patient/Condition.rs", "patient/MedicationRequest.rs", "patient/MedicationAdministration.rs",
            "patient/MedicationStatement.rs", "patient/Observation.rs", "patient/QuestionnaireResponse.rs",
            "patient/Procedure.rs", "patient/ServiceRequest.rs"}
        cookie = steps["launch"].headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=lax" in cookie and "path=/apps/ino2/" in cookie
        assert steps["callback"].status_code == 303 and steps["callback"].headers["location"] == "/apps/ino2/form"

        form = client.get(f"{rig.service}/apps/ino2/form")
        assert form.status_code == 200 and form.headers["cache-control"] == "no-store"
        page = form.text
        questionnaire = client.get(f"{rig.service}/fhir/Questionnaire/Ino2Attestation").json()
        for item in questionnaire["item"]:  # every item the Questionnaire defines
            assert f'id="item-{item["linkId"]}"' in page, item["linkId"]
        assert '<fieldset class="prefilled" id="item-child">' in page
        assert '<fieldset class="open" id="item-mdt-discussion">' in page
        assert "ECOG performance status" in page  # the evidence of a pre-filled answer
        # the draft is in the EHR's ordering session, not on its FHIR server: named in words, never by id
        assert "Opened from the order check of the inotuzumab order being checked." in page
        assert "I, Dr Adaeze Okafor, confirm these answers" in page  # the fhirUser's name, not its reference
        assert_readable(page)
        fields = form_fields(page)
        assert fields["child"] == "true" and fields["performance-status"] == "true"
        assert fields["mdt-discussion"] == ""  # an attestation: not pre-filled ("Not answered")

        for code in unknown | {"monotherapy"}:
            fields[code] = "true"  # the clinician attests what the record cannot show
        fields["sign"] = "yes"
        saved = client.post(f"{rig.service}/apps/ino2/form", content=urlencode(fields),
                            headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert saved.status_code == 303 and saved.headers["location"] == "/apps/ino2/print"
        printed = client.get(f"{rig.service}/apps/ino2/print")
        assert printed.status_code == 200
        assert "Signed by Dr Adaeze Okafor on " in printed.text and "ECOG performance status" in printed.text
        assert "saved to the patient's record in the EHR (version " in printed.text
        assert_readable(printed.text)

    written = rig.ehr_state.written
    assert len(written) == 1
    qr = written[0]
    first_id = qr["id"]
    assert qr["status"] == "completed" and qr["author"]["reference"].startswith("Practitioner/")
    assert qr["questionnaire"] == f"https://sact-cds.org/fhir/Questionnaire/Ino2Attestation|{KNOWLEDGE_VERSION}"
    assert qr["subject"] == {"reference": f"Patient/{rig.resolved.patient['id']}"} and qr["authored"]
    QuestionnaireResponse.model_validate(qr)
    assert list(r4_schema(schema_path()).iter_errors(qr)) == []

    after = eligibility(rig.hook())
    still = {c["code"] for c in after["extension"][CARD_EXT_CRITERIA]} if after else set()
    assert not (still & unknown), f"still listed after the form was saved: {still & unknown}"

    with httpx.Client(timeout=30, cookies=client.cookies) as again:
        # the saved page posted again (back button, a second click): its result, nothing written
        repeat = again.post(f"{rig.service}/apps/ino2/form", content=urlencode(fields),
                            headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert repeat.status_code == 303 and repeat.headers["location"] == "/apps/ino2/print"
        assert len(rig.ehr_state.written) == 1
        # the form opened again and signed: amends the same response
        fresh = form_fields(again.get(f"{rig.service}/apps/ino2/form").text)
        assert fresh["form"] != fields["form"]
        fields.update(csrf=fresh["csrf"], form=fresh["form"])
        assert again.post(f"{rig.service}/apps/ino2/form", content=urlencode(fields),
                          headers={"Content-Type": "application/x-www-form-urlencoded"}).status_code == 303
        assert "(amended)" in again.get(f"{rig.service}/apps/ino2/print").text
    assert [(w["id"], w["status"]) for w in rig.ehr_state.written] == [(first_id, "completed"), (first_id, "amended")]

    tokens = list(rig.ehr_state.tokens)
    assert tokens
    for secret in tokens:
        assert secret not in page and secret not in printed.text
        assert not [r for r in caplog.records if secret in r.getMessage()]
    patient_name = rig.resolved.patient["name"][0]["family"]
    assert not [r for r in caplog.records if patient_name in r.getMessage()]


def test_a_callback_with_another_state_is_refused_and_the_state_is_single_use(rig: Rig) -> None:
    link = next(lk for lk in eligibility(rig.hook())["links"] if lk["type"] == "smart")  # type: ignore[index]
    with httpx.Client(timeout=30) as client:
        opened = client.get(f"{rig.ehr.url}/ehr/launch", params={"app": link["url"]})
        launch = client.get(opened.headers["location"])
        authorized = client.get(launch.headers["location"])
        good = authorized.headers["location"]
        forged = re.sub(r"state=[^&]+", "state=forged", good)
        assert client.get(forged).status_code == 400
        assert client.get(good).status_code == 400  # the state was used up by the forged attempt
        assert client.get(f"{rig.service}/apps/ino2/form").status_code == 401
    assert rig.ehr_state.tokens == {}  # no code was ever exchanged


def test_a_form_post_without_the_csrf_token_saves_nothing(rig: Rig) -> None:
    link = next(lk for lk in eligibility(rig.hook())["links"] if lk["type"] == "smart")  # type: ignore[index]
    with httpx.Client(timeout=30) as client:
        launch_through_ehr(client, rig, link)
        page = client.get(f"{rig.service}/apps/ino2/form").text
        fields = form_fields(page) | {"sign": "yes", "csrf": "guessed"}
        posted = client.post(f"{rig.service}/apps/ino2/form", content=urlencode(fields),
                             headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert posted.status_code == 403
        unsigned = form_fields(page)
        posted = client.post(f"{rig.service}/apps/ino2/form", content=urlencode(unsigned),
                             headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert posted.status_code == 400 and "tick the confirmation" in posted.text
    assert rig.ehr_state.written == []


def test_a_launch_from_an_unregistered_fhir_server_is_refused(rig: Rig) -> None:
    response = httpx.get(f"{rig.service}/apps/ino2/launch", params={"iss": "https://ehr.example.org/fhir",
                                                                     "launch": "x"}, timeout=30)
    assert response.status_code == 400 and "No EHR is registered with the INO2 form app yet" in response.text
    assert "smart_issuers" not in response.text and "iss" not in visible_text(response.text).split()
    with pytest.raises(LaunchError, match="not registered"):
        check_issuer("https://other.example.org/fhir", ["https://ehr.example.org/fhir"], FhirServerPolicy())
    assert check_issuer("https://ehr.example.org/fhir/", ["https://ehr.example.org/fhir"], FhirServerPolicy()) == \
        "https://ehr.example.org/fhir"
    with pytest.raises(LaunchError, match="not one the service may read from") as refused:
        check_issuer("http://ehr.example.org/fhir", ["http://ehr.example.org/fhir"], FhirServerPolicy())
    assert "https" in str(refused.value.detail)  # the reason, for the log and the EHR team


def test_sessions_expire() -> None:
    now = [1000.0]
    sessions = Sessions(FormSessionStore(AuditStore("sqlite://"), cap=MAX_SESSIONS), 60, clock=lambda: now[0])
    session = sessions.new(iss="https://ehr.example.org/fhir")
    found = sessions.get(session.id)
    assert found is not None and (found.iss, found.csrf) == (session.iss, session.csrf)
    now[0] += 61
    assert sessions.get(session.id) is None and len(sessions) == 0


def test_the_scopes_are_reads_of_what_the_cards_read_and_a_write_of_the_form() -> None:
    assert scopes_for(["Observation", "Patient", "Observation"]) == (
        "launch openid fhirUser patient/Observation.rs patient/Patient.rs patient/QuestionnaireResponse.cu")


def test_the_ehr_refuses_a_token_request_with_the_wrong_pkce_verifier(rig: Rig) -> None:
    link = next(lk for lk in eligibility(rig.hook())["links"] if lk["type"] == "smart")  # type: ignore[index]
    with httpx.Client(timeout=30) as client:
        opened = client.get(f"{rig.ehr.url}/ehr/launch", params={"app": link["url"]})
        launch = client.get(opened.headers["location"])
        q = parse_qs(urlsplit(launch.headers["location"]).query)
        code = parse_qs(urlsplit(client.get(launch.headers["location"]).headers["location"]).query)["code"][0]
        token = client.post(f"{rig.ehr.url}/auth/token", data={
            "grant_type": "authorization_code", "code": code, "redirect_uri": q["redirect_uri"][0],
            "client_id": q["client_id"][0], "code_verifier": "not-the-verifier"})
        assert token.status_code == 400 and token.json()["error"] == "invalid_grant"


def _token(client: httpx.Client, rig: Rig) -> str:
    """A token of the replay EHR, through its own launch/authorize/token steps (no app)."""
    import base64
    import hashlib

    verifier = "v" * 50
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    redirect = "http://127.0.0.1:9/cb"
    launch = parse_qs(urlsplit(client.get(f"{rig.ehr.url}/ehr/launch", params={"app": redirect})
                               .headers["location"]).query)["launch"][0]
    auth = client.get(f"{rig.ehr.url}/auth/authorize", params={
        "response_type": "code", "client_id": "t", "redirect_uri": redirect, "launch": launch, "state": "s",
        "aud": rig.ehr.url, "scope": "launch patient/QuestionnaireResponse.cu", "code_challenge": challenge,
        "code_challenge_method": "S256"})
    code = parse_qs(urlsplit(auth.headers["location"]).query)["code"][0]
    return client.post(f"{rig.ehr.url}/auth/token", data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": redirect, "client_id": "t",
        "code_verifier": verifier}).json()["access_token"]


def test_serve_fhir_keeps_posted_and_put_questionnaire_responses_for_later_searches(rig: Rig) -> None:
    pid = rig.resolved.patient["id"]
    qr = {"resourceType": "QuestionnaireResponse", "status": "completed", "authored": "2026-12-01T10:00:00Z",
          "questionnaire": "https://sact-cds.org/fhir/Questionnaire/Ino2Attestation|0.2.0",
          "subject": {"reference": f"Patient/{pid}"}, "item": [{"linkId": "mdt-discussion",
                                                                "answer": [{"valueBoolean": True}]}]}
    with httpx.Client(timeout=30) as client:
        assert client.post(f"{rig.ehr.url}/QuestionnaireResponse", json=qr).status_code == 401
        bearer = {"Authorization": f"Bearer {_token(client, rig)}"}
        other = qr | {"subject": {"reference": "Patient/someone-else"}}
        assert client.post(f"{rig.ehr.url}/QuestionnaireResponse", json=other, headers=bearer).status_code == 403
        created = client.post(f"{rig.ehr.url}/QuestionnaireResponse", json=qr, headers=bearer)
        assert created.status_code == 201 and "/QuestionnaireResponse/" in created.headers["location"]
        rid = created.json()["id"]
        updated = client.put(f"{rig.ehr.url}/QuestionnaireResponse/{rid}", json=qr | {"id": rid, "status": "amended"},
                             headers=bearer)
        assert updated.status_code == 200 and updated.json()["meta"]["versionId"] == "2"
        found = client.get(f"{rig.ehr.url}/QuestionnaireResponse", params={"patient": pid}).json()
        assert [e["resource"]["status"] for e in found["entry"]] == ["amended"]
        assert client.put(f"{rig.ehr.url}/Patient/{pid}", json={}).status_code == 405


def test_a_refused_token_exchange_shows_sign_in_failed_and_opens_nothing(rig: Rig) -> None:
    link = next(lk for lk in eligibility(rig.hook())["links"] if lk["type"] == "smart")  # type: ignore[index]
    with httpx.Client(timeout=30) as client:
        opened = client.get(f"{rig.ehr.url}/ehr/launch", params={"app": link["url"]})
        launch = client.get(opened.headers["location"])
        authorized = client.get(launch.headers["location"])
        rig.ehr_state.codes.clear()  # the EHR no longer honours the code (expired, revoked)
        callback = client.get(authorized.headers["location"])
        assert callback.status_code == 400 and "Sign-in failed" in callback.text
        assert client.get(f"{rig.service}/apps/ino2/form").status_code == 401


def test_record_text_is_escaped_in_the_form_and_the_print_view() -> None:
    from cds_service.apps.ino2 import pages
    from cds_service.apps.ino2.populate import Fill
    from cds_service.features import Evidence

    evil = "<script>alert(1)</script>"
    patient = {"resourceType": "Patient", "name": [{"text": evil}], "birthDate": evil}
    questionnaire = {"title": "INO2", "item": [{"linkId": "child", "text": "Child", "type": "boolean"}]}
    fills = {"child": Fill("child", True, evil, (Evidence(evil, "Patient/x\"><b>", evil),))}
    page = pages.form_page(questionnaire, fills, patient=patient, user=evil, csrf="c", action="/a",
                           orders=[evil, ""], form_token=evil)
    response = {"resourceType": "QuestionnaireResponse", "author": {"reference": evil}, "authored": evil,
                "item": [{"linkId": "child", "answer": [{"valueBoolean": True, "extension": [
                    {"url": "x", "extension": [{"url": "line", "valueString": evil}]}]}]}]}
    printed = pages.print_page(questionnaire, response, patient=patient, signer=evil, form_url="/f")
    for text in (page, printed):
        assert "<script>" not in text and "&lt;script&gt;" in text and "<b>" not in text


def test_a_session_life_below_one_second_is_refused() -> None:
    from cds_service.settings import Settings, SettingsError

    with pytest.raises(SettingsError, match="smart_session_seconds"):
        Settings(database_url="sqlite://", smart_session_seconds=0)
