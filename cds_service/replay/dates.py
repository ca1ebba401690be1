"""Relative date tokens: scenarios that never go stale (docs/architecture.md §8).

Any string value in a scenario's bundle that is exactly one of

    today   today-14d   today+1w   now   now+2h   now-3y

is replaced relative to the evaluation time before the request is built. Units: ``h``
hours, ``d`` days, ``w`` weeks, ``m`` months of 30 days, ``y`` years of 365 days (fixed
lengths, so an interval means the same on any day). ``today…`` gives a FHIR ``date``
(the UTC calendar day of now + offset); ``now…`` a FHIR ``dateTime`` in UTC.

Pure functions: the evaluation time is always passed in, never read from the clock.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

#: unit letter -> length (fixed: m = 30 days, y = 365 days)
UNITS: Mapping[str, timedelta] = {
    "h": timedelta(hours=1),
    "d": timedelta(days=1),
    "w": timedelta(weeks=1),
    "m": timedelta(days=30),
    "y": timedelta(days=365),
}

TOKEN = re.compile(r"^(?P<base>today|now)(?:(?P<sign>[+-])(?P<n>\d{1,6})(?P<unit>[hdwmy]))?$")


def is_token(value: object) -> bool:
    """Whether ``value`` is a relative date token."""
    return isinstance(value, str) and TOKEN.match(value) is not None


def offset_of(value: str) -> timedelta:
    """The offset a token names (``today-14d`` -> -14 days); ValueError if not a token."""
    m = TOKEN.match(value)
    if m is None:
        raise ValueError(f"not a relative date token: {value!r}")
    if not m["sign"]:
        return timedelta(0)
    delta = UNITS[m["unit"]] * int(m["n"])
    return delta if m["sign"] == "+" else -delta


def as_utc(now: datetime) -> datetime:
    """``now`` in UTC; a naive datetime is taken to be UTC already."""
    return now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)


def format_datetime(moment: datetime) -> str:
    """A FHIR dateTime in UTC with second precision: ``2026-11-23T09:00:00Z``."""
    return as_utc(moment).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def resolve_token(value: str, now: datetime) -> str:
    """The FHIR date or dateTime a token stands for at evaluation time ``now``."""
    moment = as_utc(now) + offset_of(value)
    if value.startswith("today"):
        return moment.date().isoformat()
    return format_datetime(moment)


def resolve_dates(value: Any, now: datetime) -> Any:
    """A deep copy of ``value`` with every relative date token string resolved.

    Only whole string *values* are replaced: keys, numbers and strings that merely
    contain ``today`` (``"seen today"``) are left alone.
    """
    if isinstance(value, str):
        return resolve_token(value, now) if TOKEN.match(value) else value
    if isinstance(value, Mapping):
        return {k: resolve_dates(v, now) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve_dates(v, now) for v in value]
    return value


def parse_instant(text: str) -> datetime:
    """Parse an ISO 8601 date or dateTime (``Z`` allowed) into an aware UTC datetime.

    A date alone is midnight UTC; a dateTime without offset is taken as UTC.
    """
    text = text.strip()
    if len(text) == 10:
        return datetime.fromisoformat(text).replace(tzinfo=UTC)
    return as_utc(datetime.fromisoformat(text.replace("Z", "+00:00")))


def evaluation_time(header_now: str | None, replay_now: datetime) -> datetime:
    """The scenario's evaluation time.

    ``header_now`` is the scenario header's ``now``: absent -> the replay's now; an
    absolute ISO date/dateTime -> that instant; a ``now…``/``today…`` token -> relative
    to the replay's now (``today`` resolves to midnight UTC of that day).
    """
    if header_now is None:
        return as_utc(replay_now)
    if TOKEN.match(header_now):
        return parse_instant(resolve_token(header_now, replay_now))
    return parse_instant(header_now)


_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$")


def shift_dates(value: Any, source_now: datetime, target_now: datetime) -> Any:
    """Move every date in ``value`` so it stands to ``target_now`` as it stood to ``source_now``.

    For a service that reads its own clock (``replay --url``): dateTimes move by the exact
    difference, dates by the difference in calendar days (so "yesterday" stays yesterday).
    Years and year-months (``2019``, ``2019-04``) are left alone. Run after
    :func:`resolve_dates`.
    """
    source_now, target_now = as_utc(source_now), as_utc(target_now)
    exact = target_now - source_now
    days = timedelta(days=(target_now.date() - source_now.date()).days)

    def move(item: Any) -> Any:
        if isinstance(item, str):
            if _DATE.match(item):
                try:
                    return (datetime.fromisoformat(item) + days).date().isoformat()
                except (ValueError, OverflowError):
                    return item
            if _DATETIME.match(item):
                try:
                    moved = datetime.fromisoformat(item.replace("Z", "+00:00")) + exact
                except (ValueError, OverflowError):
                    return item
                return format_datetime(moved)
            return item
        if isinstance(item, Mapping):
            return {k: move(v) for k, v in item.items()}
        if isinstance(item, list):
            return [move(v) for v in item]
        return item

    return move(value)
