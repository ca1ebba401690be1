"""CORS for browser-based CDS clients such as the reference sandbox (CDS Hooks 2.0 §cors).

The sandbox calls from https://sandbox.cds-hooks.org with ``Authorization`` and
``Content-Type`` headers, so every endpoint must answer the ``OPTIONS`` preflight. Tokens
travel in the Authorization header, never in cookies, so credentials are not allowed.
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp

ALLOWED_METHODS = ("GET", "POST", "OPTIONS")
ALLOWED_HEADERS = ("Authorization", "Content-Type", "Accept", "X-Request-ID")


def cors(app: ASGIApp, origins: Sequence[str]) -> ASGIApp:
    """Wrap ``app`` so the configured origins may call it from a browser."""
    return CORSMiddleware(
        app,
        allow_origins=list(origins),
        allow_methods=list(ALLOWED_METHODS),
        allow_headers=list(ALLOWED_HEADERS),
        expose_headers=["X-Request-ID"],
        allow_credentials=False,
        max_age=600,
    )
