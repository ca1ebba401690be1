"""Form sessions of the SMART apps in the service's database (table ``form_session``).

The store keeps opaque rows: the app decides what ``data`` holds and whether it is
encrypted (``apps/ino2/smart.py``). What the store guarantees, on SQLite and PostgreSQL
alike, for every process and replica sharing the database:

- a session opened on one process is read on any other;
- a pending OAuth ``state`` is used at most once (:meth:`FormSessionStore.claim`: a
  conditional UPDATE, so of two racing callbacks exactly one gets the row);
- nothing expired is ever returned, and expired rows are deleted at each :meth:`open`;
- a write based on an old read is refused (:meth:`FormSessionStore.save` names the version
  it read), so the caller re-reads and applies its change again instead of undoing another's;
- at most ``cap`` unexpired sessions exist (checked at :meth:`open`; replicas opening at
  the same instant may overshoot by the number of concurrent launches, never more).

Every method may raise ``SQLAlchemyError`` when the database cannot answer; the app shows
an error page then (it never guesses a session).

An in-memory SQLite store (tests, ``replay``) is one connection shared by every thread
(``StaticPool``), where one thread's read ends by rolling back whatever another thread's
transaction had not yet committed: there, and only there, the methods take turns (a lock),
so a claim or a versioned save is as atomic as it is on a file or on PostgreSQL.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.pool import StaticPool

from cds_service.store._models import FormSession
from cds_service.store._store import AuditStore

_TABLE = FormSession.__table__
F = TypeVar("F", bound=Callable[..., Any])


def _in_turn(method: F) -> F:
    """Run ``method`` under the store's lock (a no-op context except for in-memory SQLite)."""

    @functools.wraps(method)
    def turn(self: FormSessionStore, *args: Any, **kwargs: Any) -> Any:
        with self._turn:
            return method(self, *args, **kwargs)

    return turn  # type: ignore[return-value]


def session_key(secret: str) -> str:
    """The stored key of a session id or OAuth state (SHA-256, hex): the row never holds the
    value the browser holds."""
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


class FormSessionStore:
    """Form sessions in the database behind ``store`` (its engine and its tables)."""

    def __init__(self, store: AuditStore, *, cap: int) -> None:
        self.store, self.cap = store, cap
        shared = isinstance(store.engine.pool, StaticPool)
        self._turn: Any = threading.Lock() if shared else contextlib.nullcontext()

    @_in_turn
    def open(self, key: str, data: str, pending: str | None, expires_at: float, now: float | None = None) -> bool:
        """Insert a session; False (nothing stored) if ``cap`` unexpired sessions exist.
        Deletes the expired rows first, in the same transaction (one indexed DELETE)."""
        self.store._ensure_tables()
        now = time.time() if now is None else now
        with self.store.engine.begin() as conn:
            conn.execute(delete(_TABLE).where(_TABLE.c.expires_at <= now))
            if conn.execute(select(func.count()).select_from(_TABLE)).scalar_one() >= self.cap:
                return False
            conn.execute(insert(_TABLE).values(key=key, data=data, pending=pending, expires_at=expires_at, version=0))
        return True

    @_in_turn
    def load(self, key: str, now: float | None = None) -> tuple[str, float, int] | None:
        """(data, expires_at, version) of an unexpired session, or None."""
        self.store._ensure_tables()
        now = time.time() if now is None else now
        with self.store.engine.connect() as conn:
            row = conn.execute(select(_TABLE.c.data, _TABLE.c.expires_at, _TABLE.c.version)
                               .where(_TABLE.c.key == key, _TABLE.c.expires_at > now)).first()
        return (row[0], float(row[1]), int(row[2])) if row else None

    @_in_turn
    def claim(self, key: str, now: float | None = None) -> tuple[str, str, float, int] | None:
        """Use up the session's pending state: (pending, data, expires_at, version) for exactly one caller, None
        for every other (no session, expired, or already used). The UPDATE only matches
        while ``pending`` still holds the value read, so a racing claim updates no row."""
        self.store._ensure_tables()
        now = time.time() if now is None else now
        with self.store.engine.begin() as conn:
            row = conn.execute(select(_TABLE.c.pending, _TABLE.c.data, _TABLE.c.expires_at, _TABLE.c.version).where(
                _TABLE.c.key == key, _TABLE.c.expires_at > now, _TABLE.c.pending.is_not(None))).first()
            if row is None:
                return None
            used = conn.execute(update(_TABLE).where(_TABLE.c.key == key, _TABLE.c.pending == row[0])
                                .values(pending=None)).rowcount
        return (str(row[0]), str(row[1]), float(row[2]), int(row[3])) if used == 1 else None

    @_in_turn
    def save(self, key: str, data: str, expires_at: float, version: int, now: float | None = None) -> bool:
        """Replace an unexpired session's data and expiry if it is still at ``version`` (the
        version read) and count the write; False if it is gone or was written meanwhile."""
        self.store._ensure_tables()
        now = time.time() if now is None else now
        with self.store.engine.begin() as conn:
            return conn.execute(update(_TABLE).where(_TABLE.c.key == key, _TABLE.c.expires_at > now,
                                                     _TABLE.c.version == version)
                                .values(data=data, expires_at=expires_at, version=version + 1)).rowcount == 1

    @_in_turn
    def count(self, now: float | None = None) -> int:
        """Unexpired sessions (all replicas)."""
        self.store._ensure_tables()
        now = time.time() if now is None else now
        with self.store.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(_TABLE)
                                    .where(_TABLE.c.expires_at > now)).scalar_one())
