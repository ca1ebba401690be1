"""The INO2 form app's audit rows: each ``$populate`` call and each form post of a signed-in
session leaves exactly one row in the audit store, told apart from hook calls (service
``ino2-form``, hook ``populate`` / ``form-saved``, kind ``app``), with who, what, the status,
the QuestionnaireResponse written and the knowledge version, never a token or an answer.
A store that refuses the row never fails the clinician's action: it is logged and counted,
as a hook call's audit is.

The service is a real uvicorn server on a SQLite file (the store ``cds-service audit``
reads), the EHR a ``replay --serve-fhir`` endpoint with the Ph-negative whole record.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from click.testing import CliRunner
from sqlalchemy.exc import OperationalError
from test_ino2_populate import PATH, context_input, server_input
from test_ino2_replicas import FORM, Replicas, _audit_rows, replicas

from cds_service.commands.audit import audit
from cds_service.knowledge.terms import INO2_QUESTIONNAIRE


@pytest.fixture
def one(tmp_path: Path) -> Iterator[Replicas]:
    with replicas(f"sqlite:///{tmp_path / 'audit.sqlite'}") as two:
        yield two


def _all_text(two: Replicas) -> str:
    """Every audit column of every row, as text (to look for what must not be there)."""
    return " ".join(str(r) for table in ("invocation", "card") for r in two.rows(f"SELECT * FROM {table}"))


def _sign_in(client: httpx.Client, two: Replicas) -> dict[str, str]:
    from test_ino2_app import form_fields

    assert client.get(two.to_callback(client, two.link())).status_code == 303
    page = client.get(two.urls[0] + "/apps/ino2/form").text
    return form_fields(page) | {"mdt-discussion": "true", "application-consultant": "true",
                                "unlicensed-policy": "true"}


def test_a_populate_call_leaves_one_audit_row(one: Replicas) -> None:
    store = one.apps[0].state.cds.store
    response = httpx.post(one.urls[0] + PATH, json=context_input(one.resolved), timeout=30)
    assert response.status_code == 200
    (row,) = _audit_rows(store, "populate")
    answered = [i for i in response.json()["parameter"][0]["resource"]["item"] if i.get("answer")]
    questionnaire = one.apps[0].state.cds.engine.kb.resources[INO2_QUESTIONNAIRE]
    assert row["kind"] == "app" and row["service"] == "ino2-form" and row["status"] == 200
    assert row["patient"] == f"Patient/{one.resolved.patient['id']}" and row["user"] is None
    assert row["knowledge_version"] == one.apps[0].state.cds.knowledge_version == questionnaire["version"]
    assert row["notes"][0] == f"pre-filled {len(answered)} of {len(questionnaire['item'])} items from the record sent"
    assert row["rule_codes"] == [] and row["policy"] == one.apps[0].state.cds.policy_json
    assert len([r for r in store.recent(100)[0] if r["kind"] == "app"]) == 1


def test_a_populate_from_the_fhir_server_keeps_no_token_and_a_refusal_is_audited_too(one: Replicas) -> None:
    store = one.apps[0].state.cds.store
    assert httpx.post(one.urls[0] + PATH, json=server_input(one.resolved, one.ehr.url), timeout=30).status_code == 200
    (row,) = _audit_rows(store, "populate")
    assert row["notes"][0].endswith("items from the FHIR server")
    unreachable = server_input(one.resolved, "http://127.0.0.1:9")  # nothing listens: the record cannot be read
    assert httpx.post(one.urls[0] + PATH, json=unreachable, timeout=30).status_code == 412
    rows = _audit_rows(store, "populate", 2)
    assert [r["status"] for r in rows] == [412, 200]
    assert rows[0]["notes"][0].startswith("412: required data could not be obtained")
    assert "opaque-test-token" not in _all_text(one)


def test_a_form_save_leaves_one_audit_row_and_a_refused_post_its_own(one: Replicas) -> None:
    store = one.apps[0].state.cds.store
    with httpx.Client(timeout=30) as client:
        fields = _sign_in(client, one)
        forged = client.post(one.urls[0] + "/apps/ino2/form", content=urlencode(fields | {"csrf": "guessed"}),
                             headers=FORM)
        assert forged.status_code == 403
        saved = client.post(one.urls[0] + "/apps/ino2/form", content=urlencode(fields | {"sign": "yes"}),
                            headers=FORM)
        assert saved.status_code == 303
    written = one.ehr.server.config.app.state.ehr.written
    rows = _audit_rows(store, "form-saved", 2)
    assert [(r["status"], r["notes"]) for r in rows] == [
        (201, [f"wrote QuestionnaireResponse/{written[0]['id']} (completed)"]), (403, ["not saved: CSRF check failed"])]
    assert rows[0]["hook_instance"] == rows[1]["hook_instance"]  # one form session: one instance id
    assert rows[0]["user"].startswith("Practitioner/") and rows[0]["patient"] == written[0]["subject"]["reference"]
    everything = _all_text(one)
    for secret in one.ehr.server.config.app.state.ehr.tokens:
        assert secret not in everything
    assert "true" not in " ".join(rows[0]["notes"])  # what was answered stays in the EHR


def _failing(store: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(records: Any) -> list[int]:
        raise OperationalError("INSERT INTO invocation", {}, Exception("disk full"))

    monkeypatch.setattr(store, "record_invocations", refuse)


def _audit_errors(url: str) -> float:
    metrics = httpx.get(url + "/metrics", timeout=30).text
    line = next((m for m in metrics.splitlines() if m.startswith('cds_errors_total{kind="audit"}')), None)
    return float(line.split()[-1]) if line else 0.0


def test_a_failing_audit_store_never_fails_a_populate_or_a_save(
        one: Replicas, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    import time

    caplog.set_level(logging.ERROR)
    with httpx.Client(timeout=30) as client:
        fields = _sign_in(client, one)  # the sessions work; only the audit rows are refused
        _failing(one.apps[0].state.cds.store, monkeypatch)
        assert client.post(one.urls[0] + PATH, json=context_input(one.resolved)).status_code == 200
        saved = client.post(one.urls[0] + "/apps/ino2/form", content=urlencode(fields | {"sign": "yes"}),
                            headers=FORM)
        assert saved.status_code == 303 and client.get(one.urls[0] + "/apps/ino2/print").status_code == 200
    assert [w["status"] for w in one.ehr.server.config.app.state.ehr.written] == ["completed"]
    deadline = time.monotonic() + 10
    while _audit_errors(one.urls[0]) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _audit_errors(one.urls[0]) == 2
    assert caplog.text.count("audit write failed (OperationalError)") == 2
    assert one.rows("SELECT hook FROM invocation WHERE service_id = 'ino2-form'") == []


def test_cds_service_audit_tells_app_rows_from_hook_calls(one: Replicas, tmp_path: Path) -> None:
    one.rig.hook()
    assert httpx.post(one.urls[0] + PATH, json=context_input(one.resolved), timeout=30).status_code == 200
    _audit_rows(one.apps[0].state.cds.store, "populate")
    url = f"sqlite:///{tmp_path / 'audit.sqlite'}"
    runner = CliRunner()
    shown = runner.invoke(audit, ["--database-url", url, "--format", "json"])
    assert shown.exit_code == 0, shown.output
    kinds = {(i["kind"], i["service"], i["hook"]) for i in json.loads(shown.output)["invocations"]}
    assert kinds == {("hook", "SactOrderSelect", "order-select"), ("app", "ino2-form", "populate")}
    table = runner.invoke(audit, ["--database-url", url, "--format", "table"], env={"COLUMNS": "160"})
    assert table.exit_code == 0 and "ino2-form populate" in table.output and "pre-filled" in table.output
    csv = runner.invoke(audit, ["--database-url", url, "--format", "csv"]).output.splitlines()
    assert any(",ino2-form,populate," in line for line in csv)
    assert one.rows("SELECT count(*) FROM invocation")[0][0] == 2
