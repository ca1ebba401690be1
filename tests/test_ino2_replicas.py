"""The INO2 form app on replicas: two service instances share one database (a SQLite file;
CI's PostgreSQL too, via ``database_url``), as replicas behind a proxy do, and a
clinician's steps land on either. Sessions, the single use of the OAuth ``state``, expiry
and the cap on open sessions hold across them; the database holds no cookie, state or
(with ``smart_session_key``) token in the clear; a database that cannot answer is one
error page, never a traceback.

Both instances are real uvicorn servers on loopback with the same ``public_base_url`` (the
proxy's one public URL, here the first instance's), so the EHR redirects to one callback
URL; the test then sends each request to the instance it wants, as a proxy would.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import httpx
import pytest
from _replay_support import free_port, loopback_socket, uvicorn_thread
from sqlalchemy import create_engine, text
from test_ino2_app import SCENARIO, Rig, eligibility, form_fields, without_form
from test_replicas_jti import _serve, _wait_ready

from cds_service.api import create_app
from cds_service.apps.ino2.smart import MAX_SESSIONS, LaunchError, Sessions
from cds_service.replay import fhir_server
from cds_service.replay.run import make_engine, replay_settings
from cds_service.replay.scenario import load_scenario
from cds_service.store import AuditStore, FormSessionStore, session_key

KEY = "k" * 16 + "replica-test-key-0123456789"  # the same smart_session_key on both replicas
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


class Replicas:
    """Two service instances on one database, an EHR, and the apps behind them."""

    def __init__(self, urls: list[str], apps: list[Any], ehr: fhir_server.FhirServer, resolved: Any) -> None:
        self.urls, self.apps, self.ehr, self.resolved = urls, apps, ehr, resolved
        self.rig = Rig(urls[0], ehr, resolved)

    def on(self, n: int, url: str) -> str:
        """``url`` (under the public base URL) sent to replica ``n`` instead."""
        parts, target = urlsplit(url), urlsplit(self.urls[n])
        return urlunsplit((parts.scheme, target.netloc, parts.path, parts.query, ""))

    def link(self) -> dict[str, Any]:
        card = eligibility(self.rig.hook())
        assert card is not None
        return next(lk for lk in card["links"] if lk["type"] == "smart")

    def to_callback(self, client: httpx.Client, link: dict[str, Any], launch_on: int = 0) -> str:
        """EHR launch -> our launch (on replica ``launch_on``) -> EHR authorize; the callback URL."""
        opened = client.get(f"{self.ehr.url}/ehr/launch", params={"app": link["url"], "appContext": link["appContext"]})
        launch = client.get(self.on(launch_on, opened.headers["location"]))
        assert launch.status_code == 302, launch.text
        authorized = client.get(launch.headers["location"])
        assert authorized.status_code == 302
        return str(authorized.headers["location"])

    def rows(self, sql: str) -> list[Any]:
        with self.apps[0].state.cds.store.engine.connect() as conn:
            return list(conn.execute(text(sql)))


@contextlib.contextmanager
def replicas(database_url: str, **changes: Any) -> Iterator[Replicas]:
    resolved = without_form(load_scenario(SCENARIO).resolved(datetime.now(UTC)))
    first, second = loopback_socket(), loopback_socket()
    public = f"http://127.0.0.1:{first.getsockname()[1]}"
    settings = replay_settings(public_base_url=public, **changes).replace(database_url=database_url)
    engine = make_engine(settings)
    apps = [create_app(settings, engine=engine), create_app(settings, engine=engine)]
    assert apps[0].state.cds.store is not apps[1].state.cds.store  # two stores, one database
    with fhir_server.serve(resolved) as ehr, uvicorn_thread(apps[0], first) as a, uvicorn_thread(apps[1], second) as b:
        yield Replicas([a, b], apps, ehr, resolved)
    for app in apps:
        app.state.cds.store.close()


@pytest.fixture
def pair(database_url: str) -> Iterator[Replicas]:
    _clear(database_url)
    with replicas(database_url, smart_session_key=KEY) as two:
        yield two


def _clear(database_url: str) -> None:
    """A shared PostgreSQL keeps rows between tests: start each test without old sessions or audit rows."""
    store = AuditStore(database_url)
    try:
        store._ensure_tables()
        with store.engine.begin() as conn:
            for table in ("form_session", "card", "invocation"):
                conn.execute(text(f"DELETE FROM {table}"))
    finally:
        store.close()


def _audit_rows(store: AuditStore, hook: str, count: int = 1) -> list[dict[str, Any]]:
    """The audit rows of ``hook``, waiting (briefly) for the background write to commit."""
    deadline = time.monotonic() + 10
    while True:
        rows = [r for r in store.recent(100)[0] if r["hook"] == hook]
        if len(rows) >= count or time.monotonic() > deadline:
            return rows
        time.sleep(0.05)


def test_launch_on_one_replica_then_callback_form_and_save_on_the_other(
        pair: Replicas, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    link = pair.link()
    with httpx.Client(timeout=30) as client:
        callback_url = pair.to_callback(client, link, launch_on=0)
        assert urlsplit(callback_url).netloc == urlsplit(pair.urls[0]).netloc  # the one public URL
        callback = client.get(pair.on(1, callback_url))  # ... served by the other replica
        assert callback.status_code == 303, callback.text
        form = client.get(pair.on(1, pair.urls[0] + "/apps/ino2/form"))
        assert form.status_code == 200 and "ECOG performance status" in form.text
        fields = form_fields(form.text) | {"sign": "yes", "mdt-discussion": "true",
                                           "application-consultant": "true", "unlicensed-policy": "true"}
        saved = client.post(pair.urls[0] + "/apps/ino2/form", content=urlencode(fields), headers=FORM)  # back on A
        assert saved.status_code == 303 and saved.headers["location"] == "/apps/ino2/print"
        printed = client.get(pair.on(1, pair.urls[0] + "/apps/ino2/print"))
        assert printed.status_code == 200 and "Signed by Dr Adaeze Okafor" in printed.text
        cookie = client.cookies["ino2_session"]

    written = pair.ehr.server.config.app.state.ehr.written
    assert [w["status"] for w in written] == ["completed"]
    # what the shared table holds: the hashed session id, no pending state, sealed data
    rows = pair.rows("SELECT key, pending, data FROM form_session")
    assert [(r[0], r[1]) for r in rows] == [(session_key(cookie), None)]
    tokens = list(pair.ehr.server.config.app.state.ehr.tokens)
    assert tokens and rows[0][2].startswith("fernet:")
    for secret in [*tokens, cookie]:
        assert secret not in rows[0][2]
        assert not [r for r in caplog.records if secret in r.getMessage()]
    # one audit row for the save, in the shared store, whichever replica wrote it
    (row,) = _audit_rows(pair.apps[1].state.cds.store, "form-saved")
    assert row["kind"] == "app" and row["service"] == "ino2-form" and row["status"] == 201
    assert row["patient"] == f"Patient/{pair.resolved.patient['id']}" and row["user"].startswith("Practitioner/")
    assert row["notes"] == [f"wrote QuestionnaireResponse/{written[0]['id']} (completed)"]
    assert row["knowledge_version"] == pair.apps[0].state.cds.knowledge_version and row["rule_codes"] == []


def test_a_replayed_callback_is_refused_by_the_other_replica(pair: Replicas) -> None:
    link = pair.link()
    with httpx.Client(timeout=30) as client:
        callback_url = pair.to_callback(client, link)
        assert client.get(pair.on(0, callback_url)).status_code == 303
        replayed = client.get(pair.on(1, callback_url))  # same cookie, same state, same code
        assert replayed.status_code == 400 and "already used" in replayed.text
        assert client.get(pair.on(1, pair.urls[0] + "/apps/ino2/form")).status_code == 200  # still signed in
    assert len(pair.ehr.server.config.app.state.ehr.tokens) == 1  # the code was exchanged once


@pytest.fixture
def stores(database_url: str) -> Iterator[list[AuditStore]]:
    """Eight stores on one database, as eight replicas hold them, and no sessions yet."""
    _clear(database_url)
    opened = [AuditStore(database_url) for _ in range(8)]
    yield opened
    for store in opened:
        store.close()


def _sessions(store: AuditStore, ttl: int = 60, *, cap: int = MAX_SESSIONS, now: list[float] | None = None) -> Sessions:
    """The app's sessions over ``store`` (on the clock ``now[0]`` when given)."""
    clock = (lambda: now[0]) if now else time.time
    return Sessions(FormSessionStore(store, cap=cap), ttl, key=KEY, clock=clock)


def test_racing_callbacks_on_many_replicas_use_the_state_once(stores: list[AuditStore]) -> None:
    """Eight replicas claim the same session's state at once."""
    sessions = [_sessions(s, 600) for s in stores]
    opened = sessions[0].new(iss="https://ehr.example.org/fhir", verifier="the-verifier")
    barrier = threading.Barrier(len(sessions))

    def claim(s: Sessions) -> Any:
        barrier.wait()
        return s.claim(opened.id)

    with ThreadPoolExecutor(len(sessions)) as pool:
        won = [c for c in pool.map(claim, sessions) if c is not None]
    assert len(won) == 1
    session, expected = won[0]
    assert session.verifier == "the-verifier" and expected == session_key(str(opened.state))
    assert all(s.claim(opened.id) is None for s in sessions)


def test_sessions_expire_and_are_pruned_on_every_replica(stores: list[AuditStore]) -> None:
    now = [1_000_000.0]
    a, b = _sessions(stores[0], now=now), _sessions(stores[1], now=now)
    old = a.new(iss="https://ehr.example.org/fhir")
    assert b.get(old.id) is not None and len(b) == 1
    now[0] += 61
    assert b.get(old.id) is None and b.claim(old.id) is None and len(a) == 0
    assert not b.update(old, access_token="late")  # an expired session is not brought back
    fresh = b.new()  # every launch deletes what has expired
    with stores[0].engine.connect() as conn:
        count = conn.execute(text("SELECT count(*) FROM form_session")).scalar_one()
    assert count == 1 and a.get(fresh.id) is not None


def test_two_steps_of_one_session_on_two_replicas_keep_both_writes(stores: list[AuditStore]) -> None:
    """A form save on one replica and a form reload on the other, each from its own read:
    the later write is re-applied to the earlier one's result instead of undoing it."""
    a, b = _sessions(stores[0], 600), _sessions(stores[1], 600)
    sid = a.new(iss="https://ehr.example.org/fhir").id
    on_a, on_b = a.get(sid), b.get(sid)
    assert on_a is not None and on_b is not None
    assert a.update(on_a, saved={"resourceType": "QuestionnaireResponse", "id": "qr-1"})
    assert b.update(on_b, patient_resource={"resourceType": "Patient", "id": "p"})  # from the stale read
    final = a.get(sid)
    assert final is not None and final.saved == {"resourceType": "QuestionnaireResponse", "id": "qr-1"}
    assert final.patient_resource == {"resourceType": "Patient", "id": "p"} and final.version == 2


def test_the_cap_on_open_sessions_counts_every_replica(stores: list[AuditStore]) -> None:
    now = [2_000_000.0]
    a, b = _sessions(stores[0], cap=3, now=now), _sessions(stores[1], cap=3, now=now)
    a.new(), b.new(), a.new()
    with pytest.raises(LaunchError, match="Too many open form sessions"):
        b.new()
    now[0] += 61  # they expire: room again
    assert b.new() is not None


def test_a_session_sealed_with_another_key_unsealed_or_moved_reads_as_no_session(caplog: pytest.LogCaptureFixture) -> None:
    store = AuditStore("sqlite://")
    sealed = Sessions(FormSessionStore(store, cap=MAX_SESSIONS), 60, key=KEY).new(access_token="secret-token")
    with store.engine.connect() as conn:
        raw = conn.execute(text("SELECT data FROM form_session")).scalar_one()
    assert "secret-token" not in raw and raw.startswith("fernet:")
    for other in (Sessions(FormSessionStore(store, cap=MAX_SESSIONS), 60, key="x" * 40),
                  Sessions(FormSessionStore(store, cap=MAX_SESSIONS), 60)):
        assert other.get(sealed.id) is None
    assert "is smart_session_key the same on every replica?" in caplog.text
    keyed = Sessions(FormSessionStore(store, cap=MAX_SESSIONS), 60, key=KEY)
    assert keyed.get(sealed.id).access_token == "secret-token"
    plain = Sessions(FormSessionStore(store, cap=MAX_SESSIONS), 60).new(access_token="plain-token")
    assert Sessions(FormSessionStore(store, cap=MAX_SESSIONS), 60).get(plain.id).access_token == "plain-token"
    assert keyed.get(plain.id) is None  # with a key, a row written without it is not let in
    other = keyed.new(access_token="attacker-token")
    with store.engine.begin() as conn:  # the victim's sealed data copied into the attacker's row
        conn.execute(text("UPDATE form_session SET data = (SELECT data FROM form_session WHERE key = :v) "
                          "WHERE key = :a"), {"v": session_key(sealed.id), "a": session_key(other.id)})
    assert keyed.get(other.id) is None and keyed.get(sealed.id).access_token == "secret-token"


def test_a_database_that_cannot_answer_is_one_error_page(tmp_path: Any, caplog: pytest.LogCaptureFixture) -> None:
    with replicas(f"sqlite:///{tmp_path / 'audit.sqlite'}") as two:
        link = two.link()
        with httpx.Client(timeout=30) as client:
            callback_url = two.to_callback(client, link)
            for app in two.apps:  # the database goes away under both replicas
                app.state.cds.store.engine.dispose()
                app.state.cds.store.engine = create_engine(f"sqlite:///{tmp_path / 'gone' / 'audit.sqlite'}")
            for url, method in ((two.on(1, callback_url), "GET"), (two.urls[0] + "/apps/ino2/form", "GET"),
                                (two.urls[1] + "/apps/ino2/form", "POST"), (two.urls[0] + "/apps/ino2/print", "GET")):
                page = client.request(method, url, content=b"csrf=x&sign=yes", headers=FORM)
                assert page.status_code == 503, (url, page.text)
                assert "cannot reach its database" in page.text and "Traceback" not in page.text
            opened = client.get(f"{two.ehr.url}/ehr/launch", params={"app": link["url"]})
            launch = client.get(opened.headers["location"])
            assert launch.status_code == 503 and "nothing was read" in launch.text
    assert two.ehr.server.config.app.state.ehr.tokens == {}  # the code was never exchanged
    assert "INO2 form sessions unavailable (OperationalError)" in caplog.text


def test_the_session_table_is_created_by_the_store(tmp_path: Any) -> None:
    store = AuditStore(f"sqlite:///{tmp_path / 'a.sqlite'}")
    try:
        with store.engine.connect() as conn:
            columns = [r[1] for r in conn.execute(text("PRAGMA table_info(form_session)"))]
        assert columns == ["key", "expires_at", "pending", "data", "version"]
    finally:
        store.close()



def test_the_session_key_is_checked_and_never_shown(database_url: str, caplog: pytest.LogCaptureFixture) -> None:
    from cds_service.settings import Settings, SettingsError

    with pytest.raises(SettingsError, match="smart_session_key must be at least 32 characters"):
        Settings(database_url="sqlite://", smart_session_key="short")
    assert KEY not in repr(Settings(database_url="sqlite://", smart_session_key=KEY))
    settings = replay_settings().replace(database_url=database_url)
    app = create_app(settings, engine=make_engine(settings))
    app.state.cds.store.close()
    warned = "smart_session_key is not set" in caplog.text
    assert warned == database_url.startswith("postgresql")  # a shared database holds the tokens in the clear


def test_two_serve_processes_share_the_form_sessions(database_url: str, tmp_path: Any) -> None:
    """The same flow across two `cds-service serve` processes (not two apps in one process):
    the launch on one, the callback, the form and the save on the other."""
    _clear(database_url)
    ports = [free_port(), free_port()]
    urls = [f"http://127.0.0.1:{p}" for p in ports]
    config = tmp_path / "sact.toml"
    config.write_text(f'[service]\ndatabase_url = "{database_url}"\npublic_base_url = "{urls[0]}"\n'
                      f'log_level = "WARNING"\nfhir_server_allowlist = ["http://127.0.0.1"]\n'
                      f'smart_session_key = "{KEY}"\n')
    resolved = without_form(load_scenario(SCENARIO).resolved(datetime.now(UTC)))
    procs = [(_serve(config, port, tmp_path / f"serve-{n}.log"), tmp_path / f"serve-{n}.log")
             for n, port in enumerate(ports)]
    try:
        for url, (proc, log) in zip(urls, procs, strict=True):
            _wait_ready(url, proc, log)
        with fhir_server.serve(resolved) as ehr, httpx.Client(timeout=30) as client:
            two = Replicas(urls, [], ehr, resolved)
            callback_url = two.to_callback(client, {"url": urls[0] + "/apps/ino2/launch", "appContext": "{}"})
            assert client.get(two.on(1, callback_url)).status_code == 303
            form = client.get(urls[1] + "/apps/ino2/form")
            assert form.status_code == 200 and "ECOG performance status" in form.text
            fields = form_fields(form.text) | {"sign": "yes"}
            assert client.post(urls[1] + "/apps/ino2/form", content=urlencode(fields), headers=FORM).status_code == 303
            assert client.get(two.on(0, callback_url)).status_code == 400  # and the state is used up for A too
            assert [w["status"] for w in ehr.server.config.app.state.ehr.written] == ["completed"]
    finally:
        for proc, _ in procs:
            proc.terminate()
        for proc, _ in procs:
            proc.wait(10)
