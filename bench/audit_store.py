"""``python -m bench.audit_store``: CPU the audit writer spends per hook request.

Submits realistic invocation records (3 cards, notes, timings, policy) to an
``AuditWriter`` on a file SQLite store (or ``--url``), the way the service does: in
waves of ``--concurrency`` submits whose futures are awaited together (the hook load at
c=16), and one at a time (c=1, the worst case: a batch of one). Prints process CPU time
and wall time per record; numbers only, never a pass/fail.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from cds_service.api.audit_writer import AuditWriter
from cds_service.store import AuditStore, CardRecord, InvocationRecord


def record(n: int) -> InvocationRecord:
    return InvocationRecord(
        "SactOrderSign",
        "order-sign",
        f"hook-{n:08d}-d1f6c2f0-8d0e-4c4b-9f51-3c1c9b7d2a11",
        200,
        12.345,
        request_id=f"{n:032x}",
        patient_ref="Patient/example-patient-0001",
        user_ref="Practitioner/example-1",
        knowledge_version="0.1.0",
        cards=[
            CardRecord(f"card-{n}-{k}", code, ind, f"Summary of {code} for this patient")
            for k, (code, ind) in enumerate(
                [("bsa-dose", "warning"), ("liver-function", "critical"), ("cycle-count", "info")]
            )
        ],
        notes=["missing observations: no bilirubin in the last 7 days"],
        fetched=[],
        policy={"lab_max_age_days": 7, "weight_max_age_days": 7},
        timings_ms={"fetch": 0.01, "record": 1.2, "rules": 3.4},
    )


def run(url: str, total: int, concurrency: int) -> tuple[float, float]:
    store = AuditStore(url)
    writer = AuditWriter(store)
    writer.submit(record(-1)).result(10)  # warm: tables, connection, statement cache
    cpu, wall = time.process_time(), time.perf_counter()
    n = 0
    while n < total:
        wave = [writer.submit(record(n + k)) for k in range(concurrency)]
        for future in wave:
            future.result(30)
        n += concurrency
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    writer.close()
    store.close()
    return cpu / n * 1000, wall / n * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="SQLAlchemy URL (default: a temporary SQLite file)")
    parser.add_argument("--records", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.url or f"sqlite:///{Path(tmp) / 'audit.sqlite'}"
        print(f"audit writer, {args.records} records per run, store {url.split('@')[-1]}")
        for concurrency in (1, 16, 64):
            cpu_ms, wall_ms = run(url, args.records if concurrency > 1 else args.records // 4, concurrency)
            print(f"  waves of {concurrency:>3}: {cpu_ms:.3f} ms CPU/record, {wall_ms:.3f} ms wall/record")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
