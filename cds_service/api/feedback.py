"""``POST /cds-services/{id}/feedback``: what the clinician did with our cards (CDS Hooks 2.0 §feedback).

Body ``{"feedback": [item, ...]}``; each item: ``card`` (the card uuid), ``outcome``
``accepted`` | ``overridden``, ``outcomeTimestamp`` (ISO 8601), ``acceptedSuggestions``
(required when accepted: ``[{"id": suggestion uuid}]``), ``overrideReason`` (optional,
only when overridden: ``{reason: Coding, userComment}``). A client may send the same
feedback more than once, so an identical item is stored once and never an error. Unlike a
hook call, feedback exists only to be stored: if the store is down the answer is 503, so
the client may retry.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from cds_service.api.errors import outcome_response
from cds_service.api.hooks import read_json
from cds_service.errors import MalformedRequest
from cds_service.store import FeedbackItem

log = logging.getLogger(__name__)
OUTCOMES = ("accepted", "overridden")


def parse_feedback(body: Any) -> list[FeedbackItem]:
    """Validate a feedback body into items; MalformedRequest names the bad field."""
    if not isinstance(body, Mapping):
        raise MalformedRequest("the request body must be a JSON object", field="(body)")
    items = body.get("feedback")
    if not isinstance(items, list) or not items:
        raise MalformedRequest("feedback must be a non-empty array", field="feedback")
    return [_item(raw, f"feedback[{n}]") for n, raw in enumerate(items)]


def _text(value: Any, field: str, *, required: bool = True) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise MalformedRequest(f"{field} must be a non-empty string", field=field)
    return value


def _item(raw: Any, where: str) -> FeedbackItem:
    if not isinstance(raw, Mapping):
        raise MalformedRequest(f"{where} must be an object", field=where)
    card = _text(raw.get("card"), f"{where}.card")
    outcome = raw.get("outcome")
    if outcome not in OUTCOMES:
        raise MalformedRequest(f"{where}.outcome must be accepted or overridden", field=f"{where}.outcome")
    stamp = _text(raw.get("outcomeTimestamp"), f"{where}.outcomeTimestamp")
    try:
        datetime.fromisoformat(str(stamp))
    except ValueError:
        raise MalformedRequest(
            f"{where}.outcomeTimestamp must be an ISO 8601 instant", field=f"{where}.outcomeTimestamp"
        ) from None

    accepted: list[str] = []
    suggestions = raw.get("acceptedSuggestions")
    if outcome == "accepted":
        if not isinstance(suggestions, list):
            raise MalformedRequest(
                f"{where}.acceptedSuggestions is required when accepted", field=f"{where}.acceptedSuggestions"
            )
        for n, s in enumerate(suggestions):
            sid = s.get("id") if isinstance(s, Mapping) else None
            accepted.append(str(_text(sid, f"{where}.acceptedSuggestions[{n}].id")))
    elif suggestions is not None:
        raise MalformedRequest(
            f"{where}.acceptedSuggestions only applies when accepted", field=f"{where}.acceptedSuggestions"
        )

    code = system = display = comment = None
    reason = raw.get("overrideReason")
    if reason is not None:
        if outcome != "overridden":
            raise MalformedRequest(
                f"{where}.overrideReason only applies when overridden", field=f"{where}.overrideReason"
            )
        if not isinstance(reason, Mapping):
            raise MalformedRequest(
                f"{where}.overrideReason must be an object", field=f"{where}.overrideReason"
            )
        coding = reason.get("reason")
        if coding is not None:
            if not isinstance(coding, Mapping):
                raise MalformedRequest(
                    f"{where}.overrideReason.reason must be a Coding", field=f"{where}.overrideReason.reason"
                )
            code = _text(coding.get("code"), f"{where}.overrideReason.reason.code")
            system = _text(coding.get("system"), f"{where}.overrideReason.reason.system")
            display = _text(coding.get("display"), f"{where}.overrideReason.reason.display", required=False)
        comment = reason.get("userComment")
        if comment is not None and not isinstance(comment, str):
            raise MalformedRequest(
                f"{where}.overrideReason.userComment must be a string",
                field=f"{where}.overrideReason.userComment",
            )
    return FeedbackItem(str(card), str(outcome), str(stamp), tuple(accepted), code, system, display, comment)


async def feedback(request: Request) -> Response:
    state = request.app.state.cds
    service_id = request.path_params["service_id"]
    # aud = the feedback URL (the spec); the service URL is tolerated (jti still single-use)
    await state.authenticate(request, f"/cds-services/{service_id}/feedback", parent_too=True)
    state.lookup(service_id)
    settings = state.settings
    items = parse_feedback(
        await read_json(request, settings.max_request_bytes, settings.request_read_timeout_seconds)
    )
    try:
        new = await run_in_threadpool(state.store.record_feedback, service_id, items)
    except SQLAlchemyError as exc:
        state.metrics.errors.labels("audit").inc()
        log.error("feedback not stored: audit store failed (%s)", type(exc).__name__)
        return outcome_response(503, "feedback could not be stored; please retry", code="transient")
    for item in items:
        state.metrics.feedback.labels(item.outcome).inc()
    log.info("feedback: %d item(s), %d new", len(items), new)
    return Response(status_code=200)
