"""Relative date tokens (architecture.md §8): scenarios give the same cards on any day."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from cds_service.replay import dates
from cds_service.replay.scenario import load_scenario

NOW = datetime(2026, 11, 23, 9, 30, 15, tzinfo=UTC)
SCENARIOS = Path(__file__).parent / "scenarios"


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        ("today", "2026-11-23"),
        ("today-14d", "2026-11-09"),
        ("today+1w", "2026-11-30"),
        ("today-1m", "2026-10-24"),
        ("today-1y", "2025-11-23"),
        ("today-3h", "2026-11-23"),
        ("today-10h", "2026-11-22"),
        ("now", "2026-11-23T09:30:15Z"),
        ("now+2h", "2026-11-23T11:30:15Z"),
        ("now-3y", "2023-11-24T09:30:15Z"),
        ("now-400d", "2025-10-19T09:30:15Z"),
    ],
)
def test_a_token_resolves_relative_to_the_evaluation_time(token: str, expected: str) -> None:
    assert dates.resolve_token(token, NOW) == expected


@pytest.mark.parametrize("text", ["Today", "now-2", "today-1x", "today - 1d", "seen today", "nowhere", "2026-11-23", ""])
def test_a_string_that_is_not_exactly_a_token_is_left_alone(text: str) -> None:
    assert dates.resolve_dates({"v": text}, NOW) == {"v": text}


def test_keys_numbers_and_nested_lists_are_walked_but_only_string_values_replaced() -> None:
    value = {"today": 1, "a": [{"b": "today-1d"}, 2, None, True], "c": "now"}
    assert dates.resolve_dates(value, NOW) == {
        "today": 1, "a": [{"b": "2026-11-22"}, 2, None, True], "c": "2026-11-23T09:30:15Z",
    }


def test_resolving_does_not_change_the_input() -> None:
    value = {"a": ["today"]}
    dates.resolve_dates(value, NOW)
    assert value == {"a": ["today"]}


def test_a_now_with_an_offset_is_converted_to_utc_and_a_naive_now_taken_as_utc() -> None:
    plus_two = datetime(2026, 11, 23, 1, 0, tzinfo=timezone(timedelta(hours=2)))
    assert dates.resolve_token("now", plus_two) == "2026-11-22T23:00:00Z"
    assert dates.resolve_token("today", plus_two) == "2026-11-22"
    assert dates.resolve_token("now", datetime(2026, 1, 2, 3, 4, 5)) == "2026-01-02T03:04:05Z"


def test_the_evaluation_time_comes_from_the_header_or_the_replay() -> None:
    assert dates.evaluation_time(None, NOW) == NOW
    assert dates.evaluation_time("2020-02-29T12:00:00Z", NOW) == datetime(2020, 2, 29, 12, tzinfo=UTC)
    assert dates.evaluation_time("2020-02-29", NOW) == datetime(2020, 2, 29, tzinfo=UTC)
    assert dates.evaluation_time("now-2d", NOW) == NOW - timedelta(days=2)


def _intervals(resources: list[dict], now: datetime) -> list[timedelta]:
    """Every date/dateTime of the resolved resources as an offset from ``now``."""
    found: list[timedelta] = []

    def walk(v: object) -> None:
        if isinstance(v, dict):
            for x in v.values():
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)
        elif isinstance(v, str) and len(v) >= 10 and v[:4].isdigit() and v[4:5] == "-" and v[7:8] == "-":
            if len(v) == 10:
                found.append(datetime.fromisoformat(v).date() - now.date())
            else:
                found.append(dates.parse_instant(v) - now)

    walk(resources)
    return found


def _relative_scenarios() -> list[Path]:
    return sorted(p for p in SCENARIOS.glob("*.json") if not p.name.startswith("_") and '"today' in p.read_text())


@pytest.mark.parametrize("years", [-7, 5, 30])
def test_shifting_now_by_years_keeps_every_relative_interval(years: int) -> None:
    paths = _relative_scenarios()
    if not paths:
        pytest.skip("no relative-dated scenarios in tests/scenarios yet")
    later = NOW + timedelta(days=365 * years, hours=7)
    for path in paths:
        scenario = load_scenario(path)
        if scenario.now is not None and not dates.is_token(scenario.now):
            continue
        a, b = scenario.resolved(NOW), scenario.resolved(later)
        assert _intervals(a.record + a.draft_orders, a.now) == _intervals(b.record + b.draft_orders, b.now), path.name


def test_moving_dates_to_another_clock_keeps_days_and_exact_times() -> None:
    later = NOW + timedelta(days=1000, hours=20)
    moved = dates.shift_dates({"d": "2026-11-20", "t": "2026-11-23T08:30:15Z", "y": "2019", "x": "x"}, NOW, later)
    assert moved == {"d": "2029-08-17", "t": "2029-08-20T04:30:15Z", "y": "2019", "x": "x"}
    assert (datetime.fromisoformat(moved["d"]).date() - later.date()).days == -3


# ---------------------------------------------------------------- whole replays


def _view(cards: list[dict]) -> list[tuple[str, str]]:
    return sorted((c["source"]["topic"]["code"], c["indicator"]) for c in cards)


def _corpus_sample() -> list[Path]:
    """The whole records plus one relative-dated scenario per rule code, where present."""
    chosen = sorted(SCENARIOS.glob("whole-record-*.json"))
    seen: set[str] = set()
    for path in _relative_scenarios():
        rule = path.name.split("-")[0]
        if not path.name.startswith("whole-record") and rule not in seen:
            seen.add(rule)
            chosen.append(path)
    return chosen


@pytest.mark.parametrize("path", _corpus_sample(), ids=lambda p: p.stem)
def test_a_relative_scenario_gives_the_same_cards_five_years_apart(replay_session, path: Path) -> None:
    scenario = load_scenario(path)
    if scenario.now is not None and not dates.is_token(scenario.now):
        pytest.skip("absolute evaluation time")
    now = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    later = now + timedelta(days=5 * 365 + 2, hours=13)
    first, second = replay_session.replay(scenario, now), replay_session.replay(scenario, later)
    assert first.status != "error" and second.status != "error", (first.error, second.error)
    assert first.now is not None and second.now is not None and second.now - first.now == later - now
    assert _view(first.cards) == _view(second.cards)
    assert first.status == second.status


def test_an_absolute_scenario_is_evaluated_at_its_own_now_whatever_the_day(replay_session, tmp_path: Path) -> None:
    """The header's ``now`` reaches the engine: a 2019 record replayed five years on gives 2019's cards."""
    source = load_scenario(SCENARIOS / "whole-record-no-cr-after-three-cycles.json")
    fixed_now = datetime(2019, 3, 10, 9, 0, tzinfo=UTC)
    resolved_bundle = dates.resolve_dates(source.bundle, fixed_now)
    doc = {
        "scenario": {"title": "Absolute copy", "hook": source.hook, "now": "2019-03-10T09:00:00Z",
                     "selections": list(source.selections or ())},
        "bundle": resolved_bundle,
    }
    import json

    path = tmp_path / "absolute.json"
    path.write_text(json.dumps(doc))
    absolute = load_scenario(path)
    in_2026 = replay_session.replay(absolute, fixed_now)
    in_2031 = replay_session.replay(absolute, fixed_now + timedelta(days=1830))
    relative = replay_session.replay(source, fixed_now)
    assert in_2031.now == in_2026.now == fixed_now
    assert _view(in_2031.cards) == _view(in_2026.cards) == _view(relative.cards)
    assert ("cycle-limit", "critical") in _view(in_2031.cards)
