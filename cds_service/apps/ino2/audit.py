"""Audit rows of the INO2 form app: each ``$populate`` call and each form save.

They go to the same table as hook calls, through the same writer (``ServiceState.write_audit``:
a failing store is logged and counted in ``cds_errors_total{kind="audit"}``, never fails the
user's action). What tells them apart: ``service`` is ``ino2-form`` and ``hook`` is the
operation, ``populate`` or ``form-saved`` (``store.APP_OPERATIONS``), which no CDS hook is
called. Like a hook row they keep who (patient and user references), the status, the
knowledge version and the site policy; a save also names the QuestionnaireResponse written.
Never a token, never an answer: notes say what happened, not what was answered.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from typing import Any

from cds_service.api import logging as cds_logging
from cds_service.store import APP_OPERATIONS, InvocationRecord

#: the ``service`` of the app's audit rows
FORM_SERVICE = "ino2-form"
#: the ``hook`` of each operation's rows (names no CDS hook has: the store tells them apart)
POPULATE, FORM_SAVED = APP_OPERATIONS


def patient_ref(patient: str | None) -> str | None:
    """``Patient/<id>`` as the hooks' audit writes it (a token response may give a bare id)."""
    if not patient:
        return None
    return patient if patient.startswith("Patient/") else f"Patient/{patient}"


def form_audit(state: Any, operation: str, *, started: float, status: int, patient: str | None,
               user: str | None = None, instance: str | None = None, notes: Sequence[str] = ()) -> InvocationRecord:
    """One audit row of an app operation; ``started`` is ``time.perf_counter()`` at its start."""
    request_id = cds_logging.request_id.get() or ""
    return InvocationRecord(
        service_id=FORM_SERVICE,
        hook=operation,
        hook_instance=instance or request_id or str(uuid.uuid4()),
        status_code=status,
        latency_ms=(time.perf_counter() - started) * 1000,
        request_id=request_id,
        patient_ref=patient_ref(patient),
        user_ref=user,
        knowledge_version=state.knowledge_version,
        notes=list(notes),
        policy=state.policy_json,
    )
