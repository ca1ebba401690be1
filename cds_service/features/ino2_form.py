"""What the INO2 form's ``$populate`` reads from the record: the card's own findings.

The form and the eligibility card must never disagree, so the form takes each criterion's
status from the ``ino2_criteria`` feature (the card's) and its evidence from the same
finders that feature runs (``_eligibility``); this module only exposes them by criterion.
"""

from __future__ import annotations

from cds_service.features._eligibility import _FROM_RECORD, _b_all
from cds_service.features._registry import Evidence, FeatureContext
from cds_service.features._response import answers, form_date, latest_ino2_response
from cds_service.record import PatientRecord

__all__ = ["answers", "criterion_evidence", "form_date", "latest_ino2_response"]


def criterion_evidence(record: PatientRecord, ctx: FeatureContext, code: str) -> tuple[Evidence, ...]:
    """The record data behind one INO2 criterion's finding; none for an attestation-only
    criterion (nothing in a record can show it)."""
    ev: list[Evidence] = []
    if code == "rr-cd22-bcp-all":
        _b_all(record, ctx, ev, None)
    elif code in _FROM_RECORD:
        _FROM_RECORD[code](record, ctx, ev)
    return tuple(ev)
