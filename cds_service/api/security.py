"""JWT bearer authentication of CDS clients (CDS Hooks 2.0 §trusting-cds-clients).

Every call to discovery, a service or feedback carries ``Authorization: Bearer <JWT>``
signed by the client. We accept it only if:

- ``iss`` is a configured trusted issuer, and the header ``alg`` is one that issuer may
  use (ES384/RS384 by default; RS256/ES256 only where configured; never ``none`` or
  HMAC, which settings refuse to configure at all);
- a header ``jku``, if present, is one of the issuer's allow-listed JWK Set URLs (keys
  are still read from the configured source, never fetched from the token's ``jku``);
- the signature verifies with the issuer's key named by ``kid`` (JWKS from a file, or a
  URL fetched through the app's httpx client and cached);
- ``aud`` (string or array) is the URL of the endpoint called under the configured
  ``public_base_url`` (on loopback without one: the bind address), never a URL taken
  from the request's Host header, so a token minted for another service of the same
  issuer is refused;
- ``exp``/``iat``/``jti`` are present (``exp``/``iat`` numbers), the token is current,
  not longer-lived than allowed, no larger than ``jwt_max_bytes``, and its ``jti`` has
  not been used before: first against this process's memory (no I/O for a replay within
  one process), then against the store's ``jwt_seen`` table, which every process on the
  database shares and which survives restarts.

Any failure is answered 401 with no detail; the reason is logged without the token.
"""

from __future__ import annotations

import asyncio
import heapq
import ipaddress
import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import jwt

if TYPE_CHECKING:  # httpx is imported where a fetch happens: it costs ~0.15 s at start-up
    import httpx

from cds_service.settings import Issuer, Settings, SettingsError

log = logging.getLogger(__name__)


class AuthError(Exception):
    """Authentication failed; ``str()`` is a reason safe to log (never the token)."""


class ReplayCache:
    """Seen ``jti`` values, each kept until its token expires; thread-safe and bounded.

    When full of unexpired entries it refuses new tokens (fails closed) rather than
    forgetting one that could then be replayed.
    """

    def __init__(self, max_entries: int = 100_000, clock: Callable[[], float] = time.time) -> None:
        self._seen: dict[str, float] = {}
        self._expiry: list[tuple[float, str]] = []
        self._lock = threading.Lock()
        self._max = max_entries
        self._clock = clock

    def add(self, key: str, expires_at: float) -> bool:
        """Record ``key``; False if it was already seen (a replay) or the cache is full."""
        with self._lock:
            now = self._clock()
            while self._expiry and self._expiry[0][0] < now:
                _, old = heapq.heappop(self._expiry)
                if self._seen.get(old, now + 1) < now:
                    del self._seen[old]
            if key in self._seen:
                return False
            if len(self._seen) >= self._max:
                log.error("JWT replay cache full (%d entries): refusing new tokens", self._max)
                return False
            self._seen[key] = expires_at
            heapq.heappush(self._expiry, (expires_at, key))
            return True

    def __len__(self) -> int:
        return len(self._seen)


class JwksCache:
    """One issuer's JSON Web Key Set, from a file (read once) or a URL (cached for ``ttl``).

    An unknown ``kid`` refetches the URL (key rotation), at most once per
    ``min_refresh_seconds`` so a flood of bad tokens cannot hammer the issuer.
    """

    def __init__(
        self,
        issuer: Issuer,
        client: Callable[[], httpx.AsyncClient],
        ttl: float,
        *,
        min_refresh_seconds: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.issuer, self._client, self._ttl, self._min_refresh, self._clock = (
            issuer,
            client,
            ttl,
            min_refresh_seconds,
            clock,
        )
        self._keys: dict[str | None, jwt.PyJWK] = {}
        self._fetched_at = float("-inf")
        self._lock = asyncio.Lock()
        if issuer.jwks_file is not None:
            try:
                self._keys = _parse_jwks(json.loads(issuer.jwks_file.read_text(encoding="utf-8")))
            except (OSError, ValueError, jwt.PyJWTError) as exc:
                raise SettingsError(
                    f"cannot read JWK Set {issuer.jwks_file} of issuer {issuer.iss}: {exc}",
                    field="trusted_issuers",
                ) from exc

    async def key(self, kid: str | None) -> jwt.PyJWK:
        if self.issuer.jwks_url is not None:
            age = self._clock() - self._fetched_at
            if age > self._ttl or (self._lookup(kid) is None and age > self._min_refresh):
                await self._refresh()
        found = self._lookup(kid)
        if found is None:
            raise AuthError(f"no key {kid!r} in the JWK Set of {self.issuer.iss}")
        return found

    def _lookup(self, kid: str | None) -> jwt.PyJWK | None:
        if kid is None:
            return next(iter(self._keys.values())) if len(self._keys) == 1 else None
        return self._keys.get(kid)

    async def _refresh(self) -> None:
        import httpx  # deferred: importing it costs ~0.15 s of every start-up

        async with self._lock:
            if self._clock() - self._fetched_at <= self._min_refresh:
                return  # another request refreshed meanwhile
            self._fetched_at = self._clock()
            try:
                resp = await self._client().get(
                    str(self.issuer.jwks_url), timeout=5.0, headers={"Accept": "application/json"}
                )
                resp.raise_for_status()
                self._keys = _parse_jwks(resp.json())
            except (httpx.HTTPError, ValueError, jwt.PyJWTError) as exc:
                log.warning("cannot fetch the JWK Set of %s: %s", self.issuer.iss, type(exc).__name__)


def _parse_jwks(data: Any) -> dict[str | None, jwt.PyJWK]:
    """Keys usable for signatures, by ``kid``; symmetric (``oct``) keys are ignored."""
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
        raise ValueError("not a JWK Set")
    keys: dict[str | None, jwt.PyJWK] = {}
    for raw in data["keys"]:
        if not isinstance(raw, dict) or raw.get("kty") == "oct" or raw.get("use", "sig") != "sig":
            continue
        try:
            keys[raw.get("kid")] = jwt.PyJWK(raw)
        except jwt.PyJWTError:
            continue
    return keys


class Authenticator:
    """Checks the bearer JWT of a request against the trusted issuers in ``settings``."""

    def __init__(
        self,
        settings: Settings,
        client: Callable[[], httpx.AsyncClient],
        *,
        clock: Callable[[], float] = time.time,
        claim: Callable[[str, str, float], bool] | None = None,
    ) -> None:
        """``claim(iss, jti, expires_at)`` marks a token used in the shared store and says
        whether it was new (``AuditStore.claim_token``); without it the check is per process."""
        self.settings = settings
        self._claim = claim
        self.issuers = {i.iss: i for i in settings.trusted_issuers}
        self.jwks = {
            i.iss: JwksCache(i, client, settings.jwks_cache_seconds) for i in settings.trusted_issuers
        }
        self.replay = ReplayCache(clock=clock)
        self._clock = clock

    @property
    def enabled(self) -> bool:
        return bool(self.issuers)

    async def verify(self, authorization: str | None, audiences: Sequence[str]) -> dict[str, Any]:
        """Return the verified claims, or raise AuthError. Without issuers: no check, ``{}``."""
        if not self.enabled:
            return {}
        if not authorization or not authorization[:7].lower() == "bearer ":
            raise AuthError("no bearer token")
        token = authorization[7:].strip()
        if len(token) > self.settings.jwt_max_bytes:
            raise AuthError(f"token longer than {self.settings.jwt_max_bytes} bytes")
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError as exc:
            raise AuthError(f"unreadable token ({type(exc).__name__})") from None
        iss = unverified.get("iss")
        issuer = self.issuers.get(iss) if isinstance(iss, str) else None
        if issuer is None:
            raise AuthError("issuer not trusted")
        alg = header.get("alg")
        if alg not in issuer.algorithms:
            raise AuthError(f"algorithm {alg!r} not allowed for {iss}")
        jku = header.get("jku")
        if jku is not None and jku not in issuer.jku:
            raise AuthError(f"jku not allow-listed for {iss}")
        key = await self.jwks[iss].key(header.get("kid"))
        leeway = self.settings.jwt_leeway_seconds
        try:
            claims = jwt.decode(
                token,
                key=key.key,
                algorithms=[alg],
                audience=list(audiences),
                issuer=iss,
                leeway=leeway,
                options={"require": ["iss", "aud", "exp", "iat", "jti"]},
            )
        except jwt.PyJWTError as exc:
            raise AuthError(f"token rejected ({type(exc).__name__})") from None
        exp, iat, jti = claims["exp"], claims["iat"], claims["jti"]
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (exp, iat)):
            raise AuthError("exp and iat must be NumericDate numbers")
        max_life = issuer.max_lifetime_seconds or self.settings.jwt_max_lifetime_seconds
        if not isinstance(jti, str) or not jti or exp - iat > max_life:
            raise AuthError("jti missing or token lifetime too long")
        expires_at = float(exp) + leeway
        if not self.replay.add(f"{iss}|{jti}", expires_at):
            raise AuthError("jti replayed")
        if self._claim is not None:
            from starlette.concurrency import run_in_threadpool

            try:
                fresh = await run_in_threadpool(self._claim, iss, jti, expires_at)
            except Exception as exc:  # noqa: BLE001 - cannot tell a replay from a new token: refuse
                log.error("jti store unavailable (%s): token refused", type(exc).__name__)
                raise AuthError("jti store unavailable") from None
            if not fresh:
                raise AuthError("jti replayed (seen by another process)")
        return claims


def base_urls(settings: Settings) -> list[str]:
    """The base URLs a token's ``aud`` may name: the configured ``public_base_url``, or on a
    loopback bind without one the bind address (``http://127.0.0.1:8080`` and its
    ``localhost`` spelling). Never the request's Host header, which the caller chooses."""
    if settings.public_base_url:
        return [settings.public_base_url.rstrip("/")]
    scheme = "https" if settings.ssl_certfile else "http"
    host = f"[{settings.host.strip('[]')}]" if ":" in settings.host else settings.host
    urls = [f"{scheme}://{host}:{settings.port}"]
    if is_loopback(settings.host) and host != "localhost":
        urls.append(f"{scheme}://localhost:{settings.port}")
    return urls


def endpoint_urls(bases: Sequence[str], path: str) -> list[str]:
    """The URLs a client may have used as ``aud`` for the endpoint at ``path`` (trailing
    slashes ignored)."""
    out: list[str] = []
    for base in bases:
        url = (base.rstrip("/") + path).rstrip("/")
        out += [url, url + "/"]
    return out


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_startup(settings: Settings, *, warn: bool = True) -> None:
    """Refuse to serve unauthenticated on a non-loopback address unless explicitly allowed;
    otherwise warn loudly that nobody is authenticated (``warn=False``: check only). With
    issuers on a non-loopback address ``public_base_url`` is required: it is what ``aud``
    is checked against, and nothing in a request may stand in for it."""
    if settings.trusted_issuers:
        if not is_loopback(settings.host) and not settings.public_base_url:
            raise SettingsError(
                f"refusing to serve on {settings.host} without public_base_url: JWT `aud` is checked "
                "against it (set CDS_PUBLIC_BASE_URL or public_base_url in [service] to the https URL "
                "clients call, e.g. https://cds.example.org)",
                field="public_base_url",
            )
        return
    if not is_loopback(settings.host) and not settings.allow_unauthenticated:
        raise SettingsError(
            f"refusing to serve without authentication on {settings.host}: configure trusted issuers "
            "(CDS_TRUSTED_ISSUERS or [[security.issuers]] in the config file) or pass --allow-unauthenticated",
            field="trusted_issuers",
        )
    if warn:
        log.warning(
            "NO TRUSTED ISSUERS CONFIGURED: serving WITHOUT authentication on %s; "
            "any caller can invoke the service",
            settings.host,
        )
