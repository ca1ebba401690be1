"""Build the CDS Hooks request a real EHR would send for a scenario.

``context`` per the Hook Library (shared/reference/cds-hooks.md §1.3.1): ``userId``,
``patientId``, ``encounterId`` (when the draft order names one), ``selections``
(order-select only) and ``draftOrders`` (a Bundle of every draft order). ``prefetch`` is
filled by evaluating the service's own discovery templates against the bundle's record
(draft orders excluded: unsigned orders are not on the EHR's FHIR server), as a CDS client
does (§1.3.2): a template whose tokens cannot be filled is left out; a read that finds
nothing is ``null``. ``fhirServer`` is set only when the data is served (``--serve-fhir``).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cds_service.replay import fhir_search
from cds_service.replay.scenario import ResolvedScenario

Resource = dict[str, Any]


@dataclass(frozen=True)
class BuiltRequest:
    """The request body plus what the tester should know about how it was made."""

    body: Resource
    notes: tuple[str, ...] = ()


def context_of(resolved: ResolvedScenario) -> Resource:
    """The hook ``context`` of a scenario at its evaluation time."""
    context: Resource = {"userId": resolved.user_id}
    if resolved.patient is not None:
        context["patientId"] = str(resolved.patient.get("id"))
    if resolved.encounter_id:
        context["encounterId"] = resolved.encounter_id
    if resolved.scenario.hook == "order-select":
        context["selections"] = list(resolved.selections)
    context["draftOrders"] = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": order} for order in resolved.draft_orders],
    }
    return context


def fill_prefetch(
    templates: Mapping[str, str],
    context: Mapping[str, Any],
    index: fhir_search.ResourceIndex,
    *,
    now: Any = None,
    valueset_codes: fhir_search.ValueSetCodes | None = None,
) -> tuple[Resource, list[str]]:
    """Evaluate each prefetch template; returns the prefetch object and notes."""
    prefetch: Resource = {}
    notes: list[str] = []
    for key, template in templates.items():
        query = fhir_search.fill_tokens(template, context, now)
        if query is None:
            notes.append(f"prefetch '{key}': tokens of {template!r} cannot be filled; key left out")
            continue
        try:
            result = fhir_search.evaluate(query, index, valueset_codes=valueset_codes)
        except ValueError as exc:
            notes.append(f"prefetch '{key}': {exc}; key left out")
            continue
        if result.ignored:
            notes.append(
                f"prefetch '{key}': search parameter(s) {', '.join(result.ignored)} not supported by "
                "replay; all resources of the type were sent instead"
            )
        prefetch[key] = result.value
    return prefetch, notes


def build_request(
    resolved: ResolvedScenario,
    templates: Mapping[str, str] | None,
    *,
    fhir_server: str | None = None,
    valueset_codes: fhir_search.ValueSetCodes | None = None,
    hook_instance: str | None = None,
) -> BuiltRequest:
    """The hook request for one service (``templates`` = its discovery ``prefetch``;
    None sends no prefetch, for the FHIR-server fallback)."""
    context = context_of(resolved)
    body: Resource = {
        "hook": resolved.scenario.hook,
        "hookInstance": hook_instance or str(uuid.uuid4()),
    }
    if fhir_server:
        body["fhirServer"] = fhir_server
    body["context"] = context
    notes: list[str] = []
    if templates is not None:
        index = fhir_search.ResourceIndex.of(resolved.record)
        prefetch, notes = fill_prefetch(
            templates, context, index, now=resolved.now, valueset_codes=valueset_codes
        )
        if prefetch:
            body["prefetch"] = prefetch
    return BuiltRequest(body, tuple(notes))
