"""No value from a client can lose another request's audit row (issue 12 point 5).

Each test runs on a SQLite file and, when ``CDS_TEST_POSTGRES_URL`` is set (``.ci/run``
starts one with ``.ci/postgres``), on PostgreSQL, where a NUL character in one request's
``patientId`` used to fail the group commit and lose every other row of the batch.
"""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import httpx
import pytest
from _fakes import app_with, hook_request

from cds_service.api.audit_writer import AuditWriter
from cds_service.store import AuditStore, CardRecord, InvocationRecord

SELECT = "/cds-services/SactOrderSelect"
NASTY = "p1\x00\ud800end"  # NUL (PostgreSQL refuses it) and a lone surrogate (not UTF-8)
NUL = "p1\x00end"  # what JSON over HTTP can carry (a lone surrogate escape is refused as bad JSON)


@pytest.fixture
def store(database_url: str) -> Iterator[AuditStore]:
    s = AuditStore(database_url)
    yield s
    s.close()


class GatedStore(AuditStore):
    """The first commit waits until released, so everything submitted meanwhile is one batch."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.batches: list[int] = []
        self.entered, self.release = threading.Event(), threading.Event()

    def record_invocations(self, records: Sequence[InvocationRecord]) -> list[int]:
        if not self.entered.is_set():
            self.entered.set()
            self.release.wait(5)
        self.batches.append(len(records))
        return super().record_invocations(records)


def _record(tag: str, n: int, **changes: Any) -> InvocationRecord:
    fields: dict[str, Any] = {
        "service_id": "SactOrderSign",
        "hook": "order-sign",
        "hook_instance": f"{tag}-{n}",
        "status_code": 200,
        "latency_ms": 1.0,
        "patient_ref": f"Patient/p{n}",
        "cards": [CardRecord(f"{tag}-card-{n}", "bsa-dose", "warning", "summary")],
    }
    fields.update(changes)
    return InvocationRecord(**fields)


def _rows(store: AuditStore, tag: str) -> dict[str, dict[str, Any]]:
    invocations, _ = store.recent(10_000)
    return {i["hook_instance"]: i for i in invocations if i["hook_instance"].startswith(tag)}


def test_a_nul_or_lone_surrogate_in_one_row_does_not_lose_the_batch(database_url: str) -> None:
    store = GatedStore(database_url)
    tag = uuid.uuid4().hex
    writer = AuditWriter(store)
    first = writer.submit(_record(tag, 0))
    assert store.entered.wait(5)
    nasty = _record(tag, 1, patient_ref=f"Patient/{NASTY}", user_ref=NASTY, notes=[f"note {NASTY}"])
    rest = [writer.submit(nasty), *(writer.submit(_record(tag, n)) for n in range(2, 30))]
    store.release.set()
    assert all(isinstance(f.result(10), int) for f in [first, *rest])
    writer.close()
    assert store.batches == [1, 29]  # the nasty row travelled in a batch with 28 others
    rows = _rows(store, tag)
    assert len(rows) == 30
    stored = rows[f"{tag}-1"]
    assert stored["patient"] == "Patient/p1\ufffd\ufffdend" and stored["user"] == "p1\ufffd\ufffdend"
    assert stored["notes"] == ["note p1\ufffd\ufffdend"]
    store.close()


def test_a_row_the_database_refuses_loses_only_itself(database_url: str) -> None:
    """A value that cannot be stored at all (here one JSON cannot encode) fails its own
    row; the batch it came in is retried row by row and the others are all stored."""
    store = GatedStore(database_url)
    tag = uuid.uuid4().hex
    writer = AuditWriter(store)
    first = writer.submit(_record(tag, 0))
    assert store.entered.wait(5)
    futures = [
        writer.submit(_record(tag, n, policy={"bad": object()} if n == 7 else {})) for n in range(1, 20)
    ]
    store.release.set()
    assert isinstance(first.result(10), int)
    failed = [n for n, f in enumerate(futures, start=1) if f.exception(10) is not None]
    writer.close()
    assert failed == [7]
    assert sorted(_rows(store, tag)) == sorted(f"{tag}-{n}" for n in range(20) if n != 7)
    store.close()


def test_hook_calls_with_nul_values_keep_every_row_and_the_metrics_stay_clean(store: AuditStore) -> None:
    app, _, _ = app_with(store=store)
    tag = uuid.uuid4().hex

    async def run() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            bodies = []
            for n in range(24):
                body = hook_request(hookInstance=f"{tag}-{n}")
                if n % 3 == 0:
                    body["context"]["patientId"] = NUL
                    body["context"]["userId"] = "Practitioner/\x00"
                bodies.append(body)
            return await asyncio.gather(*(client.post(SELECT, json=b) for b in bodies))

    responses = asyncio.run(run())
    assert [r.status_code for r in responses] == [200] * 24
    rows = _rows(store, tag)
    assert len(rows) == 24
    assert rows[f"{tag}-0"]["patient"] == "Patient/p1\ufffdend"
    assert rows[f"{tag}-0"]["user"] == "Practitioner/\ufffd"
    assert 'cds_errors_total{kind="audit"}' not in app.state.cds.metrics.render().body.decode()


def test_feedback_with_nul_values_is_stored_sanitised_not_503(store: AuditStore) -> None:
    app, _, _ = app_with(store=store)
    card = f"card-{uuid.uuid4().hex}"
    item = {
        "card": card + "\x00",
        "outcome": "overridden",
        "outcomeTimestamp": "2026-11-23T10:00:00Z",
        "overrideReason": {
            "reason": {"code": "c\x00", "system": "http://example.org/\x00", "display": "d\x00"},
            "userComment": "patient\x00 declined",
        },
    }

    async def send() -> list[int]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            ok = [
                (await client.post(SELECT + "/feedback", json={"feedback": [item]})).status_code
                for _ in range(2)
            ]
            surrogate = json.dumps({"feedback": [{**item, "card": "x\ud800"}]})  # ASCII: \\ud800
            bad = await client.post(
                SELECT + "/feedback", content=surrogate, headers={"Content-Type": "application/json"}
            )
            return [*ok, bad.status_code]

    assert asyncio.run(send()) == [200, 200, 400]
    _, feedback = store.recent(10_000)
    (row,) = [f for f in feedback if f["card_uuid"].startswith(card)]
    assert row["card_uuid"] == card + "\ufffd"
    assert row["override_code"] == "c\ufffd" and row["override_display"] == "d\ufffd"
    assert row["user_comment"] == "patient\ufffd declined"
