"""Fill the prefetch a client did not send by querying its FHIR server (CDS Hooks 2.0 §prefetch).

A client may omit prefetch keys, send ``null`` (no data), or an OperationOutcome (it tried
and failed). The service "must check prefetch against the template and fetch the rest
itself" when it has ``fhirServer`` (S2 §prefetch-template, P4-P7). This module does that
with the request's bearer token, a hard timeout per HTTP call, a bound on calls in flight,
and at most ``max_pages`` searchset pages per key. Keys it could not fill are reported in
``FetchResult.missing``; the API turns them into HTTP 412 (``PrefetchUnavailable``).

Never logged: the access token, query strings (they carry patient ids), response bodies.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urljoin, urlsplit

import orjson

if TYPE_CHECKING:  # httpx is imported where a fetch happens: it costs ~0.15 s at start-up
    import httpx

from cds_service.record._model import DataNote

log = logging.getLogger(__name__)

_TOKEN = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
#: the user tokens of S2 §prefetch-tokens and the resource type of ``context.userId`` each needs
_USER_TOKENS = {
    "userPractitionerId": "Practitioner",
    "userPractitionerRoleId": "PractitionerRole",
    "userPatientId": "Patient",
    "userRelatedPersonId": "RelatedPerson",
}
MAX_RESPONSE_BYTES = 20_000_000


class _FetchFailed(Exception):
    """A fetch did not produce data; the message is safe to log and show (no PHI, no token)."""


@dataclass
class FetchResult:
    """The completed prefetch and what happened on the way.

    ``missing`` maps each key that is still absent to the reason; ``fetched`` lists the
    keys filled from fhirServer; ``notes`` are DataNotes for the record (what was
    re-queried, truncated or not applicable).
    """

    prefetch: dict[str, Any]
    notes: list[DataNote] = field(default_factory=list)
    fetched: list[str] = field(default_factory=list)
    missing: dict[str, str] = field(default_factory=dict)


def render_template(template: str, context: Mapping[str, Any]) -> tuple[str | None, list[str]]:
    """Substitute root-level prefetch tokens (S2 §prefetch-tokens).

    Returns the query, or None and the tokens that could not be resolved: a nested path
    (``context.a.b``), an absent or non-primitive context field, or a user token whose
    ``context.userId`` is of another resource type. Values are percent-encoded so a
    crafted id cannot change the path or add parameters.
    """
    unresolved: list[str] = []

    def value_of(token: str) -> str | None:
        if token.startswith("context."):
            name = token.removeprefix("context.")
            value = context.get(name) if "." not in name else None
            if isinstance(value, bool) or not isinstance(value, (str, int, float)) or value == "":
                return None
            return str(value)
        if token in _USER_TOKENS:
            user = context.get("userId")
            if isinstance(user, str) and user.count("/") == 1:
                rtype, rid = user.split("/")
                if rtype == _USER_TOKENS[token] and rid:
                    return rid
        return None

    def substitute(match: re.Match[str]) -> str:
        value = value_of(match.group(1))
        if value is None:
            unresolved.append(match.group(1))
            return ""
        return quote(value, safe="-._~")

    query = _TOKEN.sub(substitute, template)
    return (None, unresolved) if unresolved else (query, [])


def fhir_server_allowed(url: str, allow_http: bool = False) -> str | None:
    """None if we may call ``url``; else why not. https always; http for loopback or if allowed."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return None
    if parts.scheme != "http" or not parts.hostname:
        return "fhirServer is not an absolute http(s) URL"
    if allow_http or _is_loopback(parts.hostname):
        return None
    return "fhirServer must use https (CDS Hooks 2.0 §security-and-safety)"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _is_outcome(value: Any) -> bool:
    return isinstance(value, Mapping) and value.get("resourceType") == "OperationOutcome"


async def complete_prefetch(
    templates: Mapping[str, str],
    request: Mapping[str, Any],
    client: httpx.AsyncClient | Callable[[], httpx.AsyncClient],
    *,
    timeout: float = 5.0,
    concurrency: int = 4,
    max_pages: int = 10,
    allow_http: bool = False,
    on_fetch: Callable[[str], None] | None = None,
) -> FetchResult:
    """Return the request's prefetch with every missing (or OperationOutcome) key filled
    from ``fhirServer`` where possible. ``on_fetch(outcome)`` is told ``ok``, ``not_found``
    or ``error`` per key fetched (for metrics). ``client`` may be a factory, called only
    when something must be fetched (building an HTTP client is not free: most hook calls
    arrive with their prefetch complete)."""
    context = request.get("context") or {}
    given = request.get("prefetch")
    result = FetchResult(prefetch=dict(given) if isinstance(given, Mapping) else {})
    wanted: dict[str, str] = {}
    for key, template in templates.items():
        present = key in result.prefetch
        if present and not _is_outcome(result.prefetch[key]):
            continue
        query, unresolved = render_template(template, context)
        if query is None:
            if not present:  # nothing to ask for: e.g. no encounter in context -> no data
                result.prefetch[key] = None
                result.notes.append(
                    DataNote(
                        "missing",
                        key,
                        f"prefetch '{key}' not applicable: the request has no {', '.join(unresolved)}",
                    )
                )
            continue
        wanted[key] = query
    if not wanted:
        return result

    server = request.get("fhirServer")
    why_not = "no fhirServer to fetch it from" if not server else fhir_server_allowed(str(server), allow_http)
    if why_not:
        for key in wanted:
            if key not in result.prefetch:
                result.missing[key] = why_not
            else:
                result.notes.append(
                    DataNote(
                        "error", key, f"prefetch '{key}' held an error and could not be re-queried: {why_not}"
                    )
                )
        return result

    auth = request.get("fhirAuthorization") or {}
    token = auth.get("access_token") if isinstance(auth, Mapping) else None
    headers = {"Accept": "application/fhir+json, application/json"}
    if isinstance(token, str) and token:
        headers["Authorization"] = f"Bearer {token}"
    if callable(client):
        client = client()
    fetcher = _Fetcher(client, str(server), headers, timeout, asyncio.Semaphore(concurrency), max_pages)

    async def one(key: str, query: str) -> tuple[str, Any, str | None, list[DataNote]]:
        try:
            value, notes = await fetcher.fetch(key, query)
            outcome = "not_found" if value is None else "ok"
            if on_fetch:
                on_fetch(outcome)
            return key, value, None, notes
        except _FetchFailed as exc:
            if on_fetch:
                on_fetch("error")
            log.warning("prefetch fallback for %r failed: %s", key, exc)
            return key, None, str(exc), []

    for key, value, error, notes in await asyncio.gather(*(one(k, q) for k, q in wanted.items())):
        result.notes.extend(notes)
        if error is None:
            result.prefetch[key] = value
            result.fetched.append(key)
        elif key in result.prefetch:  # an OperationOutcome we could not replace: keep it, note it
            result.notes.append(
                DataNote("error", key, f"prefetch '{key}' held an error; re-query failed: {error}")
            )
        else:
            result.missing[key] = f"fetch from fhirServer failed: {error}"
    return result


class _Fetcher:
    """GETs against one FHIR server with one token, bounded in time, pages and concurrency."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        server: str,
        headers: dict[str, str],
        timeout: float,
        gate: asyncio.Semaphore,
        max_pages: int,
    ) -> None:
        self.client, self.headers, self.timeout, self.gate, self.max_pages = (
            client,
            headers,
            timeout,
            gate,
            max_pages,
        )
        self.base = server.rstrip("/") + "/"
        origin = urlsplit(self.base)
        self.origin = (origin.scheme, origin.netloc)

    async def fetch(self, key: str, query: str) -> tuple[Any, list[DataNote]]:
        url = self.base + query.lstrip("/")
        is_read = "?" not in query and query.strip("/").count("/") == 1
        status, body = await self._get(url)
        if status in (404, 410) and is_read:
            return None, [DataNote("missing", key, f"prefetch '{key}': not found on fhirServer")]
        page = self._check(status, body)
        if page.get("resourceType") != "Bundle":
            return page, []
        entries = list(page.get("entry") or [])
        notes: list[DataNote] = []
        pages = 1
        next_url = self._next(page, url)
        while next_url:
            if pages >= self.max_pages:
                notes.append(
                    DataNote(
                        "error",
                        key,
                        f"prefetch '{key}': stopped after {pages} pages; the record may be incomplete",
                    )
                )
                break
            if (urlsplit(next_url).scheme, urlsplit(next_url).netloc) != self.origin:
                notes.append(
                    DataNote("error", key, f"prefetch '{key}': next page on another server not followed")
                )
                break
            status, body = await self._get(next_url)
            page = self._check(status, body)
            entries.extend(page.get("entry") or [])
            pages += 1
            next_url = self._next(page, next_url)
        merged = {k: v for k, v in page.items() if k not in ("entry", "link")} if pages > 1 else dict(page)
        merged["entry"] = entries
        merged.pop("link", None)
        return merged, notes

    @staticmethod
    def _next(page: Mapping[str, Any], current: str) -> str | None:
        for link in page.get("link") or ():
            if (
                isinstance(link, Mapping)
                and link.get("relation") == "next"
                and isinstance(link.get("url"), str)
            ):
                return urljoin(current, link["url"])
        return None

    @staticmethod
    def _check(status: int, body: Any) -> dict[str, Any]:
        if status != 200:
            raise _FetchFailed(f"HTTP {status}")
        if not isinstance(body, dict) or not isinstance(body.get("resourceType"), str):
            raise _FetchFailed("response is not a FHIR resource")
        if body["resourceType"] == "OperationOutcome":
            raise _FetchFailed("server answered with an OperationOutcome")
        return body

    async def _get(self, url: str) -> tuple[int, Any]:
        import httpx  # deferred: importing it costs ~0.15 s of every start-up

        async with self.gate:
            try:
                async with asyncio.timeout(self.timeout):
                    async with self.client.stream(
                        "GET", url, headers=self.headers, timeout=self.timeout
                    ) as resp:
                        chunks, size = [], 0
                        async for chunk in resp.aiter_bytes():
                            size += len(chunk)
                            if size > MAX_RESPONSE_BYTES:
                                raise _FetchFailed("response too large")
                            chunks.append(chunk)
            except TimeoutError:
                raise _FetchFailed(f"no answer within {self.timeout:g} s") from None
            except httpx.HTTPError as exc:
                raise _FetchFailed(f"connection failed ({type(exc).__name__})") from None
        if resp.status_code != 200:
            return resp.status_code, None
        try:
            return 200, orjson.loads(b"".join(chunks))
        except orjson.JSONDecodeError:
            raise _FetchFailed("response is not JSON") from None
