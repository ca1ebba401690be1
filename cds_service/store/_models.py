"""Audit tables: one row per hook invocation, per card shown, per feedback item.

Plain SQLAlchemy 2.0 declarative models with portable types only (``JSON``,
timezone-aware ``DateTime``), so SQLite and PostgreSQL differ by URL alone. Feedback is
linked to its card by the card ``uuid`` (CDS Hooks 2.0 §feedback), not by a foreign key:
feedback may arrive for a card whose invocation row was lost, and must still be kept.
Tokens are never stored; the patient reference is (this is the audit trail). Columns that
hold client-supplied text are ``Text``, so an unexpectedly long value cannot fail a write on
a database that enforces lengths (PostgreSQL) when SQLite would have taken it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class Base(DeclarativeBase):
    pass


class Invocation(Base):
    """One call of a hook endpoint that reached evaluation (or failed trying)."""

    __tablename__ = "invocation"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    request_id: Mapped[str] = mapped_column(String(64))
    service_id: Mapped[str] = mapped_column(String(128), index=True)
    hook: Mapped[str] = mapped_column(String(64))
    hook_instance: Mapped[str] = mapped_column(String(256), index=True)
    patient_ref: Mapped[str | None] = mapped_column(Text)
    user_ref: Mapped[str | None] = mapped_column(Text)
    knowledge_version: Mapped[str | None] = mapped_column(String(64))
    status_code: Mapped[int] = mapped_column(Integer)
    latency_ms: Mapped[float] = mapped_column(Float)
    rule_codes: Mapped[list[str]] = mapped_column(JSON, default=list)
    notes: Mapped[list[Any]] = mapped_column(JSON, default=list)
    fetched: Mapped[list[str]] = mapped_column(JSON, default=list)
    policy: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    timings_ms: Mapped[dict[str, float]] = mapped_column(JSON, default=dict)

    cards: Mapped[list[Card]] = relationship(back_populates="invocation", cascade="all, delete-orphan")


class Card(Base):
    """A card returned by an invocation; ``uuid`` is what feedback names."""

    __tablename__ = "card"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    invocation_id: Mapped[int] = mapped_column(ForeignKey("invocation.id"), index=True)
    uuid: Mapped[str | None] = mapped_column(String(64), index=True)
    rule_code: Mapped[str | None] = mapped_column(String(64), index=True)
    indicator: Mapped[str | None] = mapped_column(String(16))
    summary: Mapped[str | None] = mapped_column(String(512))

    invocation: Mapped[Invocation] = relationship(back_populates="cards")


class Feedback(Base):
    """One feedback item. ``dedupe_key`` makes a repeated identical item a no-op."""

    __tablename__ = "feedback"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    dedupe_key: Mapped[str] = mapped_column(String(64), unique=True)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    service_id: Mapped[str] = mapped_column(String(128))
    card_uuid: Mapped[str] = mapped_column(Text, index=True)
    outcome: Mapped[str] = mapped_column(String(16))
    outcome_timestamp: Mapped[str] = mapped_column(Text)
    override_code: Mapped[str | None] = mapped_column(Text)
    override_system: Mapped[str | None] = mapped_column(Text)
    override_display: Mapped[str | None] = mapped_column(Text)
    user_comment: Mapped[str | None] = mapped_column(Text)
    accepted_suggestions: Mapped[list[str]] = mapped_column(JSON, default=list)


class SeenToken(Base):
    """A JWT ``jti`` already used, kept until its token expires: the single-use check shared
    by every process on this database (``serve --workers N``, replicas, restarts).

    ``key`` is a SHA-256 of ``iss|jti`` (a client chooses the jti, so its length is not
    ours to trust); the primary key makes a second use fail atomically on SQLite and
    PostgreSQL alike. ``expires_at`` is seconds since the epoch (token ``exp`` + leeway).
    """

    __tablename__ = "jwt_seen"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[float] = mapped_column(Float, index=True)


class FormSession(Base):
    """One INO2 form app session (SMART launch -> form -> save), shared by every process on
    this database, so a launch on one replica and its callback on another are one session.

    ``key`` is a SHA-256 of the session id in the browser's cookie (a copy of this table
    does not hand out live cookies). ``pending`` is a SHA-256 of the OAuth ``state`` until
    the callback uses it: the callback clears it with one conditional UPDATE, so exactly
    one request can use a state (and its PKCE verifier) even when two replicas race.
    ``data`` is the rest of the session as JSON (issuer, patient, user, access token,
    pre-filled answers, the saved response), encrypted when ``smart_session_key`` is set.
    ``expires_at`` is seconds since the epoch; expired rows are deleted at each launch.
    ``version`` counts the writes of ``data``: a write names the version it read, so two
    steps of one session on two replicas cannot silently undo each other's write.
    """

    __tablename__ = "form_session"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[float] = mapped_column(Float, index=True)
    pending: Mapped[str | None] = mapped_column(String(64))
    data: Mapped[str] = mapped_column(Text)
    version: Mapped[int] = mapped_column(Integer, default=0)
