"""PatientRecord: what one hook invocation knows about the patient, read leniently.

Resources are plain dicts (as parsed from JSON) on the hot path; model validation is for
our own artifacts, not for every request (DESIGN.md "The engine").
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

Resource = dict[str, Any]


@dataclass(frozen=True, slots=True)
class DataNote:
    """Something about the data that a clinician or tester must be told.

    ``kind`` is one of ``missing`` (a prefetch key absent and not fetched), ``error`` (the
    client or FHIR server returned an OperationOutcome, or a fetch failed), ``unreadable``
    (a resource we could not interpret) or ``unsupported`` (e.g. a DSTU2 resource we only
    partly read) or ``other-patient`` (resources naming another patient than
    ``context.patientId``, left out of the record: HAZ-001). ``key`` names the prefetch key
    or resource type concerned.
    """

    kind: str
    key: str
    message: str


@dataclass(frozen=True)
class PatientRecord:
    """The patient's record for one evaluation.

    - ``patient``: the Patient resource, or None when it could not be had.
    - ``resources``: the record's other resources by type (draft orders excluded).
    - ``draft_orders``: every unsigned order of the ordering session (``context.draftOrders``).
    - ``selections``: the references (``Type/id``) the clinician just selected; on
      order-sign it is every draft order, since all are being signed.
    - ``notes``: data-quality notes that must reach the clinician (fail visible).
    """

    patient: Resource | None
    resources: Mapping[str, tuple[Resource, ...]] = field(default_factory=dict)
    draft_orders: tuple[Resource, ...] = ()
    selections: tuple[str, ...] = ()
    notes: tuple[DataNote, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "resources", MappingProxyType(dict(self.resources)))

    def of_type(self, resource_type: str) -> tuple[Resource, ...]:
        """All record resources of one type (not including draft orders)."""
        return self.resources.get(resource_type, ())

    def selected_orders(self) -> tuple[Resource, ...]:
        """The draft orders named in ``selections``, in draft-order order."""
        wanted = set(self.selections)
        return tuple(o for o in self.draft_orders if reference_of(o) in wanted)

    def resolve(self, reference: str | None) -> Resource | None:
        """Find ``Type/id`` among the record's resources and draft orders."""
        if not reference or "/" not in reference:
            return None
        rtype, _, rid = reference.rpartition("/")
        rtype = rtype.rsplit("/", 1)[-1]  # tolerate absolute references
        for res in (*self.of_type(rtype), *self.draft_orders):
            if res.get("resourceType") == rtype and res.get("id") == rid:
                return res
        if self.patient and rtype == "Patient" and self.patient.get("id") == rid:
            return self.patient
        return None

    def all_resources(self) -> Iterable[Resource]:
        """Every resource of the record, patient and draft orders included."""
        if self.patient is not None:
            yield self.patient
        for group in self.resources.values():
            yield from group
        yield from self.draft_orders


def reference_of(resource: Mapping[str, Any]) -> str:
    """``Type/id`` of a resource (empty id if it has none)."""
    return f"{resource.get('resourceType', '')}/{resource.get('id', '')}"
