"""Validate a hook request envelope and normalise the quirks of real clients.

What is required comes from CDS Hooks 2.0 §calling-a-cds-service and the Hook Library
STU1 context tables (shared/reference/cds-hooks.md §1.3, §1.3.1). Each failure is a
``MalformedRequest`` whose ``field`` names the offending element (``context.patientId``),
which the API returns as a 400 OperationOutcome.

Accepted on purpose (what real clients send, cds-hooks.md §3): ``draftOrders`` without
``Bundle.type`` (the sandbox) or even without ``resourceType``; ``prefetch: null``; DSTU2
``MedicationOrder`` drafts and selections (read as MedicationRequest by the record);
``fhirAuthorization`` without ``expires_in``/``scope``/``subject`` (the sandbox omits
``expires_in`` when its token has none); any ``hookInstance`` string, repeated or not
(the CRD request generator sends the same one every time). Unknown top-level keys and
``extension`` are ignored.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any
from urllib.parse import urlsplit

from cds_service.errors import MalformedRequest

#: context fields per hook: name -> (required, kind)
HOOK_CONTEXT: dict[str, dict[str, tuple[bool, str]]] = {
    "order-select": {
        "userId": (True, "string"),
        "patientId": (True, "string"),
        "encounterId": (False, "string"),
        "selections": (True, "references"),
        "draftOrders": (True, "bundle"),
    },
    "order-sign": {
        "userId": (True, "string"),
        "patientId": (True, "string"),
        "encounterId": (False, "string"),
        "draftOrders": (True, "bundle"),
    },
    "patient-view": {
        "userId": (True, "string"),
        "patientId": (True, "string"),
        "encounterId": (False, "string"),
    },
}


def _bad(message: str, field: str) -> MalformedRequest:
    return MalformedRequest(message, field=field)


def _string(value: Any, field: str, *, required: bool = True) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise _bad(f"{field} is required and must be a non-empty string", field)
    return value


def validate_request(body: Any, service_id: str, hooks: Collection[str]) -> dict[str, Any]:
    """Check ``body`` against the envelope rules for a service serving ``hooks``.

    Returns a normalised copy (the caller's dict is not changed).
    """
    if not isinstance(body, Mapping):
        raise _bad("the request body must be a JSON object", "(body)")
    hook = _string(body.get("hook"), "hook")
    if hook not in hooks:
        raise _bad(f"service '{service_id}' serves {' / '.join(sorted(hooks))}, not '{hook}'", "hook")
    _string(body.get("hookInstance"), "hookInstance")
    context = body.get("context")
    if not isinstance(context, Mapping):
        raise _bad("context is required and must be a JSON object", "context")
    context = dict(context)
    for name, (required, kind) in HOOK_CONTEXT.get(str(hook), {}).items():
        field = f"context.{name}"
        value = context.get(name)
        if value is None:
            if required:
                raise _bad(f"{field} is required for {hook}", field)
            context.pop(name, None)
            continue
        if kind == "string":
            _string(value, field)
        elif kind == "references":
            context[name] = _references(value, field)
        elif kind == "bundle":
            context[name] = _bundle(value, field)

    out = dict(body)
    out["context"] = context
    server = body.get("fhirServer")
    if server is not None:
        _string(server, "fhirServer")
        parts = urlsplit(server)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise _bad("fhirServer must be an absolute http(s) URL", "fhirServer")
    auth = body.get("fhirAuthorization")
    if auth is not None:
        _authorization(auth)
        if server is None:
            raise _bad("fhirServer is required when fhirAuthorization is present", "fhirServer")
    prefetch = body.get("prefetch")
    if prefetch is None:
        out.pop("prefetch", None)
    elif not isinstance(prefetch, Mapping):
        raise _bad("prefetch must be a JSON object of key -> resource", "prefetch")
    else:
        out["prefetch"] = {k: _bundle_entries(v, f"prefetch.{k}") for k, v in prefetch.items()}
    return out


def _references(value: Any, field: str) -> list[str]:
    if not isinstance(value, list) or not value:
        raise _bad(f"{field} must be a non-empty array of references (Type/id)", field)
    out = []
    for n, ref in enumerate(value):
        if not isinstance(ref, str) or "/" not in ref:
            raise _bad(f"{field}[{n}] must be a reference string like MedicationRequest/123", f"{field}[{n}]")
        # DSTU2 clients select a MedicationOrder; the record reads it as a MedicationRequest.
        out.append(
            "MedicationRequest/" + ref.removeprefix("MedicationOrder/")
            if ref.startswith("MedicationOrder/")
            else ref
        )
    return out


def _bundle(value: Any, field: str) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise _bad(f"{field} must be a FHIR Bundle (JSON object)", field)
    rtype = value.get("resourceType", "Bundle")
    if rtype != "Bundle":
        raise _bad(f"{field} must be a Bundle, not {rtype!r}", f"{field}.resourceType")
    bundle = _bundle_entries(dict(value), field)
    bundle["resourceType"] = "Bundle"  # the sandbox omits Bundle.type; some clients resourceType too
    return bundle


_NO_RESOURCE: dict[str, Any] = {}  # an entry without a resource: allowed, skipped later


def _bundle_entries(value: Any, field: str) -> Any:
    """Reject a Bundle whose ``entry`` is not an array of objects (it cannot be read)."""
    if isinstance(value, Mapping) and value.get("resourceType") == "Bundle" and "entry" in value:
        entries = value["entry"]
        if entries is None:
            return {k: v for k, v in value.items() if k != "entry"}
        if not isinstance(entries, list):
            raise _bad(f"{field}.entry must be an array", f"{field}.entry")
        for n, entry in enumerate(entries):
            # parsed JSON is plain dicts: the exact type test first (the Mapping ABC check
            # costs ~10x more, and a record has thousands of entries)
            if type(entry) is dict and type(entry.get("resource", _NO_RESOURCE)) is dict:
                continue
            if not isinstance(entry, Mapping) or not isinstance(entry.get("resource", {}), Mapping):
                raise _bad(f"{field}.entry[{n}] must be an object with a resource", f"{field}.entry[{n}]")
    return value


def _authorization(auth: Any) -> None:
    field = "fhirAuthorization"
    if not isinstance(auth, Mapping):
        raise _bad(f"{field} must be a JSON object", field)
    _string(auth.get("access_token"), f"{field}.access_token")
    token_type = _string(auth.get("token_type"), f"{field}.token_type")
    if str(token_type).lower() != "bearer":
        raise _bad(f"{field}.token_type must be 'Bearer'", f"{field}.token_type")
    expires = auth.get("expires_in")
    if expires is not None and (isinstance(expires, bool) or not isinstance(expires, (int, float))):
        raise _bad(f"{field}.expires_in must be a number of seconds", f"{field}.expires_in")
    for name in ("scope", "subject", "patient"):
        if auth.get(name) is not None:
            _string(auth.get(name), f"{field}.{name}")
