"""AuditStore: write every invocation and feedback item, read them back for `audit`.

Writes are synchronous SQLAlchemy calls that the API runs off the event loop; every
write method may raise ``SQLAlchemyError`` and the caller decides what a failure means
(a hook response never fails because of the audit; feedback answers 503). Tables are
created on start and, if the database was down then, on the first write that works.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import re
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from sqlalchemy import bindparam, create_engine, delete, event, insert, select, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import selectinload, sessionmaker
from sqlalchemy.pool import StaticPool

from cds_service.settings import mask_url
from cds_service.store._models import Base, Card, Feedback, Invocation, SeenToken

log = logging.getLogger(__name__)
#: ``hook`` values of audit rows that are not CDS hook calls but operations of the INO2 form
#: app (service ``ino2-form``): an SDC ``$populate`` call and a form save. No CDS hook has
#: these names, so ``kind`` (``hook`` or ``app``) is read from the row itself.
APP_OPERATIONS = ("populate", "form-saved")
#: Expired used-token rows are deleted once every this many token checks.
PRUNE_EVERY = 1000
#: Built once: the audit writer only binds rows (statement construction was a third of the
#: CPU of a one-row batch).
_INSERT_INVOCATIONS = insert(Invocation.__table__).returning(
    Invocation.__table__.c.id, sort_by_parameter_order=True
)
_INSERT_CARDS = insert(Card.__table__)


@dataclass(frozen=True)
class CardRecord:
    uuid: str | None
    rule_code: str | None
    indicator: str | None
    summary: str | None


@dataclass(frozen=True)
class InvocationRecord:
    """What the audit keeps about one hook call (never tokens)."""

    service_id: str
    hook: str
    hook_instance: str
    status_code: int
    latency_ms: float
    received_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    request_id: str = ""
    patient_ref: str | None = None
    user_ref: str | None = None
    knowledge_version: str | None = None
    cards: Sequence[CardRecord] = ()
    notes: Sequence[str] = ()
    fetched: Sequence[str] = ()
    policy: Mapping[str, Any] = field(default_factory=dict)
    timings_ms: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class FeedbackItem:
    """One validated feedback item (CDS Hooks 2.0 §feedback)."""

    card_uuid: str
    outcome: str
    outcome_timestamp: str
    accepted_suggestions: Sequence[str] = ()
    override_code: str | None = None
    override_system: str | None = None
    override_display: str | None = None
    user_comment: str | None = None

    def dedupe_key(self, service_id: str) -> str:
        raw = json.dumps([service_id, *[getattr(self, f) for f in self.__dataclass_fields__]], default=list)
        return hashlib.sha256(raw.encode()).hexdigest()


class AuditStore:
    """The audit database behind one SQLAlchemy URL (SQLite by default, PostgreSQL by URL)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = _make_engine(url)
        self._session = sessionmaker(self.engine, expire_on_commit=False)
        self._ready = False
        self._lock = threading.Lock()
        self._claims = 0
        if self.engine.dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as upsert
        else:
            from sqlalchemy.dialects.sqlite import insert as upsert
        table = SeenToken.__table__
        stmt = upsert(table).values(key=bindparam("key"), expires_at=bindparam("expires_at"))
        # built once: the hot path only binds values (the token check runs on every request)
        self._claim = stmt.on_conflict_do_update(
            index_elements=[table.c.key],
            set_={"expires_at": stmt.excluded.expires_at},
            where=table.c.expires_at < bindparam("now"),
        ).returning(table.c.key)
        try:
            self._ensure_tables()
        except SQLAlchemyError as exc:
            log.warning("audit store %s unavailable at start: %s", mask_url(url), type(exc).__name__)

    def __repr__(self) -> str:
        return f"AuditStore({mask_url(self.url)!r})"

    def _ensure_tables(self) -> None:
        if self._ready:
            return
        with self._lock:
            if not self._ready:
                _create_tables(self.engine)
                self._ready = True

    def ping(self) -> bool:
        """Whether the database answers (for /readyz)."""
        try:
            self._ensure_tables()
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            return True
        except SQLAlchemyError:
            return False

    def record_invocation(self, rec: InvocationRecord) -> int:
        """Insert one invocation and its cards; returns the invocation's row id."""
        return self.record_invocations([rec])[0]

    def record_invocations(self, records: Sequence[InvocationRecord]) -> list[int]:
        """Insert invocations and their cards in ONE transaction (group commit: the service's
        audit writer hands over whatever queued up meanwhile). Two executemany statements
        per batch (invocations with RETURNING, then every card), one commit: per row that
        is a few tens of microseconds, where a statement and a commit per row cost ~0.3 ms
        (``python -m bench.audit_store``). Every client-supplied value is made storable
        first (:func:`storable`), so one request's odd value cannot fail the batch.
        Returns the invocations' row ids, in order."""
        self._ensure_tables()
        if not records:
            return []
        rows = [_invocation_row(rec) for rec in records]
        with self.engine.begin() as conn:
            ids = [int(row_id) for row_id in conn.execute(_INSERT_INVOCATIONS, rows).scalars()]
            cards = [
                {
                    "invocation_id": invocation_id,
                    "uuid": _fit(c.uuid, 64),
                    "rule_code": _fit(c.rule_code, 64),
                    "indicator": _fit(c.indicator, 16),
                    "summary": _fit(c.summary or "", 512),
                }
                for rec, invocation_id in zip(records, ids, strict=True)
                for c in rec.cards
            ]
            if cards:
                conn.execute(_INSERT_CARDS, cards)
        return ids

    def claim_token(self, issuer: str, jti: str, expires_at: float, now: float | None = None) -> bool:
        """Mark the token ``issuer|jti`` used until ``expires_at`` (epoch seconds); False if
        it was already used and has not expired (a replay). One upsert statement, atomic
        in the database, so two processes racing with the same token cannot both win: a
        row is inserted, or an *expired* row taken over; an unexpired row is left alone
        and nothing is returned. Expired rows are pruned now and then (``_prune_tokens``).
        Raises ``SQLAlchemyError`` if the database cannot answer (the caller fails closed)."""
        self._ensure_tables()
        now = time.time() if now is None else now
        key = hashlib.sha256(f"{issuer}|{jti}".encode("utf-8", "surrogatepass")).hexdigest()
        with self.engine.begin() as conn:
            claimed = conn.execute(self._claim, {"key": key, "expires_at": expires_at, "now": now}).first() is not None
            self._claims += 1
            if self._claims % PRUNE_EVERY == 0:
                table = SeenToken.__table__
                conn.execute(delete(table).where(table.c.expires_at < now))
        return claimed

    def _prune_tokens(self, now: float | None = None) -> int:
        """Delete the used-token rows that have expired; returns how many."""
        self._ensure_tables()
        table = SeenToken.__table__
        with self.engine.begin() as conn:
            return conn.execute(delete(table).where(table.c.expires_at < (now or time.time()))).rowcount

    def record_feedback(self, service_id: str, items: Iterable[FeedbackItem]) -> int:
        """Store feedback items; an item identical to one already stored is skipped.

        Returns how many items were new. Clients may send the same feedback more than
        once (CDS Hooks 2.0 §feedback), so a duplicate is not an error.
        """
        self._ensure_tables()
        now = datetime.now(UTC)
        new = 0
        with self._session.begin() as session:
            for item in items:
                key = item.dedupe_key(service_id)
                if session.scalar(select(Feedback.id).where(Feedback.dedupe_key == key)) is not None:
                    continue
                try:
                    with session.begin_nested():
                        session.add(_feedback_row(service_id, item, key, now))
                    new += 1
                except IntegrityError:  # a concurrent duplicate won the race
                    continue
        return new

    def recent(self, limit: int = 20) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The newest invocations (with their cards) and feedback items, newest first."""
        self._ensure_tables()
        with self._session() as session:
            invs = session.scalars(
                select(Invocation)
                .options(selectinload(Invocation.cards))
                .order_by(Invocation.id.desc())
                .limit(limit)
            ).all()
            fbs = session.scalars(select(Feedback).order_by(Feedback.id.desc()).limit(limit)).all()
            return [_invocation_dict(i) for i in invs], [_feedback_dict(f) for f in fbs]

    def export_csv(self, out: TextIO, limit: int | None = None) -> int:
        """Write one row per card (invocations without cards get one row), each joined with
        the feedback given on that card; returns the number of data rows."""
        self._ensure_tables()
        writer = csv.writer(out)
        writer.writerow(CSV_COLUMNS)
        rows = 0
        with self._session() as session:
            query = select(Invocation).options(selectinload(Invocation.cards)).order_by(Invocation.id.desc())
            if limit:
                query = query.limit(limit)
            invocations = session.scalars(query).all()
            uuids = [c.uuid for i in invocations for c in i.cards if c.uuid]
            feedback: dict[str, list[Feedback]] = {}
            for chunk in (uuids[n : n + 500] for n in range(0, len(uuids), 500)):
                for fb in session.scalars(
                    select(Feedback).where(Feedback.card_uuid.in_(chunk)).order_by(Feedback.id)
                ):
                    feedback.setdefault(fb.card_uuid, []).append(fb)
            for inv in invocations:
                base = [
                    _iso(inv.received_at),
                    inv.service_id,
                    inv.hook,
                    inv.hook_instance,
                    inv.patient_ref or "",
                    inv.user_ref or "",
                    inv.knowledge_version or "",
                    inv.status_code,
                    inv.latency_ms,
                    "; ".join(map(str, inv.notes or [])),
                ]
                for card in inv.cards or [None]:
                    fbs = feedback.get(card.uuid, []) if card and card.uuid else []
                    for fb in fbs or [None]:
                        writer.writerow(base + _card_cols(card) + _feedback_cols(fb))
                        rows += 1
        return rows

    def close(self) -> None:
        self.engine.dispose()


CSV_COLUMNS = (
    "time",
    "service",
    "hook",
    "hook_instance",
    "patient",
    "user",
    "knowledge_version",
    "status",
    "latency_ms",
    "notes",
    "card_uuid",
    "rule_code",
    "indicator",
    "summary",
    "feedback_outcome",
    "feedback_time",
    "override_reason",
    "override_comment",
    "accepted_suggestions",
)


#: Key of the PostgreSQL advisory lock taken while the tables are created (any constant the
#: service's processes share; 0x5AC7CD5 reads "SACT CDS").
_SCHEMA_LOCK = 0x5AC7CD5


def _create_tables(engine: Engine) -> None:
    """Create the tables that do not exist yet, one process at a time.

    Replicas and workers start together on a fresh database; without a lock, all but one of
    those creating a table at the same moment fail (PostgreSQL: a unique violation in its
    catalogue; SQLite: "table already exists"), start with their store "unavailable" and
    race again on their first calls. PostgreSQL: a transaction-scoped advisory lock;
    SQLite: ``BEGIN IMMEDIATE`` takes the write lock before the existence checks (the
    others wait up to the connection's busy timeout). Either way the others find the
    tables made and create nothing."""
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _SCHEMA_LOCK})
        elif conn.dialect.name == "sqlite":
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        Base.metadata.create_all(conn)
        conn.commit()


def _make_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database in (None, "", ":memory:"):
            return create_engine(url, connect_args={"check_same_thread": False}, poolclass=StaticPool)
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 15})
        event.listen(engine, "connect", _sqlite_wal)
        return engine
    return create_engine(url, pool_pre_ping=True)


def _sqlite_wal(dbapi_connection: Any, _record: Any) -> None:
    """Write-ahead logging for the file store: one fsync per commit instead of the rollback
    journal's several, and readers (``cds-service audit``) never block the service's writes.
    ``synchronous`` stays FULL, so a committed audit row survives a power cut."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.close()


def _feedback_row(service_id: str, item: FeedbackItem, key: str, now: datetime) -> Feedback:
    return Feedback(
        dedupe_key=key,
        received_at=now,
        service_id=_fit(service_id, 128),
        card_uuid=storable(item.card_uuid),
        outcome=_fit(item.outcome, 16),
        outcome_timestamp=storable(item.outcome_timestamp),
        override_code=storable(item.override_code),
        override_system=storable(item.override_system),
        override_display=storable(item.override_display),
        user_comment=storable(item.user_comment),
        accepted_suggestions=storable(list(item.accepted_suggestions)),
    )


def _invocation_row(rec: InvocationRecord) -> dict[str, Any]:
    return {
        "received_at": rec.received_at,
        "request_id": _fit(rec.request_id, 64),
        "service_id": _fit(rec.service_id, 128),
        "hook": _fit(rec.hook, 64),
        "hook_instance": _fit(rec.hook_instance, 256),
        "patient_ref": storable(rec.patient_ref),
        "user_ref": storable(rec.user_ref),
        "knowledge_version": _fit(rec.knowledge_version, 64),
        "status_code": rec.status_code,
        "latency_ms": round(rec.latency_ms, 3),
        "rule_codes": storable([c.rule_code for c in rec.cards if c.rule_code]),
        "notes": storable(list(rec.notes)),
        "fetched": storable(list(rec.fetched)),
        "policy": storable(dict(rec.policy)),
        "timings_ms": dict(rec.timings_ms),
    }


#: What a database may refuse in text: NUL (PostgreSQL text and JSON cannot hold it) and lone
#: UTF-16 surrogates (not encodable as UTF-8; Python's json module lets them through).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable(value: Any) -> Any:
    """``value`` with every string made storable on SQLite and PostgreSQL alike: each NUL or
    lone surrogate becomes U+FFFD (visible in the audit, never silently dropped). Lists
    and dicts are cleaned recursively; anything else is returned as is. The common case,
    a clean string, costs one regex search and no copy."""
    if isinstance(value, str):
        return _UNSTORABLE.sub("\ufffd", value) if _UNSTORABLE.search(value) else value
    if isinstance(value, list):
        return [storable(v) for v in value]
    if isinstance(value, dict):
        return {storable(k): storable(v) for k, v in value.items()}
    return value


def _fit(value: str | None, length: int) -> str | None:
    """A storable string no longer than the ``String(length)`` column it goes to
    (PostgreSQL enforces the length, SQLite does not)."""
    if value is None:
        return None
    return storable(value)[:length]


def _iso(value: datetime | None) -> str:
    if value is None:
        return ""
    if value.tzinfo is None:  # SQLite hands back naive datetimes; we stored UTC
        value = value.replace(tzinfo=UTC)
    return value.isoformat(timespec="milliseconds")


def _invocation_dict(i: Invocation) -> dict[str, Any]:
    return {
        "time": _iso(i.received_at),
        "kind": "app" if i.hook in APP_OPERATIONS else "hook",
        "service": i.service_id,
        "hook": i.hook,
        "hook_instance": i.hook_instance,
        "patient": i.patient_ref,
        "user": i.user_ref,
        "knowledge_version": i.knowledge_version,
        "status": i.status_code,
        "latency_ms": i.latency_ms,
        "rule_codes": list(i.rule_codes or []),
        "card_uuids": [c.uuid for c in i.cards],
        "notes": list(i.notes or []),
        "fetched": list(i.fetched or []),
        "policy": dict(i.policy or {}),
        "timings_ms": dict(i.timings_ms or {}),
    }


def _feedback_dict(f: Feedback) -> dict[str, Any]:
    return {
        "time": _iso(f.received_at),
        "service": f.service_id,
        "card_uuid": f.card_uuid,
        "outcome": f.outcome,
        "outcome_timestamp": f.outcome_timestamp,
        "override_code": f.override_code,
        "override_system": f.override_system,
        "override_display": f.override_display,
        "user_comment": f.user_comment,
        "accepted_suggestions": list(f.accepted_suggestions or []),
    }


def _card_cols(card: Card | None) -> list[Any]:
    if card is None:
        return ["", "", "", ""]
    return [card.uuid or "", card.rule_code or "", card.indicator or "", card.summary or ""]


def _feedback_cols(fb: Feedback | None) -> list[Any]:
    if fb is None:
        return ["", "", "", "", ""]
    reason = fb.override_display or fb.override_code or ""
    return [
        fb.outcome,
        fb.outcome_timestamp,
        reason,
        fb.user_comment or "",
        " ".join(fb.accepted_suggestions or []),
    ]
