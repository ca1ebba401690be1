"""``POST /fhir/Questionnaire/Ino2Attestation/$populate`` (HL7 SDC, R4) and the Questionnaire read.

Input: a ``Parameters`` resource (SDC "populate" input, profile
parameters-questionnaire-populate-in):

- ``subject`` (valueReference ``Patient/<id>``), required;
- the record, either as ``context`` parameters whose ``content`` parts hold resources (a
  Bundle's entries count one by one; a context named ``draftOrders`` holds the orders of the
  ordering session), or, like a hook call without prefetch, as ``fhirServer`` (valueUrl)
  plus ``fhirAuthorization`` with an ``access_token`` part: the record is then fetched with
  the hooks' own prefetch queries and that bearer token, which is never logged or stored.

Output (SDC populate out): ``Parameters`` with ``response`` (the QuestionnaireResponse,
``status: in-progress``) and, when something was not pre-filled for want of data,
``issues`` (an OperationOutcome of warnings). The caller is authenticated as a hook caller is.
Each call that names its patient leaves one audit row (``audit.POPULATE``), the refused ones too.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from starlette.background import BackgroundTask
from starlette.requests import Request

from cds_service.api.errors import JSON, issue, outcome
from cds_service.api.hooks import read_json
from cds_service.apps.ino2.audit import POPULATE, form_audit
from cds_service.apps.ino2.populate import populate, questionnaire_of
from cds_service.apps.ino2.records import record_from_resources, record_from_server
from cds_service.errors import HookRequestError, MalformedRequest, PrefetchUnavailable

QUESTIONNAIRE_PATH = "/fhir/Questionnaire/Ino2Attestation"
POPULATE_PATH = QUESTIONNAIRE_PATH + "/$populate"


class FhirJSON(JSON):
    media_type = "application/fhir+json"


def _value(param: dict[str, Any], *kinds: str) -> Any:
    for kind in kinds:
        if f"value{kind}" in param:
            return param[f"value{kind}"]
    return None


def parse_input(body: Any) -> dict[str, Any]:
    """The populate inputs; MalformedRequest (400, naming the parameter) if unusable."""
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
        raise MalformedRequest("expected a FHIR Parameters resource (SDC $populate input)", field="resourceType")
    params = body.get("parameter")
    if not isinstance(params, list) or not all(isinstance(p, dict) for p in params):
        raise MalformedRequest("Parameters.parameter must be a list of parameters", field="parameter")
    subject = next((p for p in params if p.get("name") == "subject"), None)
    ref = (_value(subject, "Reference") or {}).get("reference") if subject else None
    if not isinstance(ref, str) or not ref.startswith("Patient/") or ref.count("/") != 1 or ref == "Patient/":
        raise MalformedRequest("'subject' must be a valueReference to Patient/<id>", field="parameter.subject")
    resources: list[dict[str, Any]] = []
    drafts: list[dict[str, Any]] = []
    has_context = False
    for p in params:
        if p.get("name") != "context":
            continue
        has_context = True
        parts = p.get("part") if isinstance(p.get("part"), list) else []
        name = next((_value(x, "String") for x in parts if isinstance(x, dict) and x.get("name") == "name"), None)
        into = drafts if name == "draftOrders" else resources
        for part in parts:
            if not isinstance(part, dict) or part.get("name") != "content":
                continue
            res = part.get("resource")
            if not isinstance(res, dict):
                raise MalformedRequest("each context 'content' part must hold a resource", field="parameter.context")
            if res.get("resourceType") == "Bundle":
                into.extend(e["resource"] for e in res.get("entry") or () if isinstance(e, dict)
                            and isinstance(e.get("resource"), dict))
            else:
                into.append(res)
    server = next((_value(p, "Url", "Uri", "String") for p in params if p.get("name") == "fhirServer"), None)
    token = None
    for p in params:
        if p.get("name") == "fhirAuthorization":
            token = next((_value(x, "String") for x in p.get("part") or () if isinstance(x, dict)
                          and x.get("name") == "access_token"), None)
    if not has_context and not server:
        raise MalformedRequest("give the record as 'context' content or name a 'fhirServer' to read it from",
                               field="parameter.context")
    return {"patient_id": ref.split("/", 1)[1], "resources": resources, "drafts": drafts,
            "has_context": has_context, "server": server, "token": token}


async def populate_endpoint(request: Request) -> JSON:
    """Authenticate and parse as a hook call does, then populate; the audit row is written
    after the response is sent (a refusal's before it is raised)."""
    state = request.app.state.cds
    started = time.perf_counter()
    await state.authenticate(request, POPULATE_PATH)
    given = parse_input(await read_json(request, state.settings.max_request_bytes))
    patient = f"Patient/{given['patient_id']}"
    try:
        response, notes = await _populate(state, given)
    except HookRequestError as exc:
        status = 412 if isinstance(exc, PrefetchUnavailable) else 400
        notes = [f"{status}: {exc.message}"] + [f"{status} missing '{k}'" for k in getattr(exc, "missing", ())]
        await state.write_audit(form_audit(state, POPULATE, started=started, status=status, patient=patient,
                                           notes=notes))
        raise
    response.background = BackgroundTask(state.write_audit, form_audit(state, POPULATE, started=started,
                                                                       status=200, patient=patient, notes=notes))
    return response


async def _populate(state: Any, given: dict[str, Any]) -> tuple[JSON, list[str]]:
    """The populate output and the audit's notes (how much was pre-filled, and the record's
    notes as a hook's audit keeps them: never an answer)."""
    if given["has_context"]:
        record = record_from_resources(given["patient_id"], given["resources"], given["drafts"])
    else:
        record = await record_from_server(state, given["patient_id"], str(given["server"]), given["token"])
    if record.patient is None:
        raise MalformedRequest(f"the record holds no Patient/{given['patient_id']}", field="parameter.subject")
    result = populate(state.engine, record, datetime.now(UTC), drafts_known=bool(given["drafts"]))
    filled = sum(1 for f in result.fills.values() if f.answer is not None)
    notes = [f"pre-filled {filled} of {len(result.fills)} items from the "
             + ("record sent" if given["has_context"] else "FHIR server")]
    notes += [f"{n.kind} {n.key}: {n.message}" for n in record.notes]
    out: list[dict[str, Any]] = [{"name": "response", "resource": result.response}]
    warnings = [*result.issues, *(n.message for n in record.notes)]
    if warnings:
        out.append({"name": "issues",
                    "resource": outcome(*(issue(w, code="incomplete", severity="warning") for w in warnings))})
    return FhirJSON({"resourceType": "Parameters", "parameter": out}), notes


async def questionnaire_endpoint(request: Request) -> JSON:
    """The Questionnaire the response answers (a form filler needs it to render the items)."""
    return FhirJSON(questionnaire_of(request.app.state.cds.engine))
