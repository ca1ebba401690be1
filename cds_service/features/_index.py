"""Each dated resource of the record read once: when it took place, whether it is void.

Why this exists: the features ask the same questions of the same resources. Whether a
MedicationAdministration is recent enough to count as active is asked once per ValueSet
(azoles, every TKI generation, other SACT, inotuzumab ...), and when an Observation took
place is asked by the laboratory features and again by the remission check. Each answer
costs up to eight element lookups and a date parse, so a hook read the record's dated
resources about a dozen times (two thirds of the evaluation time for a 500-resource
patient). Here each resource of a type is read once per record and context (memoised on
the record, _memo.py) and the features walk these rows instead, in record order, asking
the ValueSet question last as before.

A resource whose date cannot be read without raising (malformed, e.g. a Period that is a
string) keeps :data:`RAISES` as its moment; :func:`moment` then calls ``effective`` at the
point the scan used to, so the same exception still surfaces from the same feature (a
feature that raises is ``unknown`` with the exception named in its note).
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Final

from cds_service.features._memo import memo
from cds_service.features._read import VOID_STATUSES, _parse_datetime, effective, is_void
from cds_service.record import PatientRecord, Resource

if TYPE_CHECKING:
    from cds_service.features._registry import FeatureContext

#: Stands for "effective() raised on this resource" (see the module docstring).
RAISES: Final = object()

#: One resource: (resource, is_void(resource), effective(resource) or RAISES).
Row = tuple[Resource, bool, "datetime | None | object"]


def _effective_or_marker(resource: Resource) -> datetime | None | object:
    try:
        return effective(resource)
    except Exception:  # noqa: BLE001 - re-raised by moment() where the old scan raised
        return RAISES


def moment(resource: Resource, when: datetime | None | object) -> datetime | None:
    """The row's ``effective`` value; for a :data:`RAISES` row, ``effective`` raises again."""
    if when is RAISES:
        return effective(resource)
    return when  # type: ignore[return-value]


@memo
def dated(record: PatientRecord, ctx: FeatureContext, resource_type: str) -> tuple[Row, ...]:
    """Every record resource of ``resource_type`` (record order) with its void flag and
    ``effective`` moment, read once per record (module docstring).

    The common case is read inline (a ``status`` string, an ``effectiveDateTime`` that
    parses: the first element ``effective`` tries), with the very same functions'
    results; anything else goes through ``is_void`` and ``effective`` as before."""
    out: list[Row] = []
    append = out.append
    for res in record.of_type(resource_type):
        status = res.get("status", "")
        void = status.lower() in VOID_STATUSES if type(status) is str else is_void(res)
        text = res.get("effectiveDateTime")
        when = _parse_datetime(text) if type(text) is str and text else None
        append((res, void, when if when is not None else _effective_or_marker(res)))
    return tuple(out)
