"""SMART App Launch 2.0 EHR launch for the INO2 form: sessions, PKCE, discovery, token exchange.

The app is a public client (no secret): the EHR opens ``/apps/ino2/launch?iss=…&launch=…``;
we read ``{iss}/.well-known/smart-configuration``, send the browser to its
``authorization_endpoint`` with ``launch``, ``aud`` = ``iss``, a random ``state`` and a PKCE
S256 challenge; the ``callback`` checks ``state`` and swaps the code (with the verifier) for
a token at the ``token_endpoint``. Both are single-use.

Tokens stay in the server-side session; the browser holds only an opaque session id
(HttpOnly, SameSite=Lax cookie). Sessions live in the service's database (table
``form_session``), so any replica or worker process can serve any step, and expire after
``smart_session_seconds`` (or when the access token does). The ``state`` is used up in the
database by the first callback that presents the session, on whichever replica.
``fhirUser`` is read from the ``id_token`` received from the token endpoint over TLS, which
OpenID Connect Core §3.1.3.7 allows in place of checking its signature; ``aud`` and ``exp``
are still checked.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, fields
from typing import Any, TypeVar
from urllib.parse import urlencode, urlsplit

import jwt
import orjson
from cryptography.fernet import Fernet, InvalidToken

from cds_service.apps.ino2.populate import Fill
from cds_service.features import Evidence
from cds_service.record import FhirServerPolicy
from cds_service.store import FormSessionStore, session_key

log = logging.getLogger(__name__)

T = TypeVar("T")
_TEAM = " Tell the EHR team."
_AGAIN = " Open the form again from the EHR; if this persists, tell the EHR team."

#: unexpired sessions kept at most, all replicas together (a flood of launches must not fill the database)
MAX_SESSIONS = 5_000


class LaunchError(Exception):
    """The launch cannot go on; ``str()`` is shown to the clinician in plain words (no token,
    no patient data, no setting or parameter names); ``detail`` says what to fix in terms
    the EHR team uses, for the log."""

    def __init__(self, message: str, detail: str | None = None) -> None:
        super().__init__(message)
        self.detail = detail


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
    audit_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    fills: Any = None
    patient_resource: dict[str, Any] | None = None
    saved: dict[str, Any] | None = None
    #: each rendered form's one-time token -> "open" (may be saved) or "saved" (was saved once)
    forms: dict[str, str] = field(default_factory=dict)
    #: the save in flight, if any: {"form": token, "since": epoch seconds} (one per session at a time)
    saving: dict[str, Any] | None = None
    #: what the clinician reads instead of ids: the signer's name, the orders the form was opened from
    user_name: str | None = None
    orders_text: list[str] | None = None
    version: int = 0  # of the row this was read from (``Sessions.update``)

    @property
    def authorized(self) -> bool:
        return bool(self.access_token and self.patient)


#: Session fields kept in the row's ``data`` (``id`` is the row key, hashed; ``state`` its
#: ``pending`` column, hashed; ``expires_at`` a column of its own).
_DATA = ("iss", "launch", "token_url", "verifier", "access_token", "patient", "user", "app_context", "csrf",
         "audit_id", "patient_resource", "saved", "forms", "saving", "user_name", "orders_text")
_SEALED = "fernet:"


def _fills_json(fills: Any) -> Any:
    if fills is None:
        return None
    return {link: {"answer": f.answer, "reason": f.reason, "evidence": [asdict(e) for e in f.evidence]}
            for link, f in fills.items()}


def _fills_of(data: Any) -> Any:
    if data is None:
        return None
    return {link: Fill(link, f["answer"], f["reason"], tuple(Evidence(**e) for e in f["evidence"]))
            for link, f in data.items()}


class Sessions:
    """Form sessions in the service's database, so every replica and worker process sees
    the same ones (``store.FormSessionStore``). Ids are 256-bit random; the database holds
    their SHA-256, never the cookie value. With ``key`` (setting ``smart_session_key``) the
    session data, access token and record extract included, is encrypted (Fernet:
    AES-128-CBC + HMAC-SHA256) before it leaves the process, and sealed with the row's own
    key inside, so a row sealed with another key, an unsealed row, or sealed data copied to
    another row reads as no session. Every method may raise ``SQLAlchemyError`` (database down)."""

    def __init__(self, store: FormSessionStore, ttl_seconds: int, key: str = "",
                 clock: Callable[[], float] = time.time) -> None:
        self.store, self.ttl, self.clock = store, ttl_seconds, clock
        self._fernet = Fernet(base64.urlsafe_b64encode(hashlib.sha256(key.encode()).digest())) if key else None

    def new(self, **values: Any) -> Session:
        """A new session holding ``values`` (with a fresh OAuth ``state``); LaunchError when
        ``MAX_SESSIONS`` are open."""
        session = Session(secrets.token_urlsafe(32), self.clock() + self.ttl, state=secrets.token_urlsafe(32),
                          **values)
        if not self.store.open(session_key(session.id), self._seal(session), session_key(str(session.state)),
                               session.expires_at, self.clock()):
            raise LaunchError("Too many open form sessions; try again in a few minutes.")
        return session

    def get(self, sid: str | None) -> Session | None:
        if not sid:
            return None
        row = self.store.load(session_key(sid), self.clock())
        return self._open(sid, row[0], row[1], row[2]) if row else None

    def claim(self, sid: str | None) -> tuple[Session, str] | None:
        """The session and the SHA-256 of its OAuth state, to exactly one caller: the state
        (and the PKCE verifier with it) is used up in the database whatever happens next."""
        if not sid:
            return None
        now = self.clock()
        row = self.store.claim(session_key(sid), now)
        if row is None:
            return None
        session = self._open(sid, row[1], row[2], row[3])
        return (session, row[0]) if session else None

    def update(self, session: Session, **changes: Any) -> bool:
        """Set ``changes`` on ``session`` and write it back. If another step of the same
        session wrote it meanwhile (another replica, another tab), ``session`` is refreshed
        from the database and ``changes`` applied again, so neither write is lost. False if
        the session expired or is gone."""

        def apply(s: Session) -> tuple[bool, None]:
            for name, value in changes.items():
                setattr(s, name, value)
            return True, None

        return self.change(session, apply)[0]

    def change(self, session: Session, apply: Callable[[Session], tuple[bool, T]]) -> tuple[bool, T | None]:
        """Compare-and-set on the session row: ``apply(session)`` decides from the session as
        stored and changes it, returning (write?, result); the write names the version read,
        so if another step (replica, tab, double click) wrote meanwhile, ``session`` is
        refreshed from the database and ``apply`` decides again. (False, None) if the session
        expired or is gone; LaunchError if it keeps being changed elsewhere."""
        for _ in range(8):
            write, result = apply(session)
            if not write:
                return True, result
            if self.store.save(session_key(session.id), self._seal(session), session.expires_at, session.version,
                               self.clock()):
                session.version += 1
                return True, result
            if not self.refresh(session):
                return False, None
        raise LaunchError("This form session is being changed elsewhere; open the form again from the EHR.")

    def refresh(self, session: Session) -> bool:
        """Read ``session`` again from the database (False if it expired or is gone)."""
        fresh = self.get(session.id)
        if fresh is None:
            return False
        for f in fields(Session):
            setattr(session, f.name, getattr(fresh, f.name))
        return True

    def __len__(self) -> int:
        return self.store.count(self.clock())

    def _seal(self, session: Session) -> str:
        data = {name: getattr(session, name) for name in _DATA}
        data["fills"] = _fills_json(session.fills)
        if self._fernet is None:
            return orjson.dumps(data).decode("utf-8")
        data["row"] = session_key(session.id)  # sealed data is this row's only
        return _SEALED + self._fernet.encrypt(orjson.dumps(data)).decode("ascii")

    def _open(self, sid: str, stored: str, expires_at: float, version: int) -> Session | None:
        try:
            if self._fernet is None:
                data = orjson.loads(stored)
            else:  # with a key only sealed rows count: nothing written around the key is let in
                if not stored.startswith(_SEALED):
                    raise InvalidToken
                data = orjson.loads(self._fernet.decrypt(stored.removeprefix(_SEALED).encode("ascii")))
                if data.pop("row", None) != session_key(sid):
                    raise InvalidToken
            fills = _fills_of(data.pop("fills", None))
            return Session(sid, expires_at, fills=fills, version=version,
                           **{k: v for k, v in data.items() if k in _DATA})
        except (InvalidToken, ValueError, TypeError, KeyError):
            log.error("a form session could not be read: is smart_session_key the same on every replica?")
            return None


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
        raise LaunchError("The EHR did not say which record system opened the form." + _AGAIN, "no 'iss'")
    iss = iss.rstrip("/")
    listed = {a.rstrip("/") for a in allowed}
    host = urlsplit(iss).hostname or ""
    if listed and iss not in listed:
        raise LaunchError("This EHR is not registered with the INO2 form app." + _TEAM,
                          "iss is not listed in smart_issuers")
    if not listed and host not in ("127.0.0.1", "localhost", "::1"):
        raise LaunchError("No EHR is registered with the INO2 form app yet, so it only opens from this computer."
                          + _TEAM, "smart_issuers is empty: only loopback launches are accepted")
    why = policy.refusal(iss)
    if why:
        raise LaunchError("The EHR that opened the form is not one the service may read from." + _TEAM, why)
    return iss


def read_configuration(doc: Any, policy: FhirServerPolicy) -> tuple[str, str]:
    """(authorization_endpoint, token_endpoint) of a smart-configuration; LaunchError if the
    server cannot do an EHR launch with PKCE S256, or names endpoints the service's
    FHIR-server policy would not call (plain http off the allow-list)."""
    if not isinstance(doc, dict):
        raise LaunchError("The EHR's sign-in settings could not be read." + _AGAIN,
                          "/.well-known/smart-configuration unreadable")
    auth, token = doc.get("authorization_endpoint"), doc.get("token_endpoint")
    if not (isinstance(auth, str) and isinstance(token, str)):
        raise LaunchError("The EHR's sign-in settings are incomplete." + _TEAM,
                          "smart-configuration has no authorization_endpoint or token_endpoint")
    if "S256" not in (doc.get("code_challenge_methods_supported") or ()):
        raise LaunchError("The EHR does not offer the secure sign-in the INO2 form app requires." + _TEAM,
                          "no PKCE S256 in code_challenge_methods_supported")
    for url in (auth, token):
        if urlsplit(url).scheme not in ("https", "http") or (
                urlsplit(url).scheme == "http" and policy.refusal(url) is not None):
            raise LaunchError("The EHR's sign-in addresses are not secure." + _TEAM,
                              "SMART endpoints must use https")
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
