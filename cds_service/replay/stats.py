"""Alert burden over a corpus: cards per hook call by indicator (issue 13).

One replayed scenario is one hook call. The numbers answer "how many cards does a
prescriber see, and how urgent are they?": per hook, the calls, the mean number of cards
per call (all, and by indicator), the most cards in one call, the calls with no card and
the calls with a data-unavailable card.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

INDICATORS = ("critical", "warning", "info")
DATA_UNAVAILABLE = "data-unavailable"


@dataclass(frozen=True)
class HookStats:
    """The alert burden of one hook (or ``all``) over the replayed calls."""

    hook: str
    calls: int
    cards: int
    per_call: float
    critical: float
    warning: float
    info: float
    max_cards: int
    no_card: int
    with_data_unavailable: int

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def _topic(card: Mapping[str, Any]) -> str:
    return str(((card.get("source") or {}).get("topic") or {}).get("code", ""))


def _stats(hook: str, calls: Sequence[Sequence[Mapping[str, Any]]]) -> HookStats:
    n = len(calls)
    counts = {i: sum(1 for cards in calls for c in cards if c.get("indicator") == i) for i in INDICATORS}
    total = sum(len(cards) for cards in calls)
    return HookStats(
        hook=hook,
        calls=n,
        cards=total,
        per_call=round(total / n, 2) if n else 0.0,
        critical=round(counts["critical"] / n, 2) if n else 0.0,
        warning=round(counts["warning"] / n, 2) if n else 0.0,
        info=round(counts["info"] / n, 2) if n else 0.0,
        max_cards=max((len(cards) for cards in calls), default=0),
        no_card=sum(1 for cards in calls if not cards),
        with_data_unavailable=sum(1 for cards in calls if any(_topic(c) == DATA_UNAVAILABLE for c in cards)),
    )


def burden(calls: Iterable[tuple[str, Sequence[Mapping[str, Any]]]]) -> list[HookStats]:
    """Stats per hook (in first-seen order) and for ``all`` hooks, from (hook, cards) pairs."""
    by_hook: dict[str, list[Sequence[Mapping[str, Any]]]] = {}
    everything: list[Sequence[Mapping[str, Any]]] = []
    for hook, cards in calls:
        by_hook.setdefault(hook, []).append(cards)
        everything.append(cards)
    out = [_stats(hook, c) for hook, c in by_hook.items()]
    if len(by_hook) > 1:
        out.append(_stats("all", everything))
    return out
