"""HTTP error responses as FHIR OperationOutcomes (CDS Hooks 3.0-ballot §returning-operationoutcome).

Where each error ends up (the tree itself is in ``cds_service/errors.py``):

    MalformedRequest      -> 400, the issue's ``expression`` names the field
    PayloadTooLarge       -> 413
    UnsupportedMediaType  -> 415, saying which Content-Type to send
    RequestTimeout        -> 408, the body came too slowly
    UnknownService        -> 404
    PrefetchUnavailable   -> 412, one issue per prefetch key that could not be had
    AuthError (security)  -> 401 with an empty body: no hint for an attacker (CDS Hooks BP)
    anything else         -> 500 naming the request id; the traceback goes to the log only
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import orjson
from starlette.responses import Response

from cds_service.errors import HookRequestError, PrefetchUnavailable


class UnknownService(HookRequestError):
    """No CDS service with the id in the URL (HTTP 404)."""


class PayloadTooLarge(HookRequestError):
    """The request body exceeds ``max_request_bytes`` (HTTP 413)."""


class RequestTimeout(HookRequestError):
    """The request body did not arrive within ``request_read_timeout_seconds`` (HTTP 408)."""


class UnsupportedMediaType(HookRequestError):
    """A POST body that is not declared as JSON (HTTP 415)."""


class PrefetchMissing(PrefetchUnavailable):
    """PrefetchUnavailable with the reason for each missing key (one 412 issue each)."""

    def __init__(self, reasons: Mapping[str, str]) -> None:
        super().__init__("required data could not be obtained", missing=list(reasons))
        self.reasons = dict(reasons)


class JSON(Response):
    """JSON rendered with orjson (the hot path renders every card through it)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def issue(
    diagnostics: str, *, code: str = "invalid", expression: Iterable[str] = (), severity: str = "error"
) -> dict[str, Any]:
    out: dict[str, Any] = {"severity": severity, "code": code, "diagnostics": diagnostics}
    expression = [e for e in expression if e]
    if expression:
        out["expression"] = expression
    return out


def outcome(*issues: Mapping[str, Any]) -> dict[str, Any]:
    return {"resourceType": "OperationOutcome", "issue": list(issues)}


def outcome_response(
    status: int,
    diagnostics: str,
    *,
    code: str = "invalid",
    field: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSON:
    return JSON(
        outcome(issue(diagnostics, code=code, expression=[field] if field else [])),
        status_code=status,
        headers=headers,
    )


def unauthorized() -> Response:
    """401 with no body: CDS Hooks best practice says a failed check gets no detail."""
    return Response(status_code=401, headers={"WWW-Authenticate": "Bearer"})
