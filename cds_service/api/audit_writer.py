"""One thread writes the audit rows, in batches, so hook calls never wait on the database.

Why a thread of its own: a write handed to the event loop's threadpool per request made
that thread and the loop trade the GIL on every call; measured with ``python -m bench``'s
load (500-resource patient, concurrency 16) that cost a quarter of the throughput, far
more than the ~1 ms of the write itself. One writer drains whatever queued up meanwhile
and commits it in a single transaction (group commit), so under load it wakes once per
batch, not once per request. Each caller still gets a future that completes when *its*
row is committed, so the hook's background task (and a test) knows the row is stored.

Waiting for company: draining only what is already queued still wrote one or two rows per
transaction under load, because the writer is faster than the requests. While two or more
hook calls are in flight (``busy``), their rows are coming, so the writer waits for them up
to ``max_wait`` seconds (``MAX_WAIT``) before it commits. With at most one call in flight
(one call at a time, the tests) it commits at once: waiting would only move the write from
the idle time after a response into the next call, whose latency would pay for the GIL
hand-offs. Measured on the server (500-resource order-sign, c=16, per-thread CPU from
/proc): batches of 4-15 rows, the writer's CPU 0.57 -> 0.34 ms per request. The hook's
response never waits for this; a row waits at most ``max_wait`` longer in memory (what a
hard kill of the process can lose; SIGTERM commits the queue: ``close``).

A batch that fails is written again row by row, each in its own transaction, so a row the
database refuses loses only itself: its caller's future fails (the service counts it in
``cds_errors_total{kind="audit"}`` and logs the exception type, never the values) and
every other row of the batch is stored. If the database itself is unreachable the retry
stops at the first connection error instead of waiting out a timeout per row.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future

from sqlalchemy.exc import DBAPIError, OperationalError

from cds_service.store import AuditStore, InvocationRecord

log = logging.getLogger("sact_cds.api")

#: Most invocations committed in one transaction.
MAX_BATCH = 256
#: Longest a row waits for the rows of hook calls still in flight (seconds; module docstring).
MAX_WAIT = 0.025
#: How often the writer looks again whether calls are still in flight while it waits.
_POLL = 0.005

_STOP = object()


class AuditWriter:
    """Queue invocations for ``store`` and commit them in batches on one daemon thread."""

    def __init__(self, store: AuditStore, *, busy: Callable[[], bool] | None = None,
                 max_wait: float = MAX_WAIT) -> None:
        """``busy``: whether hook calls are in flight whose rows will follow (None: never
        wait, commit what is queued)."""
        self.store = store
        self.busy = busy
        self.max_wait = max_wait
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def submit(self, record: InvocationRecord) -> Future[int]:
        """Queue ``record``; the future gets its row id, or the exception that failed it."""
        future: Future[int] = Future()
        self._ensure_started()
        self._queue.put((record, future))
        return future

    def close(self, timeout: float = 10.0) -> None:
        """Commit what is queued, then stop the thread (called at shutdown)."""
        if self._thread is None:
            return
        self._queue.put(_STOP)
        self._thread.join(timeout)
        self._thread = None

    def _ensure_started(self) -> None:
        if self._thread is None:
            with self._start_lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="sact-cds-audit", daemon=True)
                    self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            stop = item is _STOP
            batch = [] if stop else [item]
            deadline = time.monotonic() + self.max_wait
            while len(batch) < MAX_BATCH:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    more = self._wait_for_company(deadline, stop)
                    if more is None:
                        break
                if more is _STOP:
                    stop = True
                    continue
                batch.append(more)
            if batch:
                self._write(batch)
            if stop:
                return

    def _wait_for_company(self, deadline: float, stopping: bool) -> object | None:
        """The next queued item while hook calls are in flight and ``deadline`` has not
        passed; None to commit now (module docstring: waiting for company). It sleeps in
        short slices instead of blocking on the queue: a writer blocked in ``get`` is woken
        by every ``put``, and each wake-up trades the GIL with the event loop."""
        while not stopping and self.busy is not None and self.busy():
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            time.sleep(min(left, _POLL))
            try:
                return self._queue.get_nowait()
            except queue.Empty:
                continue
        return None

    def _write(self, batch: list[object]) -> None:
        records = [record for record, _ in batch]  # type: ignore[misc]
        futures = [future for _, future in batch]  # type: ignore[misc]
        try:
            ids = self.store.record_invocations(records)
        except Exception as exc:  # noqa: BLE001 - every waiting caller is told, none is lost silently
            if len(records) == 1 or _unreachable(exc):
                for future in futures:
                    future.set_exception(exc)
                return
            log.warning(
                "audit batch of %d rows failed (%s); writing them one by one", len(records), type(exc).__name__
            )
            self._write_one_by_one(records, futures)
            return
        for future, row_id in zip(futures, ids, strict=True):
            future.set_result(row_id)

    def _write_one_by_one(self, records: list[InvocationRecord], futures: list[Future[int]]) -> None:
        down: Exception | None = None
        for record, future in zip(records, futures, strict=True):
            if down is not None:
                future.set_exception(down)
                continue
            try:
                future.set_result(self.store.record_invocations([record])[0])
            except Exception as exc:  # noqa: BLE001 - only this row is lost; its caller counts it
                future.set_exception(exc)
                if _unreachable(exc):
                    down = exc


def _unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` says the database cannot be reached (not that it refused one row)."""
    return isinstance(exc, OperationalError) or (isinstance(exc, DBAPIError) and exc.connection_invalidated)
