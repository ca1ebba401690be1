"""Audit store: every hook invocation and every feedback item (SQLAlchemy; SQLite default)."""

from cds_service.store._store import AuditStore, CardRecord, FeedbackItem, InvocationRecord

__all__ = [
    "AuditStore",
    "CardRecord",
    "FeedbackItem",
    "InvocationRecord",
]
