"""The audit store: a row per invocation with its cards' rule codes and uuids, the policy in
force and data-quality notes; feedback linked by card uuid; `cds-service audit` shows and
exports them; a store that is down never fails a hook call."""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from _fakes import app_with, call, calls, hook_request
from click.testing import CliRunner
from sqlalchemy.exc import OperationalError

from cds_service.cli import main
from cds_service.features import SitePolicy
from cds_service.store import AuditStore, CardRecord, FeedbackItem, InvocationRecord
from cds_service.store._store import CSV_COLUMNS

SELECT = "/cds-services/SactOrderSelect"


def test_each_invocation_writes_a_row_with_rule_codes_uuids_and_context() -> None:
    app, _, store = app_with(policy=SitePolicy(azole_window_days=60))
    body = hook_request()
    body["prefetch"]["observations"] = {
        "resourceType": "OperationOutcome",
        "issue": [{"diagnostics": "lab system down"}],
    }
    cards = call(app, "POST", SELECT, json=body).json()["cards"]
    (row,), _ = store.recent()
    assert row["service"] == "SactOrderSelect" and row["hook"] == "order-select"
    assert row["hook_instance"] == body["hookInstance"]
    assert row["patient"] == "Patient/p1" and row["user"] == "Practitioner/u1"
    assert row["knowledge_version"] == "0.1.0" and row["status"] == 200 and row["latency_ms"] > 0
    assert (
        row["rule_codes"]
        == [c["source"]["topic"]["code"] for c in cards]
        == ["monotherapy", "data-unavailable"]
    )
    assert row["card_uuids"] == [c["uuid"] for c in cards]
    assert any("lab system down" in n for n in row["notes"])
    assert row["policy"] == SitePolicy().as_json()  # the engine's policy is the one in force
    assert set(row["timings_ms"]) == {"auth", "read", "parse", "validate", "fetch", "record", "rules"} and row["timings_ms"]["rules"] == 0.1


def test_the_policy_in_force_is_the_settings_policy_when_the_engine_has_none() -> None:
    from _fakes import FakeEngine

    engine = FakeEngine()
    engine.policy = None  # type: ignore[assignment]
    app, _, store = app_with(engine, policy=SitePolicy(azole_window_days=60))
    call(app, "POST", SELECT, json=hook_request())
    assert store.recent()[0][0]["policy"]["azole_window_days"] == 60


def test_a_store_that_is_down_is_logged_and_counted_but_the_hook_still_answers(caplog: Any) -> None:
    class Down(AuditStore):
        def record_invocations(self, records: Sequence[InvocationRecord]) -> list[int]:
            raise OperationalError("INSERT", {}, Exception("disk full"))

    app, _, _ = app_with(store=Down("sqlite://"))
    r, metrics = calls(app, ("POST", SELECT, {"json": hook_request()}), ("GET", "/metrics", {}))
    assert r.status_code == 200 and r.json()["cards"]
    assert 'cds_errors_total{kind="audit"} 1.0' in metrics.text
    assert "audit write failed" in caplog.text


def test_a_store_unreachable_at_start_does_not_stop_the_service(tmp_path: Path) -> None:
    store = AuditStore(f"sqlite:///{tmp_path}/no/such/dir/../../../audit.sqlite")
    assert store.ping()  # parent directories are created for a SQLite file


def test_the_store_works_with_a_sqlite_file_and_keeps_feedback_apart(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'audit.sqlite'}"
    store = AuditStore(url)
    store.record_invocation(
        InvocationRecord(
            "S", "order-sign", "h", 200, 1.0, cards=[CardRecord("u1", "bsa-dose", "warning", "x")]
        )
    )
    assert store.record_feedback("S", [FeedbackItem("u1", "overridden", "2026-11-23T10:00:00Z")]) == 1
    again = AuditStore(url)  # a second process sees the same rows
    invocations, feedback = again.recent()
    assert invocations[0]["rule_codes"] == ["bsa-dose"] and feedback[0]["card_uuid"] == "u1"


def _filled_store(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'audit.sqlite'}"
    app, _, _ = app_with(store=AuditStore(url))
    card = call(app, "POST", SELECT, json=hook_request()).json()["cards"][0]
    call(
        app,
        "POST",
        SELECT + "/feedback",
        json={
            "feedback": [
                {
                    "card": card["uuid"],
                    "outcome": "overridden",
                    "outcomeTimestamp": "2026-11-23T10:00:00Z",
                    "overrideReason": {
                        "reason": {
                            "system": "s",
                            "code": "clinical-judgement",
                            "display": "Clinical judgement",
                        }
                    },
                }
            ]
        },
    )
    return url


def test_cds_service_audit_prints_recent_invocations_and_feedback(tmp_path: Path) -> None:
    url = _filled_store(tmp_path)
    result = CliRunner().invoke(main, ["audit", "--database-url", url, "--format", "table"], env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    assert "Recent invocations (1)" in result.output and "Recent feedback (1)" in result.output
    assert "SactOrderSelect" in result.output and "monotherapy" in result.output
    assert "Clinical judgement" in result.output


def test_cds_service_audit_exports_csv_one_row_per_card_with_its_feedback(tmp_path: Path) -> None:
    url = _filled_store(tmp_path)
    out = tmp_path / "audit.csv"
    result = CliRunner().invoke(main, ["audit", "--database-url", url, "--csv", str(out)])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8"))))
    assert tuple(rows[0]) == CSV_COLUMNS
    (row,) = rows
    assert row["rule_code"] == "monotherapy" and row["feedback_outcome"] == "overridden"
    assert row["override_reason"] == "Clinical judgement" and row["patient"] == "Patient/p1"


def test_cds_service_audit_reads_the_store_from_the_config_file(tmp_path: Path) -> None:
    url = _filled_store(tmp_path)
    config = tmp_path / "sact.toml"
    config.write_text(f'[service]\ndatabase_url = "{url}"\n')
    result = CliRunner().invoke(main, ["audit", "--config", str(config), "--csv", "-"])
    assert result.exit_code == 0 and "monotherapy" in result.output


@pytest.mark.skipif(
    not os.environ.get("CDS_TEST_POSTGRES_URL"), reason="set CDS_TEST_POSTGRES_URL to run against PostgreSQL"
)
def test_the_store_works_on_postgresql_by_url_alone(request: pytest.FixtureRequest) -> None:
    """e.g. CDS_TEST_POSTGRES_URL=postgresql+psycopg://cds@127.0.0.1:5432/audit (needs psycopg)."""
    store = AuditStore(os.environ["CDS_TEST_POSTGRES_URL"])
    request.addfinalizer(store.close)
    assert store.ping()
    app, _, _ = app_with(store=store)
    body = hook_request()
    body["context"]["patientId"] = "p" * 300  # longer than a varchar would take
    card = call(app, "POST", SELECT, json=body).json()["cards"][0]["uuid"]
    item = {
        "card": card,
        "outcome": "overridden",
        "outcomeTimestamp": "2026-11-23T10:00:00Z",
        "overrideReason": {"reason": {"code": "c" * 300, "system": "s" * 600, "display": "d" * 900}},
    }
    for _ in range(2):
        assert call(app, "POST", SELECT + "/feedback", json={"feedback": [item]}).status_code == 200
    invocations, feedback = store.recent(1000)
    assert any(i["patient"] == "Patient/" + "p" * 300 for i in invocations)
    assert sum(f["card_uuid"] == card for f in feedback) == 1


def test_cds_service_audit_table_fits_80_columns(tmp_path: Path) -> None:
    url = _filled_store(tmp_path)
    result = CliRunner().invoke(main, ["audit", "--database-url", url, "--format", "table"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert max(len(line) for line in lines) <= 80, "\n".join(lines)
    text = result.output
    assert "SactOrderSelect" in text and "monotherapy" in text and "Patient/p1" in text
    assert "overridden" in text and "Clinical judgement" in text


def test_cds_service_audit_piped_prints_csv_and_json_on_request(tmp_path: Path) -> None:
    url = _filled_store(tmp_path)
    piped = CliRunner().invoke(main, ["audit", "--database-url", url])  # CliRunner's stdout is not a TTY
    assert piped.exit_code == 0, piped.output
    rows = list(csv.DictReader(io.StringIO(piped.output)))
    assert tuple(rows[0]) == CSV_COLUMNS and rows[0]["rule_code"] == "monotherapy"
    as_json = CliRunner().invoke(main, ["audit", "--database-url", url, "--format", "json"])
    data = json.loads(as_json.output)
    assert data["invocations"][0]["rule_codes"] == ["monotherapy"]
    assert data["feedback"][0]["outcome"] == "overridden"


def test_cds_service_audit_never_creates_a_store_or_a_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for name in [n for n in os.environ if n.startswith("CDS_")]:
        monkeypatch.delenv(name)
    result = CliRunner().invoke(main, ["audit"])
    assert result.exit_code == 1
    assert f"no audit store at {tmp_path / 'data' / 'audit.sqlite'}" in result.output
    assert "CDS_DATA_DIR" in result.output
    assert list(tmp_path.iterdir()) == []


def test_cds_service_audit_reads_the_store_serve_wrote_with_the_same_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """serve and audit resolve data_dir the same way: from the config file's folder."""
    from cds_service.settings import load_settings

    conf_dir = tmp_path / "etc"
    conf_dir.mkdir()
    config = conf_dir / "sact.toml"
    config.write_text('[service]\ndata_dir = "state"\n', encoding="utf-8")
    served = load_settings({}, config_file=str(config))  # what `serve --config` uses
    served.ensure_data_dir()
    app, _, _ = app_with(store=AuditStore(served.database_url))
    call(app, "POST", SELECT, json=hook_request())
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    result = CliRunner().invoke(main, ["audit", "--config", str(config), "--format", "json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["invocations"][0]["service"] == "SactOrderSelect"
    assert list(elsewhere.iterdir()) == []
