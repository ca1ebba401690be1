"""The audit writer commits every queued invocation, in batches, and tells each caller."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import pytest

from cds_service.api.audit_writer import AuditWriter
from cds_service.store import AuditStore, CardRecord, InvocationRecord


def _record(n: int) -> InvocationRecord:
    return InvocationRecord(
        "SactOrderSign", "order-sign", f"hook-{n}", 200, 1.0, cards=[CardRecord(f"card-{n}", "bsa-dose", "warning", "s")]
    )


class CountingStore(AuditStore):
    """Counts transactions; the first one waits until released, so later submits queue up."""

    def __init__(self) -> None:
        super().__init__("sqlite://")
        self.batches: list[int] = []
        self.entered = threading.Event()
        self.release = threading.Event()

    def record_invocations(self, records: Sequence[InvocationRecord]) -> list[int]:
        if not self.batches and not self.entered.is_set():
            self.entered.set()
            self.release.wait(5)
        self.batches.append(len(records))
        return super().record_invocations(records)


def test_queued_invocations_are_committed_together_and_each_caller_gets_its_row() -> None:
    store = CountingStore()
    writer = AuditWriter(store)
    first = writer.submit(_record(0))
    assert store.entered.wait(5)  # the first commit is under way ...
    rest = [writer.submit(_record(n)) for n in range(1, 21)]  # ... so these queue up meanwhile
    store.release.set()
    ids = [first.result(5), *(f.result(5) for f in rest)]
    writer.close()
    assert len(set(ids)) == 21
    assert store.batches == [1, 20]  # one transaction for everything that queued meanwhile
    invocations, _ = store.recent(100)
    assert {i["hook_instance"] for i in invocations} == {f"hook-{n}" for n in range(21)}


def test_a_failed_commit_is_reported_to_every_caller_of_that_batch() -> None:
    class Down(AuditStore):
        def record_invocations(self, records: Sequence[InvocationRecord]) -> list[int]:
            raise RuntimeError("disk full")

    writer = AuditWriter(Down("sqlite://"))
    futures = [writer.submit(_record(n)) for n in range(3)]
    for future in futures:
        with pytest.raises(RuntimeError, match="disk full"):
            future.result(5)
    writer.close()


def test_close_commits_what_is_queued_before_stopping() -> None:
    store = AuditStore("sqlite://")
    writer = AuditWriter(store)
    futures = [writer.submit(_record(n)) for n in range(5)]
    writer.close()
    assert all(f.done() and not f.exception() for f in futures)
    assert len(store.recent(100)[0]) == 5


class BatchLog(AuditStore):
    """Records the size of every committed batch."""

    def __init__(self) -> None:
        super().__init__("sqlite://")
        self.batches: list[int] = []

    def record_invocations(self, records: Sequence[InvocationRecord]) -> list[int]:
        self.batches.append(len(records))
        return super().record_invocations(records)


def test_while_calls_are_in_flight_the_writer_waits_for_their_rows_and_commits_them_together() -> None:
    store = BatchLog()
    in_flight = threading.Event()
    in_flight.set()
    writer = AuditWriter(store, busy=in_flight.is_set, max_wait=2.0)
    futures = [writer.submit(_record(0))]
    for n in range(1, 4):  # rows of the calls still in flight arrive one by one
        time.sleep(0.02)
        futures.append(writer.submit(_record(n)))
    in_flight.clear()  # the last call is done: nothing more is coming
    ids = [f.result(5) for f in futures]
    writer.close()
    assert len(set(ids)) == 4
    assert store.batches == [4]


def test_with_no_call_in_flight_a_row_is_committed_at_once() -> None:
    store = BatchLog()
    writer = AuditWriter(store, busy=lambda: False, max_wait=5.0)
    started = time.monotonic()
    writer.submit(_record(0)).result(5)
    assert time.monotonic() - started < 1.0  # not the 5 s max_wait
    writer.submit(_record(1)).result(5)
    writer.close()
    assert store.batches == [1, 1]


def test_a_row_waits_no_longer_than_max_wait_however_busy_the_service_is() -> None:
    store = BatchLog()
    writer = AuditWriter(store, busy=lambda: True, max_wait=0.1)
    started = time.monotonic()
    writer.submit(_record(0)).result(5)
    waited = time.monotonic() - started
    writer.close()
    assert 0.09 <= waited < 2.0
    assert store.batches == [1]
