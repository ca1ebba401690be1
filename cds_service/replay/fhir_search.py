"""Evaluate a CDS Hooks prefetch template against a bundle: a tiny, pure FHIR search.

Covers what CDS Hooks 2.0 allows prefetch templates to use (shared/reference/cds-hooks.md
§1.3.2 P3; https://cds-hooks.hl7.org/2.0/#prefetch-query-restrictions): instance read
``Type/id``, type-level search with reference parameters (``patient=``, ``subject=``,
``encounter=``), token parameters with OR lists and the ``:in`` modifier (``code=system|code,…``,
``status=``, ``category=``, ``intent=``, ``_id=``), date parameters with the ``eq ne lt gt le
ge`` prefixes, ``_count`` and ``_sort``. The same functions back ``replay --serve-fhir``.

A search parameter this module does not know is not silently dropped: it is reported in
``SearchResult.ignored`` (the result is then a superset, as a lenient server would give).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, unquote

Resource = dict[str, Any]
#: ValueSet canonical -> enumerated (system, code) pairs, for ``code:in=``; None if unknown
ValueSetCodes = Callable[[str], Iterable[tuple[str, str]] | None]

#: reference search parameter -> element names holding the reference (R4 search parameters)
REFERENCE_PARAMS: Mapping[str, tuple[str, ...]] = {
    "patient": ("subject", "patient", "beneficiary", "individual"),
    "subject": ("subject", "patient"),
    "encounter": ("encounter", "context"),
    "requester": ("requester",),
    "performer": ("performer",),
    "medication": ("medicationReference",),
    "questionnaire": ("questionnaire",),
}

#: token search parameter -> element names holding codes (code / Coding / CodeableConcept)
TOKEN_PARAMS: Mapping[str, tuple[str, ...]] = {
    "code": ("code", "medicationCodeableConcept"),
    "status": ("status",),
    "category": ("category",),
    "intent": ("intent",),
    "clinical-status": ("clinicalStatus",),
    "verification-status": ("verificationStatus",),
    "gender": ("gender",),
    "identifier": ("identifier",),
}

#: date search parameter -> element names (first present wins) per the R4 definitions
DATE_PARAMS: Mapping[str, tuple[str, ...]] = {
    "date": (
        "effectiveDateTime", "effectivePeriod", "effectiveInstant", "performedDateTime",
        "performedPeriod", "recordedDate", "onsetDateTime", "authoredOn", "authored",
        "period", "occurrenceDateTime", "date", "issued",
    ),
    "authoredon": ("authoredOn",),
    "authored": ("authored",),
    "effective-time": ("effectiveDateTime", "effectivePeriod"),
    "effective": ("effectiveDateTime", "effectivePeriod", "effectiveInstant"),
    "onset-date": ("onsetDateTime", "onsetPeriod"),
    "recorded-date": ("recordedDate",),
    "issued": ("issued",),
    "birthdate": ("birthDate",),
    "_lastUpdated": ("meta.lastUpdated",),
}

_PREFIXES = ("eq", "ne", "lt", "gt", "le", "ge", "sa", "eb", "ap")
_TOKEN_RE = re.compile(r"\{\{\s*([^}]+?)\s*\}\}")
_TODAY_RE = re.compile(r"^today\(\)\s*(?:(?P<sign>[+-])\s*(?P<n>\d+)\s*(?P<unit>days?|weeks?|months?|years?))?$")


@dataclass(frozen=True)
class SearchResult:
    """What a template gave: a resource (read), a searchset Bundle, or None (read: no match)."""

    value: Resource | None
    ignored: tuple[str, ...] = ()


@dataclass
class ResourceIndex:
    """The resources a FHIR endpoint holds, by type and id (draft orders excluded)."""

    by_type: dict[str, list[Resource]] = field(default_factory=dict)

    @classmethod
    def of(cls, resources: Iterable[Resource]) -> ResourceIndex:
        index = cls()
        for res in resources:
            rtype = res.get("resourceType")
            if isinstance(rtype, str):
                index.by_type.setdefault(rtype, []).append(res)
        return index

    def read(self, rtype: str, rid: str) -> Resource | None:
        for res in self.by_type.get(rtype, ()):
            if str(res.get("id")) == rid:
                return res
        return None

    def types(self) -> list[str]:
        return sorted(self.by_type)


# ---------------------------------------------------------------- tokens


def fill_tokens(template: str, context: Mapping[str, Any], now: datetime | None = None) -> str | None:
    """Replace the ``{{…}}`` prefetch tokens of a template; None if one cannot be filled.

    Tokens (CDS Hooks 2.0 §prefetch-tokens): ``context.<primitive field>``,
    ``userPractitionerId``, ``userPractitionerRoleId``, ``userPatientId``,
    ``userRelatedPersonId``; and, as the reference sandbox does, ``today()`` and
    ``today() - N days`` (3.0-ballot FHIRPath tokens) when ``now`` is given.
    A client drops a key whose tokens it cannot fill, and so do we (None).
    """
    unresolved = False

    def value_of(match: re.Match[str]) -> str:
        nonlocal unresolved
        token = match.group(1)
        if token.startswith("context."):
            value = context.get(token.removeprefix("context."))
            if isinstance(value, (str, int, float)) and not isinstance(value, bool):
                return str(value)
        user_types = {
            "userPractitionerId": "Practitioner",
            "userPractitionerRoleId": "PractitionerRole",
            "userPatientId": "Patient",
            "userRelatedPersonId": "RelatedPerson",
        }
        if token in user_types:
            user = str(context.get("userId") or "")
            rtype, _, rid = user.partition("/")
            if rtype == user_types[token] and rid:
                return rid
        today = _TODAY_RE.match(token)
        if today and now is not None:
            return _today_offset(today, now).isoformat()
        unresolved = True
        return ""

    filled = _TOKEN_RE.sub(value_of, template)
    return None if unresolved else filled


def _today_offset(m: re.Match[str], now: datetime) -> Any:
    day = now.astimezone(UTC).date() if now.tzinfo else now.date()
    if not m["sign"]:
        return day
    n = int(m["n"])
    unit = m["unit"].rstrip("s")
    delta = {"day": timedelta(days=n), "week": timedelta(weeks=n), "month": timedelta(days=30 * n),
             "year": timedelta(days=365 * n)}[unit]
    return day + delta if m["sign"] == "+" else day - delta


# ---------------------------------------------------------------- queries


def evaluate(
    query: str,
    index: ResourceIndex,
    *,
    valueset_codes: ValueSetCodes | None = None,
    base_url: str = "",
) -> SearchResult:
    """Run a filled-in query (``Patient/123`` or ``Observation?patient=123&code=…``)."""
    query = query.strip().lstrip("/")
    path, _, qs = query.partition("?")
    parts = [p for p in path.split("/") if p]
    if len(parts) == 2 and not qs:
        return SearchResult(index.read(parts[0], unquote(parts[1])))
    if len(parts) != 1:
        raise ValueError(f"unsupported query {query!r}: expected Type/id or Type?params")
    params = parse_qsl(qs, keep_blank_values=True)
    return search(parts[0], params, index, valueset_codes=valueset_codes, base_url=base_url)


def search(
    rtype: str,
    params: Sequence[tuple[str, str]],
    index: ResourceIndex,
    *,
    valueset_codes: ValueSetCodes | None = None,
    base_url: str = "",
) -> SearchResult:
    """Type-level search: every parameter must match (AND); commas inside one are OR."""
    candidates = list(index.by_type.get(rtype, ()))
    ignored: list[str] = []
    count: int | None = None
    sort: list[str] = []
    for name, raw in params:
        base, _, modifier = name.partition(":")
        if base == "_count":
            count = max(0, int(raw))
            continue
        if base == "_sort":
            sort = [s for s in raw.split(",") if s]
            continue
        test = _matcher(base, modifier, raw, valueset_codes)
        if test is None:
            ignored.append(name)
            continue
        candidates = [r for r in candidates if test(r)]
    for key in reversed(sort):
        candidates = _sorted(candidates, key)
    total = len(candidates)
    if count is not None:
        candidates = candidates[:count]
    return SearchResult(searchset(candidates, total=total, base_url=base_url), tuple(ignored))


def searchset(resources: Sequence[Resource], *, total: int | None = None, base_url: str = "") -> Resource:
    """A FHIR searchset Bundle holding ``resources`` (search mode ``match``)."""
    prefix = base_url.rstrip("/") + "/" if base_url else ""
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(resources) if total is None else total,
        "entry": [
            {
                "fullUrl": f"{prefix}{r.get('resourceType')}/{r.get('id')}",
                "resource": r,
                "search": {"mode": "match"},
            }
            for r in resources
        ],
    }


def _matcher(
    name: str, modifier: str, raw: str, valueset_codes: ValueSetCodes | None
) -> Callable[[Resource], bool] | None:
    values = [v for v in raw.split(",")]
    if name == "_id":
        return lambda r: str(r.get("id")) in values
    if name in REFERENCE_PARAMS:
        prefix = "Patient" if name == "patient" else None
        wanted = {_ref_id(v, prefix) for v in values}
        elements = REFERENCE_PARAMS[name]
        return lambda r: any(_ref_matches(ref, wanted) for ref in _references(r, elements))
    if name in TOKEN_PARAMS:
        elements = TOKEN_PARAMS[name]
        if modifier == "in":
            codes = set()
            for url in values:
                found = valueset_codes(url) if valueset_codes else None
                if found is None:
                    return None
                codes.update(found)
            return lambda r: any((s, c) in codes for s, c in _codings(r, elements))
        if modifier == "not":
            return lambda r: not any(_token_matches(v, s, c) for v in values for s, c in _codings(r, elements))
        if modifier:
            return None
        return lambda r: any(_token_matches(v, s, c) for v in values for s, c in _codings(r, elements))
    if name in DATE_PARAMS and not modifier:
        elements = DATE_PARAMS[name]
        return lambda r: any(_date_matches(v, _date_range(r, elements)) for v in values)
    return None


# ---------------------------------------------------------------- element access


def _get(resource: Mapping[str, Any], dotted: str) -> Any:
    value: Any = resource
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    return value


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _references(resource: Resource, elements: Iterable[str]) -> Iterator[str]:
    for element in elements:
        for value in _as_list(resource.get(element)):
            if isinstance(value, str):  # canonical (QuestionnaireResponse.questionnaire)
                yield value
            elif isinstance(value, Mapping):
                ref = value.get("reference") or (value.get("actor") or {}).get("reference")
                if isinstance(ref, str):
                    yield ref


def _ref_matches(ref: str, wanted: set[str]) -> bool:
    """A reference matches a typed wanted value exactly, or a bare id by its id part."""
    key = _ref_id(ref)
    return key in wanted or key.rsplit("/", 1)[-1] in wanted


def _ref_id(ref: str, default_type: str | None = None) -> str:
    """Normalise ``Patient/1``, ``http://x/fhir/Patient/1``, ``1`` and ``url|version`` to
    a comparable key (canonicals keep their URL, without version)."""
    ref = ref.split("|", 1)[0]
    if ref.startswith(("http://", "https://", "urn:")) and "/fhir/" not in ref:
        return ref
    parts = ref.rstrip("/").split("/")
    if len(parts) >= 2 and parts[-2][:1].isupper():
        return f"{parts[-2]}/{parts[-1]}"
    if default_type and len(parts) == 1:
        return f"{default_type}/{parts[0]}"
    return ref


def _codings(resource: Resource, elements: Iterable[str]) -> Iterator[tuple[str, str]]:
    for element in elements:
        for value in _as_list(resource.get(element)):
            if isinstance(value, str):  # code / status
                yield ("", value)
            elif isinstance(value, Mapping):
                if "coding" in value:
                    for coding in _as_list(value.get("coding")):
                        if isinstance(coding, Mapping):
                            yield (str(coding.get("system", "")), str(coding.get("code", "")))
                elif "code" in value or "value" in value:  # a Coding or an Identifier
                    yield (str(value.get("system", "")), str(value.get("code", value.get("value", ""))))


def _token_matches(param: str, system: str, code: str) -> bool:
    if "|" not in param:
        return param == code
    psys, _, pcode = param.partition("|")
    if not psys:
        return not system and pcode == code
    if not pcode:
        return psys == system
    return psys == system and pcode == code


# ---------------------------------------------------------------- dates


def _date_range(resource: Resource, elements: Iterable[str]) -> tuple[datetime, datetime] | None:
    for element in elements:
        value = _get(resource, element)
        if isinstance(value, str):
            return _value_range(value)
        if isinstance(value, Mapping) and ("start" in value or "end" in value):
            start = _value_range(value["start"])[0] if value.get("start") else datetime.min.replace(tzinfo=UTC)
            end = _value_range(value["end"])[1] if value.get("end") else datetime.max.replace(tzinfo=UTC)
            return start, end
    return None


def _value_range(text: str) -> tuple[datetime, datetime]:
    """The instant range ``[start, end)`` a FHIR date/dateTime of some precision covers."""
    text = text.strip()
    if re.fullmatch(r"\d{4}", text):
        start = datetime(int(text), 1, 1, tzinfo=UTC)
        return start, start.replace(year=start.year + 1)
    if re.fullmatch(r"\d{4}-\d{2}", text):
        y, m = int(text[:4]), int(text[5:7])
        start = datetime(y, m, 1, tzinfo=UTC)
        return start, datetime(y + (m == 12), m % 12 + 1, 1, tzinfo=UTC)
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        start = datetime.fromisoformat(text).replace(tzinfo=UTC)
        return start, start + timedelta(days=1)
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return moment, moment + timedelta(seconds=1)


def _date_matches(param: str, target: tuple[datetime, datetime] | None) -> bool:
    if target is None:
        return False
    prefix = param[:2] if param[:2] in _PREFIXES else "eq"
    low, high = _value_range(param[2:] if param[:2] in _PREFIXES else param)
    start, end = target
    if prefix in ("eq", "ap"):
        return low <= start and end <= high
    if prefix == "ne":
        return not (low <= start and end <= high)
    if prefix in ("lt", "eb"):
        return start < low
    if prefix in ("gt", "sa"):
        return end > high
    if prefix == "le":
        return start < high
    return end > low  # ge


def _sort_value(resource: Resource, key: str) -> str:
    if key in DATE_PARAMS:
        rng = _date_range(resource, DATE_PARAMS[key])
        return rng[0].isoformat() if rng else ""
    if key == "_id":
        return str(resource.get("id", ""))
    if key in TOKEN_PARAMS:
        return next((c for _, c in _codings(resource, TOKEN_PARAMS[key])), "")
    return ""


def _sorted(resources: list[Resource], key: str) -> list[Resource]:
    """Stable sort by one ``_sort`` key; resources without a value go last either way."""
    descending = key.startswith("-")
    key = key.lstrip("-")
    have = [r for r in resources if _sort_value(r, key)]
    lack = [r for r in resources if not _sort_value(r, key)]
    return sorted(have, key=lambda r: _sort_value(r, key), reverse=descending) + lack
