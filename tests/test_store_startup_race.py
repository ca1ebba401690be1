"""Replicas that start together on a fresh database all find their tables (issue 12: replicas on
PostgreSQL). Each store creates the tables it needs at start; without a lock, two processes
creating the same table at once make all but one fail (PostgreSQL: a unique violation in its
catalogue), so those replicas started with "audit store unavailable" and their first calls
raced again."""

from __future__ import annotations

import os
import threading
import uuid
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from cds_service.store import AuditStore


def _fresh(database: str, tmp_path: Path) -> tuple[str, object]:
    """A URL on an empty database: a new SQLite file, or a new schema of CI's PostgreSQL."""
    if database == "sqlite":
        return f"sqlite:///{tmp_path / 'fresh.sqlite'}", None
    base = os.environ.get("CDS_TEST_POSTGRES_URL")
    if not base:
        pytest.skip("set CDS_TEST_POSTGRES_URL to run against PostgreSQL")
    schema = f"race_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in base else "?"
    return f"{base}{sep}options=-csearch_path%3D{schema}", (admin, schema)


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_stores_starting_at_once_on_a_fresh_database_all_find_their_tables(database: str, tmp_path: Path,
                                                                           caplog: pytest.LogCaptureFixture) -> None:
    url, cleanup = _fresh(database, tmp_path)
    try:
        start = threading.Barrier(8)
        stores: list[AuditStore] = []

        def replica() -> None:
            start.wait()
            stores.append(AuditStore(url))

        threads = [threading.Thread(target=replica) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert len(stores) == 8
        assert all(s._ready for s in stores)  # every replica has its tables from the start
        assert "unavailable at start" not in caplog.text
        assert all(s.ping() for s in stores)
        for s in stores:
            s.engine.dispose()
    finally:
        if cleanup is not None:
            admin, schema = cleanup  # type: ignore[misc]
            with admin.begin() as conn:
                conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
            admin.dispose()
