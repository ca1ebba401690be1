"""``/openapi.json`` and ``/docs``: the HTTP interface described for the integration team.

The endpoints read their bodies by hand (orjson, one pass, the envelope checks in
``envelope.py``) rather than through pydantic models, so FastAPI cannot infer the schemas;
they are written here once, from the CDS Hooks 2.0 specification (Discovery, the HTTP
request, the Card and Feedback objects) and the service's own error bodies. Each service in
the discovery document gets its own paths, so the request schema names its hook's context
(``order-select`` has ``selections``; ``order-sign`` does not). ``/docs`` is Swagger UI over
this document (``docs = false`` turns it off); the JSON itself is always served, needs no
token and holds nothing the discovery document does not.
"""

from __future__ import annotations

from typing import Any

from cds_service import __version__

Schema = dict[str, Any]


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: Schema, description: str) -> Schema:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _outcome(description: str) -> Schema:
    return _json(_ref("OperationOutcome"), description)


_CODING: Schema = {
    "type": "object",
    "properties": {"system": {"type": "string"}, "code": {"type": "string"}, "display": {"type": "string"}},
}
_FHIR_RESOURCE: Schema = {
    "type": "object", "required": ["resourceType"],
    "properties": {"resourceType": {"type": "string"}}, "additionalProperties": True,
    "description": "A FHIR R4 resource (JSON).",
}

SCHEMAS: dict[str, Schema] = {
    "Coding": _CODING,
    "FhirResource": _FHIR_RESOURCE,
    "OperationOutcome": {
        "type": "object", "required": ["resourceType", "issue"],
        "description": "FHIR OperationOutcome: every 4xx/5xx except 401 (empty body). `issue.expression` "
                       "names the request field at fault (e.g. `context.patientId`, `prefetch.observations`); "
                       "a 500 quotes the request id (also in the `X-Request-ID` header).",
        "properties": {
            "resourceType": {"const": "OperationOutcome"},
            "issue": {"type": "array", "items": {"type": "object", "properties": {
                "severity": {"type": "string", "enum": ["fatal", "error", "warning", "information"]},
                "code": {"type": "string"},
                "diagnostics": {"type": "string"},
                "expression": {"type": "array", "items": {"type": "string"}},
            }}},
        },
        "example": {"resourceType": "OperationOutcome", "issue": [{
            "severity": "error", "code": "required", "diagnostics": "context.patientId is required",
            "expression": ["context.patientId"]}]},
    },
    "Service": {
        "type": "object", "required": ["hook", "description", "id"],
        "properties": {
            "hook": {"type": "string"}, "title": {"type": "string"}, "description": {"type": "string"},
            "id": {"type": "string"}, "usageRequirements": {"type": "string"},
            "prefetch": {"type": "object", "additionalProperties": {"type": "string"},
                         "description": "Prefetch key -> FHIR query template (root-level tokens only)."},
        },
    },
    "Discovery": {"type": "object", "required": ["services"],
                  "properties": {"services": {"type": "array", "items": _ref("Service")}}},
    "FhirAuthorization": {
        "type": "object", "required": ["access_token", "token_type", "scope", "subject"],
        "description": "Bearer token for `fhirServer`; never logged or stored.",
        "properties": {"access_token": {"type": "string"}, "token_type": {"const": "Bearer"},
                       "expires_in": {"type": "integer"}, "scope": {"type": "string"},
                       "subject": {"type": "string"}, "patient": {"type": "string"}},
    },
    "Prefetch": {
        "type": "object",
        "description": "Each key of the service's prefetch templates: a resource, a searchset Bundle, "
                       "`null` (no data) or an OperationOutcome. Absent keys and OperationOutcomes are "
                       "fetched from `fhirServer`; a key still missing answers 412.",
        "additionalProperties": {"oneOf": [_ref("FhirResource"), {"type": "null"}]},
    },
    "Card": {
        "type": "object", "required": ["summary", "indicator", "source"],
        "properties": {
            "uuid": {"type": "string", "format": "uuid"},
            "summary": {"type": "string", "maxLength": 140},
            "detail": {"type": "string", "description": "GitHub-flavoured Markdown."},
            "indicator": {"type": "string", "enum": ["info", "warning", "critical"]},
            "source": {"type": "object", "required": ["label"], "properties": {
                "label": {"type": "string"}, "url": {"type": "string", "format": "uri"},
                "icon": {"type": "string", "format": "uri"},
                "topic": {**_CODING, "description": "The rule: system "
                          "https://sact-cds.org/fhir/CodeSystem/sact-cds-rule, code = rule code."}}},
            "suggestions": {"type": "array", "items": {"type": "object", "required": ["label"], "properties": {
                "label": {"type": "string"}, "uuid": {"type": "string"}, "isRecommended": {"type": "boolean"},
                "actions": {"type": "array", "items": {"type": "object", "required": ["type", "description"], "properties": {
                    "type": {"type": "string", "enum": ["create", "update", "delete"]},
                    "description": {"type": "string"}, "resource": _ref("FhirResource"),
                    "resourceId": {"type": "string", "description": "Relative reference (Type/id), "
                                   "for a delete."}}}}}}},
            "selectionBehavior": {"type": "string", "enum": ["at-most-one", "any"]},
            "overrideReasons": {"type": "array", "items": _ref("Coding")},
            "links": {"type": "array", "items": {"type": "object", "required": ["label", "url", "type"],
                      "properties": {"label": {"type": "string"}, "url": {"type": "string"},
                                     "type": {"type": "string", "enum": ["absolute", "smart"]},
                                     "appContext": {"type": "string"}}}},
            "extension": {"type": "object", "description": "`org.sact-cds.knowledge-version`; eligibility "
                          "cards add `org.sact-cds.criteria`."},
        },
    },
    "CdsResponse": {"type": "object", "required": ["cards"], "properties": {
        "cards": {"type": "array", "items": _ref("Card"),
                  "description": "In severity order; `[]` when there is nothing to say."},
        "systemActions": {"type": "array", "items": {"type": "object"}}}},
    "FeedbackRequest": {"type": "object", "required": ["feedback"], "properties": {"feedback": {
        "type": "array", "items": {"type": "object", "required": ["card", "outcome", "outcomeTimestamp"],
                                   "properties": {
            "card": {"type": "string", "description": "The card's uuid."},
            "outcome": {"type": "string", "enum": ["accepted", "overridden"]},
            "outcomeTimestamp": {"type": "string", "format": "date-time"},
            "acceptedSuggestions": {"type": "array", "items": {"type": "object", "required": ["id"],
                                                             "properties": {"id": {"type": "string"}}}},
            "overrideReason": {"type": "object", "properties": {"reason": _ref("Coding"),
                                                               "userComment": {"type": "string"}}}}}}}},
    "Health": {"type": "object", "properties": {"status": {"const": "ok"}}},
    "Ready": {"type": "object", "properties": {
        "status": {"type": "string", "enum": ["ready", "not ready"]},
        "checks": {"type": "object", "properties": {
            "knowledge": {"type": "string", "description": "Knowledge version, or `not loaded`."},
            "store": {"type": "string", "enum": ["ok", "unreachable"]}}}}},
}

_DRAFT_ORDERS: Schema = {**_FHIR_RESOURCE, "description": "A Bundle of the draft orders of this session "
                         "(MedicationRequest; DSTU2 MedicationOrder is read as one)."}
_BASE_CONTEXT: dict[str, Schema] = {
    "userId": {"type": "string", "example": "Practitioner/example-haematologist"},
    "patientId": {"type": "string"},
    "encounterId": {"type": "string"},
    "draftOrders": _DRAFT_ORDERS,
}
CONTEXTS: dict[str, Schema] = {
    "order-select": {"type": "object", "required": ["userId", "patientId", "selections", "draftOrders"],
                     "properties": {**_BASE_CONTEXT, "selections": {
                         "type": "array", "items": {"type": "string"}, "example": ["MedicationRequest/draft-1"],
                         "description": "References (Type/id) to the selected draft orders."}}},
    "order-sign": {"type": "object", "required": ["userId", "patientId", "draftOrders"],
                   "properties": dict(_BASE_CONTEXT)},
}


def _request_schema(hook: str) -> Schema:
    return {"type": "object", "required": ["hook", "hookInstance", "context"], "properties": {
        "hook": {"const": hook}, "hookInstance": {"type": "string"},
        "fhirServer": {"type": "string", "format": "uri",
                       "description": "Base URL for fallback fetches of missing prefetch (https)."},
        "fhirAuthorization": _ref("FhirAuthorization"),
        "context": CONTEXTS.get(hook, {"type": "object"}),
        "prefetch": _ref("Prefetch")}}


_UNAUTHORIZED: Schema = {"description": "Missing or invalid JWT (any reason; empty body, "
                                        "`WWW-Authenticate: Bearer`). Only when issuers are configured."}
_SECURED = [{"cdsHooksJwt": []}]


def _service_paths(service: Schema) -> dict[str, Schema]:
    sid, hook = service["id"], service["hook"]
    call = {"post": {
        "tags": ["CDS services"], "operationId": f"call_{sid}",
        "summary": f"{service.get('title') or sid} ({hook})", "description": service.get("description", ""),
        "security": _SECURED,
        "requestBody": {"required": True, "content": {"application/json": {"schema": _request_schema(hook)}}},
        "responses": {
            "200": _json(_ref("CdsResponse"), "Cards for the prescriber (`[]` when nothing to say)."),
            "400": _outcome("Malformed JSON or envelope, or the wrong hook for this service."),
            "401": _UNAUTHORIZED,
            "404": _outcome("Unknown service."),
            "408": _outcome("The body did not arrive within `request_read_timeout_seconds`."),
            "412": _outcome("Required prefetch neither sent nor fetchable: one issue per key (one uniform text)."),
            "413": _outcome("Body larger than `max_request_bytes`."),
            "415": _outcome("Body not declared `application/json` (or `application/fhir+json`) in UTF-8."),
            "500": _outcome("A genuine server fault; quotes the request id."),
        }}}
    feedback = {"post": {
        "tags": ["CDS services"], "operationId": f"feedback_{sid}", "summary": f"Feedback on {sid}'s cards",
        "description": "Stores `accepted` / `overridden` outcomes (duplicates tolerated), linked by card uuid.",
        "security": _SECURED,
        "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("FeedbackRequest")}}},
        "responses": {
            "200": {"description": "Stored (empty body)."},
            "400": _outcome("Malformed feedback."),
            "401": _UNAUTHORIZED,
            "404": _outcome("Unknown service."),
            "408": _outcome("The body did not arrive within `request_read_timeout_seconds`."),
            "413": _outcome("Body larger than `max_request_bytes`."),
            "415": _outcome("Body not declared `application/json` (or `application/fhir+json`) in UTF-8."),
            "503": _outcome("The audit store could not store it: retry."),
        }}}
    return {f"/cds-services/{sid}": call, f"/cds-services/{sid}/feedback": feedback}


def _ino2_form_paths() -> dict[str, Schema]:
    """The INO2 form's FHIR endpoints (SDC ``$populate`` and the Questionnaire read); the SMART
    app's pages (``/apps/ino2/``) are for a browser launched by the EHR, not an API."""
    parameters = {"type": "object", "required": ["resourceType"],
                  "properties": {"resourceType": {"const": "Parameters"}, "parameter": {"type": "array"}}}
    return {
        "/fhir/Questionnaire/Ino2Attestation/$populate": {"post": {
            "tags": ["INO2 form"], "operationId": "populate_ino2", "summary": "SDC $populate of the INO2 form",
            "description": "SDC input Parameters: `subject`, and the record as `context` content or fetched "
                           "from `fhirServer` with `fhirAuthorization` (the hooks' fetch bounds and allow-list). "
                           "Returns Parameters with `response` (a QuestionnaireResponse, in-progress, each "
                           "pre-filled answer carrying its evidence) and `issues` when something could not be read.",
            "security": _SECURED,
            "requestBody": {"required": True, "content": {"application/fhir+json": {"schema": parameters},
                                                           "application/json": {"schema": parameters}}},
            "responses": {
                "200": {"description": "Parameters: response (+ issues).",
                        "content": {"application/fhir+json": {"schema": parameters}}},
                "400": _outcome("A parameter is missing or unreadable (the issue names it)."),
                "401": _UNAUTHORIZED,
                "412": _outcome("The record could not be fetched from fhirServer."),
                "415": _outcome("Body not declared JSON."),
            }}},
        "/fhir/Questionnaire/Ino2Attestation": {"get": {
            "tags": ["INO2 form"], "operationId": "read_ino2_questionnaire",
            "summary": "The INO2 attestation Questionnaire (FHIR R4)",
            "responses": {"200": {"description": "The Questionnaire.",
                                  "content": {"application/fhir+json": {"schema": {"type": "object"}}}}}}},
    }


def openapi_document(discovery: Schema, *, public_base_url: str = "", ino2_form: bool = False) -> Schema:
    """The OpenAPI 3.1 document for this app's services (from its discovery document), with
    the INO2 form's FHIR endpoints when the app serves them."""
    paths: dict[str, Schema] = {
        "/cds-services": {"get": {
            "tags": ["CDS services"], "operationId": "discovery", "summary": "CDS Hooks discovery",
            "security": _SECURED,
            "responses": {"200": _json(_ref("Discovery"), "The services, their hooks and prefetch templates."),
                          "401": _UNAUTHORIZED}}},
    }
    for service in discovery.get("services", []):
        paths.update(_service_paths(service))
    if ino2_form:
        paths.update(_ino2_form_paths())
    paths["/healthz"] = {"get": {"tags": ["Operations"], "operationId": "healthz", "summary": "Liveness",
                                 "responses": {"200": _json(_ref("Health"), "The process runs.")}}}
    paths["/readyz"] = {"get": {"tags": ["Operations"], "operationId": "readyz", "summary": "Readiness",
                                "responses": {"200": _json(_ref("Ready"), "Knowledge loaded, store answers."),
                                              "503": _json(_ref("Ready"), "Not ready (which check failed).")}}}
    paths["/metrics"] = {"get": {"tags": ["Operations"], "operationId": "metrics", "summary": "Prometheus metrics",
                                 "description": "Keep it on an internal network.",
                                 "responses": {"200": {"description": "Prometheus text format.",
                                                       "content": {"text/plain": {"schema": {"type": "string"}}}}}}}
    document: Schema = {
        "openapi": "3.1.0",
        "info": {"title": "sact-cds CDS Hooks service", "version": __version__,
                 "description": "CDS Hooks 2.0 services for systemic anti-cancer therapy "
                                "(https://cds-hooks.hl7.org/2.0/). Every error except 401 is a FHIR "
                                "OperationOutcome; every response carries `X-Request-ID`."},
        "paths": paths,
        "components": {"schemas": SCHEMAS, "securitySchemes": {"cdsHooksJwt": {
            "type": "http", "scheme": "bearer", "bearerFormat": "JWT",
            "description": "CDS Hooks 2.0 client JWT (iss, aud = the URL called, exp, iat, jti), "
                           "signed with a key of a configured trusted issuer. Not required when the "
                           "service runs unauthenticated on loopback."}}},
    }
    if public_base_url:
        document["servers"] = [{"url": public_base_url.rstrip("/")}]
    return document
