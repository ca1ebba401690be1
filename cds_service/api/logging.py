"""Structured JSON logs that never carry tokens or patient data.

Each line is one JSON object: time, level, logger, message, and from the request context
``request_id``, ``service``, ``hook_instance`` (a random UUID from the client, not PHI),
``cards`` (how many a hook answered) plus any ``latency_ms``/``status`` passed as ``extra``.
A hook call writes one line (the request line, with its card count): logging is the
largest per-request cost after parsing the body when it is on, and none when it is off
(callers check ``isEnabledFor`` before building what a line needs). Messages are written without
patient ids or names by the code; as a second line of defence a filter masks anything
that looks like a JWT or a bearer token before it is formatted.
"""

from __future__ import annotations

import contextvars
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

import orjson

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
service: contextvars.ContextVar[str | None] = contextvars.ContextVar("service", default=None)
hook_instance: contextvars.ContextVar[str | None] = contextvars.ContextVar("hook_instance", default=None)
#: ASGI scope key where the hook endpoint leaves its card count for the request line
CARDS_KEY = "sact_cds.cards"

_JWT = re.compile(r"eyJ[\w-]{4,}\.[\w-]{4,}\.[\w-]*")
_BEARER = re.compile(r"(?i)(bearer\s+)[^\s\"',]+")
_EXTRA_FIELDS = ("latency_ms", "status", "method", "path", "cards", "outcome")
_CONTEXT = {"request_id": request_id, "service": service, "hook_instance": hook_instance}
#: set on a record once RedactFilter has masked its message (the formatter need not again)
_REDACTED = "_sact_redacted"


def redact(text: str) -> str:
    """Mask JWTs and bearer tokens in ``text``."""
    return _BEARER.sub(r"\1[redacted]", _JWT.sub("[redacted-jwt]", text))


class RedactFilter(logging.Filter):
    """Rewrites a record's message with tokens masked (runs before any formatter)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        setattr(record, _REDACTED, True)
        for name, var in _CONTEXT.items():
            if getattr(record, name, None) is None:
                setattr(record, name, var.get())
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line (``log_format = json``)."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage() if getattr(record, _REDACTED, False) else redact(record.getMessage()),
        }
        for name in (*_CONTEXT, *_EXTRA_FIELDS):
            value = getattr(record, name, None)
            if value is None and name in _CONTEXT:
                value = _CONTEXT[name].get()
            if value is not None:
                out[name] = value
        if record.exc_info:
            out["exception"] = redact(self.formatException(record.exc_info))
        return orjson.dumps(out, default=str).decode()


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")


def quiet_http_clients() -> None:
    """httpx logs every request URL at INFO; our fhirServer URLs carry patient ids."""
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)


def configure_logging(level: str = "INFO", fmt: str = "json") -> None:
    """Send every log (ours, uvicorn's) to stderr through one redacting handler."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RedactFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    quiet_http_clients()
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
