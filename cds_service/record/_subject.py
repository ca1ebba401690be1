"""Whose data is this? The patient a resource's subject/patient/beneficiary reference names.

HAZ-001 (docs/safety/hazard-log.md): an EHR may prefetch, or a FHIR server may answer a
search with, another patient's resources (a mis-built prefetch template, a server that
ignores an unsupported ``patient``/``subject`` search parameter and returns every
patient's results). A resource that names another patient than ``context.patientId``
must never be read as this patient's, and never be dropped silently: the record builder
leaves it out and says so in a DataNote that reaches the card.

Read per resource on the hot path, so the common case, ``{"reference": "Patient/<id>"}``
equal to this patient's, costs one dict lookup and one string comparison per field.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

#: The elements that carry "whose record this is" in the resource types the service reads
#: (Observation, Condition, Procedure, MedicationRequest/-Administration/-Statement,
#: QuestionnaireResponse, Encounter: ``subject``; AllergyIntolerance, DSTU2 orders:
#: ``patient``; Coverage: ``beneficiary``).
SUBJECT_ELEMENTS = ("subject", "patient", "beneficiary")


def patient_id_in(reference: str, resolve_urn: Callable[[str], tuple[str, str] | None]) -> str | None:
    """The Patient id a reference names (``Patient/x``, ``https://…/Patient/x[/_history/n]``,
    or a ``urn:uuid:``/``urn:oid:`` fullUrl of a Patient in the same bundle); None when it
    names no Patient or cannot be resolved (then we cannot tell, and the resource is kept)."""
    if reference.startswith("urn:"):
        found = resolve_urn(reference)
        return found[1] if found and found[0] == "Patient" else None
    parts = reference.split("/")
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "Patient" and parts[i + 1]:
            return parts[i + 1]
    return None


class SubjectCheck:
    """Tells whether a resource belongs to another patient than ``patient_id``."""

    __slots__ = ("own", "patient_id", "_sources", "_urns")

    def __init__(self, patient_id: str, sources: tuple[Any, ...]) -> None:
        self.patient_id = patient_id
        self.own = "Patient/" + patient_id
        self._sources = sources  # the prefetch values and draftOrders, for urn: fullUrls
        self._urns: dict[str, tuple[str, str]] | None = None

    def foreign(self, resource: Mapping[str, Any]) -> bool:
        """True when the resource is a Patient with another id, or its subject/patient/
        beneficiary reference names another patient."""
        own = self.own
        ref = resource.get("subject")  # the common case first: this patient's relative reference
        if type(ref) is dict and ref.get("reference") == own:
            return False
        for name in SUBJECT_ELEMENTS:
            ref = resource.get(name)
            if ref is None:
                continue
            target = ref.get("reference") if type(ref) is dict else None
            if target == own:
                return False
            if type(target) is not str:
                continue
            other = patient_id_in(target, self._resolve_urn)
            return other is not None and other != self.patient_id
        if resource.get("resourceType") == "Patient":
            rid = resource.get("id")
            return rid is not None and str(rid) != self.patient_id
        return False

    def _resolve_urn(self, urn: str) -> tuple[str, str] | None:
        if self._urns is None:  # built once, only for a record that uses urn: references
            self._urns = {}
            for value in self._sources:
                _collect_full_urls(value, self._urns)
        return self._urns.get(urn)


def _collect_full_urls(value: Any, out: dict[str, tuple[str, str]]) -> None:
    if isinstance(value, list):
        for item in value:
            _collect_full_urls(item, out)
        return
    if not isinstance(value, Mapping) or value.get("resourceType") != "Bundle":
        return
    for entry in value.get("entry") or ():
        if not isinstance(entry, Mapping):
            continue
        res, full = entry.get("resource"), entry.get("fullUrl")
        if isinstance(full, str) and isinstance(res, Mapping):
            out[full] = (str(res.get("resourceType", "")), str(res.get("id", "")))
            _collect_full_urls(res, out)
