"""The patient's record for the INO2 form: given as resources, or fetched like a hook's prefetch.

Both ways end in ``record.build_record``, as a hook call does. Fetching uses the hooks' own
code (``api.hooks.fetch_missing``) with the services' own prefetch templates, the bearer
token of the caller (never logged), the same deadline, byte budget, FHIR-server allow-list
and page limits; a key that cannot be
fetched makes the whole load fail (``PrefetchMissing``, HTTP 412): a form pre-filled from
half a record could show "none recorded" where the data was merely unreadable.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from cds_service.api.errors import PrefetchMissing
from cds_service.api.hooks import fetch_missing
from cds_service.record import PatientRecord, build_record


def _bundle(resources: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": dict(r)} for r in resources]}


def record_from_resources(
    patient_id: str, resources: Iterable[Mapping[str, Any]], draft_orders: Iterable[Mapping[str, Any]] = ()
) -> PatientRecord:
    """A record from resources the caller sent (the patient among them)."""
    request = {
        "context": {"patientId": patient_id, "draftOrders": _bundle(draft_orders)},
        "prefetch": {"record": _bundle(resources)},
    }
    return build_record(request)


def prefetch_templates(engine: Any) -> dict[str, str]:
    """Every prefetch template of every service: what the cards read is what the form reads."""
    out: dict[str, str] = {}
    for service in engine.services:
        out.update(service.prefetch or {})
    return out


async def record_from_server(state: Any, patient_id: str, fhir_server: str, token: str | None) -> PatientRecord:
    """A record fetched from ``fhir_server`` with ``token`` (PrefetchMissing if incomplete)."""
    templates = prefetch_templates(state.engine)
    request: dict[str, Any] = {"context": {"patientId": patient_id}, "fhirServer": fhir_server}
    if token:
        request["fhirAuthorization"] = {"access_token": token, "token_type": "Bearer"}
    fetch = await fetch_missing(state, templates, request)
    if fetch.missing:
        raise PrefetchMissing({k: f"'{k}' ({templates[k]}): {why}" for k, why in fetch.missing.items()})
    record = build_record({"context": request["context"], "prefetch": fetch.prefetch}, templates.keys())
    if fetch.notes:
        record = dataclasses.replace(record, notes=(*record.notes, *fetch.notes))
    return record
