"""Audit store: every hook invocation and every feedback item, plus the state replicas share
(used JWT ids, form sessions). SQLAlchemy; SQLite default."""

from cds_service.store._sessions import FormSessionStore, session_key
from cds_service.store._store import APP_OPERATIONS, AuditStore, CardRecord, FeedbackItem, InvocationRecord

__all__ = [
    "APP_OPERATIONS",
    "AuditStore",
    "CardRecord",
    "FeedbackItem",
    "FormSessionStore",
    "InvocationRecord",
    "session_key",
]
