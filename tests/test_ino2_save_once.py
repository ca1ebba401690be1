"""One save per rendered INO2 form (``apps/ino2/once.py``), against the replay EHR over HTTP.

A double click on "Sign and save" sends the same page twice; two tabs sign at once; the EHR
refuses a write and the clinician tries again; the two posts land on two replicas sharing
one database (SQLite file, and CI's PostgreSQL through ``database_url``). In each case the
EHR receives at most one new QuestionnaireResponse per rendered page, the second post gets
the saved result, and a refused write leaves the page savable with the answers kept.
The EHR's writes are slowed (``write_delay``) so that the posts really overlap.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from _replay_support import uvicorn_thread
from test_ino2_app import (  # noqa: F401
    SCENARIO,
    Rig,
    assert_readable,
    eligibility,
    form_fields,
    launch_through_ehr,
    rig,
    without_form,
)
from test_ino2_replicas import FORM, Replicas, _clear, replicas

from cds_service.api import create_app
from cds_service.apps.ino2 import once
from cds_service.apps.ino2.smart import MAX_SESSIONS, Sessions
from cds_service.replay import fhir_server
from cds_service.replay.run import make_engine, replay_settings
from cds_service.replay.scenario import load_scenario
from cds_service.store import AuditStore, FormSessionStore

ANSWERS = {"sign": "yes", "mdt-discussion": "true", "application-consultant": "true", "unlicensed-policy": "true",
           "monotherapy": "true"}


def _signed_in(client: httpx.Client, rig: Rig) -> str:  # noqa: F811
    link = next(lk for lk in eligibility(rig.hook())["links"] if lk["type"] == "smart")  # type: ignore[index]
    assert launch_through_ehr(client, rig, link)["callback"].status_code == 303
    return f"{rig.service}/apps/ino2/form"


def _post_together(posts: list[tuple[httpx.Client, str, dict[str, str]]]) -> list[httpx.Response]:
    """Send the posts at the same instant (a barrier), each on its own thread."""
    barrier = threading.Barrier(len(posts))

    def send(post: tuple[httpx.Client, str, dict[str, str]]) -> httpx.Response:
        client, url, fields = post
        barrier.wait()
        return client.post(url, content=urlencode(fields), headers=FORM)

    with ThreadPoolExecutor(len(posts)) as pool:
        return list(pool.map(send, posts))


def test_a_double_click_on_sign_and_save_writes_one_questionnaire_response(rig: Rig) -> None:  # noqa: F811
    rig.ehr_state.write_delay = 0.5  # the first write is still running when the second click arrives
    with httpx.Client(timeout=30) as client:
        url = _signed_in(client, rig)
        fields = form_fields(client.get(url).text) | ANSWERS
        first, second = _post_together([(client, url, fields), (client, url, fields)])
        assert (first.status_code, second.status_code) == (303, 303)
        assert first.headers["location"] == second.headers["location"] == "/apps/ino2/print"
        printed = client.get(f"{rig.service}/apps/ino2/print")
        assert printed.status_code == 200 and "Discussed at a paediatric MDT" in printed.text
        assert_readable(printed.text)
        later = client.post(url, content=urlencode(fields), headers=FORM)  # the back button, a third click
        assert later.status_code == 303 and later.headers["location"] == "/apps/ino2/print"
    assert [w["status"] for w in rig.ehr_state.written] == ["completed"]


def test_two_tabs_signing_at_once_make_one_response_and_an_amendment(rig: Rig) -> None:  # noqa: F811
    """Two pages rendered in one session (two tabs), signed at the same instant: the saves
    take turns, so the second amends the first's response instead of creating another."""
    rig.ehr_state.write_delay = 0.3
    with httpx.Client(timeout=30) as client:
        url = _signed_in(client, rig)
        tab_a = form_fields(client.get(url).text) | ANSWERS
        tab_b = form_fields(client.get(url).text) | ANSWERS
        assert tab_a["form"] != tab_b["form"]
        results = _post_together([(client, url, tab_a), (client, url, tab_b)])
        assert [r.status_code for r in results] == [303, 303]
    written = rig.ehr_state.written
    assert len({w["id"] for w in written}) == 1, [(w["id"], w["status"], w["meta"]) for w in written]
    assert sorted(w["status"] for w in written) == ["amended", "completed"]


def test_a_refused_write_keeps_the_answers_and_the_retry_writes_once(rig: Rig) -> None:  # noqa: F811
    rig.ehr_state.refuse_writes = 1
    with httpx.Client(timeout=30) as client:
        url = _signed_in(client, rig)
        fields = form_fields(client.get(url).text) | ANSWERS
        refused = client.post(url, content=urlencode(fields), headers=FORM)
        assert refused.status_code == 502
        assert "the EHR did not accept the form (error 500). Your answers are kept below" in refused.text
        assert_readable(refused.text)
        again = form_fields(refused.text)
        assert again["form"] == fields["form"]  # the same page, still savable
        assert again["mdt-discussion"] == "true" and again["unlicensed-policy"] == "true"  # the answers kept
        retried = client.post(url, content=urlencode(again | {"sign": "yes"}), headers=FORM)
        assert retried.status_code == 303 and retried.headers["location"] == "/apps/ino2/print"
        assert client.post(url, content=urlencode(again | {"sign": "yes"}), headers=FORM).status_code == 303
    assert [w["status"] for w in rig.ehr_state.written] == ["completed"]


def test_a_page_this_session_never_rendered_saves_nothing_and_keeps_the_answers(rig: Rig) -> None:  # noqa: F811
    with httpx.Client(timeout=30) as client:
        url = _signed_in(client, rig)
        fields = form_fields(client.get(url).text) | ANSWERS | {"form": "not-a-page-of-this-session"}
        stale = client.post(url, content=urlencode(fields), headers=FORM)
        assert stale.status_code == 409 and "this page is out of date" in stale.text
        assert form_fields(stale.text)["mdt-discussion"] == "true"
        assert client.post(url, content=urlencode(form_fields(stale.text) | {"sign": "yes"}),
                           headers=FORM).status_code == 303
    assert [w["status"] for w in rig.ehr_state.written] == ["completed"]


@pytest.fixture
def impatient() -> Iterator[Rig]:
    """The service waits 1 s for the EHR (``fetch_timeout_seconds``)."""
    resolved = without_form(load_scenario(SCENARIO).resolved(datetime.now(UTC)))
    settings = replay_settings(fetch_timeout_seconds=1.0)
    app = create_app(settings, engine=make_engine(settings))
    with fhir_server.serve(resolved) as ehr, uvicorn_thread(app) as service:
        yield Rig(service, ehr, resolved)


def test_a_save_whose_answer_was_lost_is_not_stored_twice_on_retry(impatient: Rig) -> None:
    """The EHR stores the form but answers after the service stopped waiting: the page says
    not saved and keeps the answers; the retry is a conditional create on the page's
    identifier, so the EHR returns what it stored and no second response exists."""
    ehr = impatient.ehr_state
    ehr.write_delay = 1.5
    with httpx.Client(timeout=30) as client:
        url = _signed_in(client, impatient)
        fields = form_fields(client.get(url).text) | ANSWERS
        lost = client.post(url, content=urlencode(fields), headers=FORM)
        assert lost.status_code == 502 and "the EHR did not answer in time" in lost.text
        deadline = time.monotonic() + 10
        while not ehr.written and time.monotonic() < deadline:  # ... yet the EHR stored it
            time.sleep(0.05)
        assert len(ehr.written) == 1
        ehr.write_delay = 0
        retried = client.post(url, content=urlencode(form_fields(lost.text) | {"sign": "yes"}), headers=FORM)
        assert retried.status_code == 303 and retried.headers["location"] == "/apps/ino2/print"
        assert "Signed by Dr Adaeze Okafor" in client.get(f"{impatient.service}/apps/ino2/print").text
    (stored,) = ehr.written
    assert stored["identifier"]["system"] == "urn:ietf:rfc:3986" and stored["identifier"]["value"].startswith("urn:uuid:")
    assert fields["form"] not in stored["identifier"]["value"]  # the page token itself is not written
    found = httpx.get(f"{impatient.ehr.url}/QuestionnaireResponse",
                      params={"patient": impatient.resolved.patient["id"]}).json()
    assert len(found.get("entry") or []) == 1


@pytest.fixture
def pair(database_url: str) -> Iterator[Replicas]:
    _clear(database_url)
    with replicas(database_url) as two:
        yield two


def test_one_page_posted_to_two_replicas_at_once_is_written_once(pair: Replicas) -> None:
    """The double click's two posts land on the two replicas (one database between them)."""
    ehr = pair.ehr.server.config.app.state.ehr
    ehr.write_delay = 0.5
    with httpx.Client(timeout=30) as client:
        callback_url = pair.to_callback(client, pair.link())
        assert client.get(pair.on(1, callback_url)).status_code == 303
        fields = form_fields(client.get(pair.urls[0] + "/apps/ino2/form").text) | ANSWERS
        results = _post_together([(client, pair.urls[0] + "/apps/ino2/form", fields),
                                  (client, pair.urls[1] + "/apps/ino2/form", fields)])
        assert [r.status_code for r in results] == [303, 303]
        assert all(r.headers["location"] == "/apps/ino2/print" for r in results)
        for url in pair.urls:
            assert "Signed by Dr Adaeze Okafor" in client.get(url + "/apps/ino2/print").text
    assert [w["status"] for w in ehr.written] == ["completed"]


def test_racing_claims_of_one_page_on_many_replicas_let_one_write(database_url: str) -> None:
    """Eight replicas' sessions claim one page's token at the same instant: one wins, the
    rest see a save in progress; once it is done every later claim sees it saved."""
    _clear(database_url)
    stores = [AuditStore(database_url) for _ in range(8)]
    try:
        sessions = [Sessions(FormSessionStore(s, cap=MAX_SESSIONS), 600) for s in stores]
        opened = sessions[0].new(iss="https://ehr.example.org/fhir")
        _, token = sessions[0].change(opened, once.issue)
        barrier = threading.Barrier(len(sessions))

        def claim(s: Sessions) -> Any:
            mine = s.get(opened.id)
            barrier.wait()
            return s.change(mine, once.claim(token, 1000.0, stale_after=60))[1]

        with ThreadPoolExecutor(len(sessions)) as pool:
            outcomes = list(pool.map(claim, sessions))
        assert sorted(outcomes) == ["busy"] * 7 + ["claimed"]
        winner = sessions[3].get(opened.id)
        sessions[3].change(winner, once.finished(token, {"resourceType": "QuestionnaireResponse", "id": "qr-1"}))
        assert {s.change(s.get(opened.id), once.claim(token, 1001.0, 60))[1] for s in sessions} == {"saved"}
        assert sessions[5].get(opened.id).saved == {"resourceType": "QuestionnaireResponse", "id": "qr-1"}
    finally:
        for store in stores:
            store.close()


def test_a_save_whose_process_died_holds_the_session_only_until_it_is_stale() -> None:
    sessions = Sessions(FormSessionStore(AuditStore("sqlite://"), cap=MAX_SESSIONS), 600)
    s = sessions.new(iss="https://ehr.example.org/fhir")
    _, first = sessions.change(s, once.issue)
    _, second = sessions.change(s, once.issue)
    assert sessions.change(s, once.claim(first, 1000.0, 35))[1] == "claimed"  # ... and the process dies
    assert sessions.change(s, once.claim(second, 1010.0, 35))[1] == "busy"
    assert sessions.change(s, once.claim(second, 1036.0, 35))[1] == "claimed"
    sessions.change(s, once.finished(first, None))  # the dead save's late release leaves the new one held
    assert s.saving and s.saving["form"] == second
