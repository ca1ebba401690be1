"""CORS for browser-based CDS clients such as the reference sandbox (CDS Hooks 2.0 §cors).

The sandbox calls from https://sandbox.cds-hooks.org with ``Authorization`` and
``Content-Type`` headers, so every endpoint must answer the ``OPTIONS`` preflight. Tokens
travel in the Authorization header, never in cookies, so credentials are not allowed.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response
from starlette.types import ASGIApp

log = logging.getLogger("sact_cds.api")
#: Most distinct rejected origins remembered (so a scan cannot grow the set without bound).
_MAX_REMEMBERED = 256

ALLOWED_METHODS = ("GET", "POST", "OPTIONS")
ALLOWED_HEADERS = ("Authorization", "Content-Type", "Accept", "X-Request-ID")


class _LoggingCors(CORSMiddleware):
    """CORSMiddleware that says, once per origin, when it rejects a browser's preflight:
    otherwise a browser client only shows "no cards" and nothing tells the operator why."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._logged: set[str] = set()

    def preflight_response(self, request_headers: Headers) -> Response:
        origin = request_headers.get("origin", "")
        if origin and not self.is_allowed_origin(origin) and origin not in self._logged:
            if len(self._logged) < _MAX_REMEMBERED:
                self._logged.add(origin)
            log.warning(
                "CORS preflight from origin %s rejected: it is not in cors_origins. To allow it, add it to "
                "the setting cors_origins (CDS_CORS_ORIGINS, or [service] cors_origins in the config file).",
                origin,
            )
        return super().preflight_response(request_headers)


def cors(app: ASGIApp, origins: Sequence[str]) -> ASGIApp:
    """Wrap ``app`` so the configured origins may call it from a browser."""
    return _LoggingCors(
        app,
        allow_origins=list(origins),
        allow_methods=list(ALLOWED_METHODS),
        allow_headers=list(ALLOWED_HEADERS),
        expose_headers=["X-Request-ID"],
        allow_credentials=False,
        max_age=600,
    )
