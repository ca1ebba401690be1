"""SMART App Launch 2.0 EHR launch for the INO2 form: sessions, PKCE, discovery, token exchange.

The app is a public client (no secret): the EHR opens ``/apps/ino2/launch?iss=…&launch=…``;
we read ``{iss}/.well-known/smart-configuration``, send the browser to its
``authorization_endpoint`` with ``launch``, ``aud`` = ``iss``, a random ``state`` and a PKCE
S256 challenge; the ``callback`` checks ``state`` and swaps the code (with the verifier) for
a token at the ``token_endpoint``. Both are single-use.

Tokens stay in the server-side session; the browser holds only an opaque session id
(HttpOnly, SameSite=Lax cookie). Sessions live in process memory and expire after
``smart_session_seconds`` (or when the access token does): one replica, or sticky sessions.
``fhirUser`` is read from the ``id_token`` received from the token endpoint over TLS, which
OpenID Connect Core §3.1.3.7 allows in place of checking its signature; ``aud`` and ``exp``
are still checked.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

import jwt

from cds_service.record import FhirServerPolicy

#: sessions kept at most (a flood of launches must not exhaust memory)
MAX_SESSIONS = 5_000


class LaunchError(Exception):
    """The launch cannot go on; ``str()`` is shown to the user (no token, no patient data)."""


@dataclass
class Session:
    """One clinician's form session (server-side only)."""

    id: str
    expires_at: float
    iss: str = ""
    launch: str = ""
    token_url: str = ""
    state: str | None = None
    verifier: str | None = None
    access_token: str | None = None
    patient: str | None = None
    user: str | None = None
    app_context: str | None = None
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    fills: Any = None
    patient_resource: dict[str, Any] | None = None
    saved: dict[str, Any] | None = None

    @property
    def authorized(self) -> bool:
        return bool(self.access_token and self.patient)


class Sessions:
    """In-memory sessions with expiry; ids are 256-bit random."""

    def __init__(self, ttl_seconds: int, clock: Callable[[], float] = time.time) -> None:
        self.ttl, self.clock = ttl_seconds, clock
        self._by_id: dict[str, Session] = {}
        self._lock = threading.Lock()

    def new(self) -> Session:
        with self._lock:
            self._purge()
            if len(self._by_id) >= MAX_SESSIONS:
                raise LaunchError("Too many open form sessions; try again in a few minutes.")
            session = Session(secrets.token_urlsafe(32), self.clock() + self.ttl)
            self._by_id[session.id] = session
            return session

    def get(self, sid: str | None) -> Session | None:
        if not sid:
            return None
        with self._lock:
            self._purge()
            return self._by_id.get(sid)

    def drop(self, sid: str) -> None:
        with self._lock:
            self._by_id.pop(sid, None)

    def _purge(self) -> None:
        now = self.clock()
        for sid in [s for s, v in self._by_id.items() if v.expires_at <= now]:
            del self._by_id[sid]

    def __len__(self) -> int:
        return len(self._by_id)


def pkce_pair() -> tuple[str, str]:
    """(verifier, S256 challenge) per RFC 7636."""
    verifier = secrets.token_urlsafe(64)
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def same(a: str | None, b: str | None) -> bool:
    """Constant-time equality of two secrets (False if either is missing)."""
    return bool(a) and bool(b) and hmac.compare_digest(str(a), str(b))


def scopes_for(resource_types: Iterable[str]) -> str:
    """The least scopes: launch, identity, read of what the cards read, write of the form."""
    reads = [f"patient/{t}.rs" for t in sorted(set(resource_types))]
    return " ".join(["launch", "openid", "fhirUser", *reads, "patient/QuestionnaireResponse.cu"])


def check_issuer(iss: str, allowed: Iterable[str], policy: FhirServerPolicy) -> str:
    """``iss`` normalised, or LaunchError: it must be configured (loopback only if none are)
    and callable under the service's FHIR-server policy (the allow-list the hooks obey)."""
    if not iss:
        raise LaunchError("The EHR did not say which FHIR server launched the form (no 'iss').")
    iss = iss.rstrip("/")
    listed = {a.rstrip("/") for a in allowed}
    host = urlsplit(iss).hostname or ""
    if listed and iss not in listed:
        raise LaunchError("This FHIR server is not registered with the INO2 form app (smart_issuers).")
    if not listed and host not in ("127.0.0.1", "localhost", "::1"):
        raise LaunchError("No FHIR servers are registered with the INO2 form app (smart_issuers); "
                          "only loopback launches are accepted.")
    why = policy.refusal(iss)
    if why:
        raise LaunchError(f"The launching FHIR server cannot be used: {why}.")
    return iss


def read_configuration(doc: Any, policy: FhirServerPolicy) -> tuple[str, str]:
    """(authorization_endpoint, token_endpoint) of a smart-configuration; LaunchError if the
    server cannot do an EHR launch with PKCE S256, or names endpoints the service's
    FHIR-server policy would not call (plain http off the allow-list)."""
    if not isinstance(doc, dict):
        raise LaunchError("The EHR's SMART configuration could not be read.")
    auth, token = doc.get("authorization_endpoint"), doc.get("token_endpoint")
    if not (isinstance(auth, str) and isinstance(token, str)):
        raise LaunchError("The EHR's SMART configuration has no authorization or token endpoint.")
    if "S256" not in (doc.get("code_challenge_methods_supported") or ()):
        raise LaunchError("The EHR does not support PKCE S256, which the INO2 form app requires.")
    for url in (auth, token):
        if urlsplit(url).scheme not in ("https", "http") or (
                urlsplit(url).scheme == "http" and policy.refusal(url) is not None):
            raise LaunchError("The EHR's SMART endpoints must use https.")
    return auth, token


def authorize_url(endpoint: str, *, client_id: str, redirect_uri: str, launch: str, scope: str, state: str,
                  aud: str, challenge: str) -> str:
    query = urlencode({
        "response_type": "code", "client_id": client_id, "redirect_uri": redirect_uri, "launch": launch,
        "scope": scope, "state": state, "aud": aud, "code_challenge": challenge,
        "code_challenge_method": "S256",
    })
    return endpoint + ("&" if "?" in endpoint else "?") + query


def fhir_user_of(id_token: Any, client_id: str, now: float) -> str | None:
    """``fhirUser`` of an id_token received from the token endpoint (see module docstring)."""
    if not isinstance(id_token, str):
        return None
    try:
        claims = jwt.decode(id_token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return None
    aud = claims.get("aud")
    if client_id not in (aud if isinstance(aud, list) else [aud]):
        return None
    exp = claims.get("exp")
    if isinstance(exp, (int, float)) and exp < now:
        return None
    user = claims.get("fhirUser")
    return user if isinstance(user, str) and user else None
