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


async def read_resource(state: Any, fhir_server: str, token: str | None, reference: str,
                        timeout: float) -> dict[str, Any] | None:
    """``Type/id`` (or an absolute URL on ``fhir_server``) read from the EHR with the
    session's token, for display only; None when it is not there or cannot be read (a draft
    order lives in the EHR's ordering session and is often not on its FHIR server)."""
    base = fhir_server.rstrip("/")
    if reference.startswith(base + "/"):
        reference = reference[len(base) + 1:]
    parts = reference.split("/")
    if len(parts) != 2 or not parts[0].isalpha() or not all(c.isalnum() or c in "-." for c in parts[1]):
        return None
    headers = {"Accept": "application/fhir+json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    try:
        resp = await state.http().get(f"{base}/{reference}", headers=headers, timeout=timeout)
        found = resp.json() if resp.status_code == 200 else None
    except Exception:  # noqa: BLE001 - display only: anything unreadable is "not found"
        return None
    return found if isinstance(found, dict) and found.get("resourceType") == parts[0] else None


#: what each resource type the form reads is, to a clinician
_PLAIN = {
    "Patient": "the patient's details", "Condition": "diagnoses", "MedicationRequest": "medication orders",
    "MedicationAdministration": "medicines given", "MedicationStatement": "medication history",
    "Observation": "results and observations", "QuestionnaireResponse": "forms already completed",
    "Procedure": "procedures", "ServiceRequest": "requests for tests and referrals",
}


def unreadable(engine: Any, keys: Iterable[str]) -> str:
    """The parts of the record that could not be read, in words ("results and observations,
    diagnoses"), from the prefetch keys that failed (whose names are for developers)."""
    templates = prefetch_templates(engine)
    failed = set(keys)
    words = []
    for key in [k for k in templates if k in failed] + sorted(failed - templates.keys()):
        rtype = templates.get(key, "").split("?", 1)[0].split("/", 1)[0]
        text = _PLAIN.get(rtype, "part of the record")
        if text not in words:
            words.append(text)
    return ", ".join(words) or "part of the record"
