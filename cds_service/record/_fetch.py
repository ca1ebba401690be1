"""Fill the prefetch a client did not send by querying its FHIR server (CDS Hooks 2.0 §prefetch).

A client may omit prefetch keys, send ``null`` (no data), or an OperationOutcome (it tried
and failed). The service "must check prefetch against the template and fetch the rest
itself" when it has ``fhirServer`` (S2 §prefetch-template, P4-P7). This module does that
with the request's bearer token, within budgets per hook call: a hard timeout per HTTP
call, one deadline for the whole fetch phase, one byte budget shared by every key and
page, a bound on calls in flight and at most ``max_pages`` searchset pages per key. Keys
it could not fill are reported in ``FetchResult.missing``; the API turns them into HTTP
412 (``PrefetchUnavailable``).

Which servers it calls (:class:`FhirServerPolicy`): https (plain http only where
allowed), and never a loopback, private, link-local or otherwise non-public address
unless the site lists that server in ``fhir_server_allowlist``; when the list is not
empty, only the servers on it. A client therefore cannot point the service at its own
network. What the client is told is one text for every failure (:data:`NOT_OBTAINABLE`):
whether a port was closed, slow or refused is never revealed; the reason is logged
(without query strings) and kept in the audit row.

Never logged: the access token, query strings (they carry patient ids), response bodies.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
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
#: What a client is told for any key the fallback could not fill: the same words whether
#: the server was refused by policy, unreachable, slow, too large or answered an error.
NOT_OBTAINABLE = "not in the request's prefetch and could not be obtained from fhirServer"


class _FetchFailed(Exception):
    """A fetch did not produce data; the message is safe to log and show (no PHI, no token)."""


@dataclass
class FetchResult:
    """The completed prefetch and what happened on the way.

    ``missing`` maps each key that is still absent to what the client is told;
    ``reasons`` the real reason per key that could not be fetched (for the audit, never
    the response); ``fetched`` lists the keys filled from fhirServer; ``notes`` are
    DataNotes for the record (what was re-queried, truncated or not applicable).
    """

    prefetch: dict[str, Any]
    notes: list[DataNote] = field(default_factory=list)
    fetched: list[str] = field(default_factory=list)
    missing: dict[str, str] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)  # the real reason per key: audit only


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


@dataclass(frozen=True)
class FhirServerPolicy:
    """Which ``fhirServer`` URLs the service may call (see the module docstring).

    ``allowlist`` holds base URLs; an entry matches a fhirServer with the same scheme and
    host, the same port if the entry names one (``http://127.0.0.1`` allows every port),
    and a path under the entry's path.
    """

    allowlist: tuple[str, ...] = ()
    allow_http: bool = False

    def refusal(self, url: str) -> str | None:
        """None if ``url`` may be called as far as the URL alone tells; else why not."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return "fhirServer is not an absolute http(s) URL"
        if self.allowlist:
            if not any(_matches(parts, entry) for entry in self.allowlist):
                return "fhirServer is not on the fhir_server_allowlist"
            return None
        if parts.scheme == "http" and not self.allow_http:
            return "fhirServer must use https (CDS Hooks 2.0 §security-and-safety)"
        address = _ip(parts.hostname)
        if parts.hostname.lower() == "localhost" or (address is not None and not address.is_global):
            return "fhirServer is a loopback or private address not on the fhir_server_allowlist"
        return None

    def resolves_public(self, addresses: list[str]) -> bool:
        """Whether every address a host name resolved to is public (only checked when the
        allow-list is empty: a listed server may live on a private network)."""
        return bool(self.allowlist) or all(
            (ip := _ip(a)) is not None and ip.is_global for a in addresses
        )


def _matches(parts: Any, entry: str) -> bool:
    allowed = urlsplit(entry)
    if (allowed.scheme, (allowed.hostname or "").lower()) != (parts.scheme, parts.hostname.lower()):
        return False
    if allowed.port is not None and allowed.port != parts.port:
        return False
    prefix = allowed.path.rstrip("/")
    return parts.path == prefix or parts.path.startswith(prefix + "/")


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return None


def fhir_server_allowed(url: str, allow_http: bool = False, allowlist: tuple[str, ...] = ()) -> str | None:
    """None if we may call ``url`` (by the URL alone); else why not (FhirServerPolicy)."""
    return FhirServerPolicy(tuple(allowlist), allow_http).refusal(url)


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
    deadline: float = 10.0,
    max_bytes: int = 20_000_000,
    policy: FhirServerPolicy | None = None,
    resolve: Callable[[str], Awaitable[list[str]]] | None = None,
) -> FetchResult:
    """Return the request's prefetch with every missing (or OperationOutcome) key filled
    from ``fhirServer`` where possible. ``on_fetch(outcome)`` is told ``ok``, ``not_found``
    or ``error`` per key fetched (for metrics). ``client`` may be a factory, called only
    when something must be fetched (building an HTTP client is not free: most hook calls
    arrive with their prefetch complete). ``deadline`` (seconds) and ``max_bytes`` bound
    the whole fetch phase of this hook call, all keys and pages together. ``resolve(host)``
    gives the addresses a host name stands for, so a name that points at a private
    address is refused like the address itself (the service passes DNS; tests that
    inject a transport pass nothing)."""
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
    policy = policy or FhirServerPolicy(allow_http=allow_http)
    if not server:
        _give_up(result, wanted, "no fhirServer to fetch it from", "no fhirServer to fetch it from")
        return result
    why_not = policy.refusal(str(server))
    host = urlsplit(str(server)).hostname or ""
    if why_not is None and resolve is not None and _ip(host) is None:
        try:
            async with asyncio.timeout(min(timeout, deadline)):
                addresses = await resolve(host)
        except (OSError, TimeoutError):
            addresses = []  # unresolvable: the fetch itself fails below, with the same text
        if addresses and not policy.resolves_public(addresses):
            why_not = "fhirServer resolves to a loopback or private address not on the fhir_server_allowlist"
    if why_not:
        log.warning("prefetch fallback refused: %s", why_not)
        _give_up(result, wanted, NOT_OBTAINABLE, why_not)
        return result

    auth = request.get("fhirAuthorization") or {}
    token = auth.get("access_token") if isinstance(auth, Mapping) else None
    headers = {"Accept": "application/fhir+json, application/json"}
    if isinstance(token, str) and token:
        headers["Authorization"] = f"Bearer {token}"
    if callable(client):
        client = client()
    fetcher = _Fetcher(
        client, str(server), headers, timeout, asyncio.Semaphore(concurrency), max_pages, _Budget(max_bytes)
    )

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

    tasks = {asyncio.ensure_future(one(k, q)): k for k, q in wanted.items()}
    done, pending = await asyncio.wait(tasks, timeout=deadline)  # one deadline for all keys
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending)
        log.warning("prefetch fallback: %d key(s) unfinished at the %g s deadline", len(pending), deadline)
        if on_fetch:
            for _ in pending:
                on_fetch("error")
    failures: dict[str, str] = {tasks[t]: f"fetch phase exceeded its {deadline:g} s deadline" for t in pending}
    for task in done:
        key, value, error, notes = task.result()
        result.notes.extend(notes)
        if error is None:
            result.prefetch[key] = value
            result.fetched.append(key)
        else:
            failures[key] = error
    _give_up(result, {k: wanted[k] for k in wanted if k in failures}, NOT_OBTAINABLE, failures)
    return result


def _give_up(result: FetchResult, keys: Mapping[str, str], told: str, why: str | Mapping[str, str]) -> None:
    """Record ``keys`` as not obtained: a key the client did not send is ``missing`` (the
    412 says ``told``; ``why``, the real reason, goes to the audit via ``reasons``); a key
    that held an OperationOutcome stays and gets a note, shown on a card."""
    for key in keys:
        reason = why if isinstance(why, str) else why[key]
        result.reasons[key] = reason
        if key not in result.prefetch:
            result.missing[key] = told
        else:
            detail = "from fhirServer" if told == NOT_OBTAINABLE else f"({told})"
            result.notes.append(
                DataNote("error", key, f"prefetch '{key}' held an error and could not be re-queried {detail}")
            )


class _Budget:
    """Bytes one hook call may still read from fhirServer, shared by all keys and pages."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = self.left = max_bytes

    def take(self, n: int) -> None:
        self.left -= n
        if self.left < 0:
            raise _FetchFailed(f"responses exceed the {self.max_bytes} byte budget of the fetch phase")


class _Fetcher:
    """GETs against one FHIR server with one token, bounded in time, bytes, pages and
    concurrency."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        server: str,
        headers: dict[str, str],
        timeout: float,
        gate: asyncio.Semaphore,
        max_pages: int,
        budget: _Budget,
    ) -> None:
        self.client, self.headers, self.timeout, self.gate, self.max_pages, self.budget = (
            client,
            headers,
            timeout,
            gate,
            max_pages,
            budget,
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
                        chunks = []
                        async for chunk in resp.aiter_bytes():
                            self.budget.take(len(chunk))
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
