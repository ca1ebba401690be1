"""What a clinician reads on the INO2 app's pages: names, never ids (GUIDE: display names,
never ids, references, codes-as-labels or exception text).

The card link's ``appContext`` names the draft order by reference (``MedicationRequest/…``);
the form names it in words when the EHR lets the app read it, and says "the inotuzumab order
being checked" when the draft lives only in the EHR's ordering session (the usual case, and
the one ``tests/test_ino2_app.py`` runs). The signer is named from their ``fhirUser``
resource. Error pages say what happened and what to do in plain words.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest
from _replay_support import uvicorn_thread
from test_ino2_app import SCENARIO, Rig, assert_readable, launch_through_ehr, rig, visible_text, without_form  # noqa: F401

from cds_service.api import create_app
from cds_service.apps.ino2 import pages
from cds_service.replay import fhir_server
from cds_service.replay.run import make_engine, replay_settings
from cds_service.replay.scenario import load_scenario


@pytest.fixture
def drafts_on_server() -> Iterator[Rig]:
    """An EHR whose FHIR server also holds the draft orders (some EHRs keep drafts there)."""
    resolved = without_form(load_scenario(SCENARIO).resolved(datetime.now(UTC)))
    resolved = dataclasses.replace(resolved, record=[*resolved.record, *resolved.draft_orders])
    settings = replay_settings()
    app = create_app(settings, engine=make_engine(settings))
    with fhir_server.serve(resolved) as ehr, uvicorn_thread(app) as service:
        yield Rig(service, ehr, resolved)


def _open(client: httpx.Client, rig: Rig, orders: list[str]) -> str:  # noqa: F811
    """The card's link as the engine writes it for ``orders``, opened through the EHR; the form page."""
    link = {"url": f"{rig.service}/apps/ino2/launch",
            "appContext": json.dumps({"hookInstance": "h-1", "draftOrders": orders})}
    assert launch_through_ehr(client, rig, link)["callback"].status_code == 303
    form = client.get(f"{rig.service}/apps/ino2/form")
    assert form.status_code == 200, form.text
    return form.text


def test_a_draft_the_ehr_lets_the_app_read_is_named_by_medicine_dose_and_day(drafts_on_server: Rig) -> None:
    today = drafts_on_server.resolved.now.date().isoformat()
    with httpx.Client(timeout=30) as client:
        page = _open(client, drafts_on_server, ["MedicationRequest/draft-ino-c1d1"])
    assert f"Opened from the order check of inotuzumab ozogamicin 0.77 mg, {today}." in page
    assert_readable(page)


def test_drafts_the_ehr_does_not_have_are_described_never_shown_by_id(rig: Rig) -> None:  # noqa: F811
    with httpx.Client(timeout=30) as client:
        page = _open(client, rig, ["MedicationRequest/draft-ino-c1d1", "MedicationRequest/draft-ino-c1d4"])
    assert "Opened from the order check of the 2 inotuzumab orders being checked." in page
    assert "draft-ino" not in page
    assert_readable(page)


def test_the_order_in_words() -> None:
    order = {"resourceType": "MedicationRequest", "id": "x",
             "medicationCodeableConcept": {"coding": [{"system": "http://www.whocc.no/atc", "code": "L01FB01",
                                                       "display": "inotuzumab ozogamicin"}]},
             "dosageInstruction": [{"timing": {"event": ["2026-12-02T09:00:00Z"]}, "doseAndRate": [
                 {"doseQuantity": {"value": 0.77, "unit": "mg"}},
                 {"doseQuantity": {"value": 0.8, "unit": "mg/m2"}}]}]}
    assert pages.order_text(order) == "inotuzumab ozogamicin 0.8 mg/m² (0.77 mg), 2026-12-02"
    by_reference = {"medicationReference": {"reference": "Medication/m1", "display": "Besponsa"},
                    "authoredOn": "2026-11-30T10:00:00Z"}
    assert pages.order_text(by_reference) == "Besponsa, 2026-11-30"
    assert pages.order_text({"medicationCodeableConcept": {"coding": [{"code": "L01FB01"}]}}) == ""  # no code shown
    assert pages._opened_for([""]) == "Opened from the order check of the inotuzumab order being checked."
    assert pages._opened_for(None) == ""  # not opened from a card: nothing to say


def test_the_signer_is_named_and_unnamed_signers_are_not_shown_by_reference() -> None:
    assert pages.person_name({"name": [{"prefix": ["Dr"], "given": ["Adaeze"], "family": "Okafor"}]}) == \
        "Dr Adaeze Okafor"
    assert pages.person_name({"name": [{"text": "Sister M. Jones"}]}) == "Sister M. Jones"
    assert pages.person_name({"id": "p1"}) is None
    questionnaire = {"title": "INO2", "item": [{"linkId": "child", "text": "Child", "type": "boolean"}]}
    response = {"resourceType": "QuestionnaireResponse", "id": "qr-1", "status": "completed",
                "questionnaire": "https://sact-cds.org/fhir/Questionnaire/Ino2Attestation|0.2.1",
                "author": {"reference": "Practitioner/dr-1"}, "authored": "2026-12-02T10:15:00Z",
                "item": [{"linkId": "child", "answer": [{"valueBoolean": True, "extension": [{"url": "e", "extension": [
                    {"url": "line", "valueString": "Age 8 years"},
                    {"url": "source", "valueReference": {"reference": "Patient/p1"}}]}]}]}]}
    printed = pages.print_page(questionnaire, response, patient=None, signer=None)
    assert "Signed by the clinician signed in to the EHR on 2026-12-02 at 10:15 UTC" in printed
    assert "version 0.2.1 of the form" in printed and "Age 8 years" in printed
    assert_readable(printed)
    form = pages.form_page(questionnaire, {}, patient=None, user=None, csrf="c", action="/a")
    assert "I, the clinician signed in to the EHR, confirm" in form


def test_a_record_the_ehr_cannot_serve_is_one_plain_page(rig: Rig) -> None:  # noqa: F811
    link = {"url": f"{rig.service}/apps/ino2/launch", "appContext": "{}"}
    with httpx.Client(timeout=30) as client:
        assert launch_through_ehr(client, rig, link)["callback"].status_code == 303
        rig.ehr.stop()  # the EHR's FHIR server goes away after sign-in
        page = client.get(f"{rig.service}/apps/ino2/form")
    assert page.status_code == 502
    text = " ".join(visible_text(page.text).split())
    assert "Not readable just now: the patient's details, diagnoses, medication orders" in text
    assert "tell the EHR team" in text
    for technical in ("medicationRequests", "{{context", "?patient=", "timed out", "ConnectError"):
        assert technical not in page.text
    assert_readable(page.text)


@pytest.mark.parametrize("query", [{"iss": "https://ehr.example.org/fhir", "launch": "x"}, {"launch": "x"},
                                   {"iss": "http://127.0.0.1:9/fhir"}])
def test_launch_refusals_are_plain_words(rig: Rig, query: dict[str, str]) -> None:  # noqa: F811
    page = httpx.get(f"{rig.service}/apps/ino2/launch", params=query, timeout=30)
    assert page.status_code == 400
    text = visible_text(page.text)
    assert "EHR" in text and "'" not in text.replace("patient's", "").replace("EHR's", "")
    for technical in ("smart_issuers", "iss", "launch context", "fhirServer", "allowlist", "PKCE", "S256"):
        assert technical not in text.split() and technical not in text
    assert_readable(page.text)
