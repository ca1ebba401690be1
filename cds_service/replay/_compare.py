"""Compare the cards a service returned with a scenario's expectations.

Every mismatch becomes a :class:`Diff` (nothing stops at the first), so a tester sees in one
run everything that differs, the way jsonschema yields every error.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cds_service.knowledge.terms import CARD_EXT_CRITERIA
from cds_service.replay.scenario import CardExpectation, Expectation

Card = Mapping[str, Any]

#: the statuses a scenario writes -> the spellings a card may use for them
_STATUS_SPELLINGS = {
    "met": {"met"},
    "unmet": {"unmet", "not_met", "not-met"},
    "unknown": {"unknown"},
}


@dataclass(frozen=True)
class Diff:
    """One way the cards differ from the expectation."""

    kind: str  # missing | mismatch | unexpected
    rule: str
    message: str

    def __str__(self) -> str:
        return f"{self.rule}: {self.message}"

    def as_json(self) -> dict[str, str]:
        return {"kind": self.kind, "rule": self.rule, "message": self.message}


def rule_of(card: Card) -> str:
    """The rule code of a card (``source.topic.code``), or ``?`` if it has none."""
    topic = (card.get("source") or {}).get("topic") or {}
    return str(topic.get("code") or "?")


def card_text(card: Card) -> str:
    return f"{card.get('summary', '')}\n{card.get('detail', '')}"


def criteria_of(card: Card) -> dict[str, str]:
    """The INO2 criterion statuses a card carries, normalised to met/unmet/unknown.

    Accepts the extension as a mapping ``{code: status}`` or ``{code: {"status": …}}``, or
    as a list of objects with ``code``/``criterion`` and ``status``.
    """
    raw = (card.get("extension") or {}).get(CARD_EXT_CRITERIA)
    items: Iterable[tuple[Any, Any]]
    if isinstance(raw, Mapping):
        items = raw.items()
    elif isinstance(raw, list):
        items = [
            (i.get("code") or i.get("criterion") or i.get("id"), i.get("status"))
            for i in raw
            if isinstance(i, Mapping)
        ]
    else:
        return {}
    out: dict[str, str] = {}
    for code, status in items:
        if isinstance(status, Mapping):
            status = status.get("status")
        out[str(code)] = _normal_status(str(status))
    return out


def _normal_status(status: str) -> str:
    for name, spellings in _STATUS_SPELLINGS.items():
        if status.lower() in spellings:
            return name
    return status


def _problems(expected: CardExpectation, card: Card) -> list[str]:
    """What about this card does not meet the expectation (empty: it matches)."""
    out: list[str] = []
    if expected.indicator and card.get("indicator") != expected.indicator:
        out.append(f"indicator is {card.get('indicator')!r}, expected {expected.indicator!r}")
    text = card_text(card).lower()
    for fragment in expected.contains:
        if fragment.lower() not in text:
            out.append(f"text does not contain {fragment!r}")
    if expected.criteria:
        shown = criteria_of(card)
        for code, status in expected.criteria.items():
            got = shown.get(code)
            if got != status:
                out.append(f"criterion {code} is {got or 'not shown'}, expected {status}")
    labels = [str(s.get("label", "")).lower() for s in card.get("suggestions") or ()]
    for fragment in expected.suggestions:
        if not any(fragment.lower() in label for label in labels):
            offered = ", ".join(repr(s.get("label")) for s in card.get("suggestions") or ()) or "none"
            out.append(f"no suggestion labelled {fragment!r} (offered: {offered})")
    if expected.links is not None:
        shown = [str(link.get("label", "")) for link in card.get("links") or ()]
        matched = [any(f.lower() in label.lower() for f in expected.links) for label in shown]
        missing = [f for f in expected.links if not any(f.lower() in label.lower() for label in shown)]
        if missing or not all(matched) or len(shown) != len(expected.links):
            out.append(f"links are {', '.join(map(repr, shown)) or 'none'}, expected "
                       f"{', '.join(map(repr, expected.links)) or 'none'}")
    return out


def compare(expect: Expectation, cards: Sequence[Card]) -> list[Diff]:
    """Every difference between the returned cards and the expectation."""
    return list(_iter_diffs(expect, cards))


def _iter_diffs(expect: Expectation, cards: Sequence[Card]) -> Iterator[Diff]:
    used: set[int] = set()
    for expected in expect.cards:
        candidates = [i for i, c in enumerate(cards) if rule_of(c) == expected.rule and i not in used]
        if not candidates:
            shown = ", ".join(sorted({rule_of(c) for c in cards})) or "no cards"
            yield Diff("missing", expected.rule, f"expected a card for rule {expected.describe()}; got {shown}")
            continue
        scored = [(len(_problems(expected, cards[i])), i) for i in candidates]
        best_count, best = min(scored)
        used.add(best)
        for problem in _problems(expected, cards[best]):
            yield Diff("mismatch", expected.rule, f"{problem} (card: {cards[best].get('summary', '')!r})")
    for code in expect.absent:
        for card in cards:
            if rule_of(card) == code:
                yield Diff("unexpected", code, f"must not fire, but showed {card.get('summary', '')!r}")
    if expect.only:
        listed = {c.rule for c in expect.cards}
        for i, card in enumerate(cards):
            code = rule_of(card)
            if i not in used and (code not in listed) and code not in expect.absent:
                yield Diff("unexpected", code, f"not listed (only: true), showed {card.get('summary', '')!r}")
