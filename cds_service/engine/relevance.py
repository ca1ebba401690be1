"""The relevance gate: which draft orders can make any rule of a hook fire, derived at load.

In an EHR, order-select fires for every medication a prescriber picks; almost none is one
a rule is about. Computing every feature and rule for a paracetamol order only to answer
no card costs as much as an inotuzumab order (issue 11). The gate answers such a hook
without building the record or computing a feature, and it is derived from the rules,
not written as a drug list:

- every rule that runs on the hook must open with a guard ``%features.F.value.P = true``
  (its first condition, after ``A and B`` is split) where feature ``F`` makes an
  :class:`~cds_service.features.OrderGuard` promise for ``P``: "not true unless a draft
  MedicationRequest is in ValueSets S". The union of those S is the gate;
- a rule that opens any other way (no condition, another test, a feature without a
  promise: e.g. a rule that fires on any order) leaves the hook without a gate: every
  order is relevant there. A rule added as JSON therefore never needs code here.

A hook is *irrelevant* only when every draft MedicationRequest of the session can be read
and none is in S (selected or not: an unselected inotuzumab draft is still read by the
inotuzumab features). A draft whose medication cannot be read (malformed, or a
``medicationReference`` to a Medication outside the draft, which needs the record) is
relevant: the full evaluation decides, and shows a card if it cannot.
Cards are byte-identical (minus uuids) with and without the gate on the scenario corpus
(tests/test_relevance_gate.py) and on the benchmark's generated records (bench/mixed.py).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cds_service.features._medications import _medication_key, _shareable

if TYPE_CHECKING:
    from cds_service.engine._plan import Rule
    from cds_service.features import FeatureRegistry
    from cds_service.knowledge import Terminology

#: ``%features.<name>.value.<field> = true``: the one guard shape the gate recognises.
_GUARD = re.compile(r"\s*%features\.([A-Za-z_]\w*)\.value\.([A-Za-z_]\w*)\s*=\s*true\s*")
#: Cached membership answers kept per gate (distinct medications seen), then started afresh.
_CACHE_LIMIT = 4096


@dataclass
class OrderGate:
    """The ValueSets a hook's rules can fire on; see the module docstring."""

    valuesets: tuple[str, ...]
    _cache: dict[tuple[str, Any], bool] = field(default_factory=dict, repr=False)

    def irrelevant(self, draft_orders: Sequence[Mapping[str, Any]], terminology: Terminology) -> bool:
        """True only when it is certain no rule of the hook can fire for these drafts."""
        for order in draft_orders:
            if order.get("resourceType") != "MedicationRequest":
                continue  # the guards read draft MedicationRequests only
            try:
                key = _medication_key(order)
            except Exception:  # noqa: BLE001 - unreadable: let the full evaluation say so
                return False
            if not _shareable(key) or not _identifiable(order):
                return False  # names a Medication of the record, or no medication can be read
            for valueset in self.valuesets:
                try:
                    if self._member(valueset, key, order, terminology):
                        return False
                except Exception:  # noqa: BLE001 - unreadable: let the full evaluation say so
                    return False
        return True

    def _member(self, valueset: str, key: Any, order: Mapping[str, Any], terminology: Terminology) -> bool:
        hit = self._cache.get((valueset, key))
        if hit is None:
            hit = bool(terminology.matches_medication(valueset, order, None))
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            self._cache[(valueset, key)] = hit
        return hit


def _identifiable(order: Mapping[str, Any]) -> bool:
    """Does the draft name its medication in a form the terminology can read: a concept
    whose every coding has a system and code (or a text), inline or in a contained
    Medication, or a reference's display? Anything else is "cannot be read"."""
    concept = order.get("medicationCodeableConcept")
    if concept is None:
        ref = order.get("medicationReference")
        if not isinstance(ref, dict):
            return False
        target = ref.get("reference")
        if target is None:
            return isinstance(ref.get("display"), str) and bool(ref["display"].strip())
        if not isinstance(target, str) or not target.startswith("#"):
            return False
        contained = [c for c in order.get("contained") or () if isinstance(c, dict) and c.get("id") == target[1:]]
        if len(contained) != 1:
            return False
        concept = contained[0].get("code")
    if not isinstance(concept, dict):
        return False
    codings = concept.get("coding")
    if codings is not None and not isinstance(codings, list):
        return False
    for coding in codings or ():
        if not (isinstance(coding, dict) and isinstance(coding.get("system"), str)
                and isinstance(coding.get("code"), str)):
            return False
    text = concept.get("text")
    return bool(codings) or (isinstance(text, str) and bool(text.strip()))


def guard_of(rule: Rule, registry: FeatureRegistry) -> tuple[str, ...] | None:
    """The ValueSets ``rule``'s opening guard fires on (None: not a recognised guard)."""
    if not rule.conditions:
        return None
    m = _GUARD.fullmatch(rule.conditions[0].expression)
    if m is None:
        return None
    lookup = getattr(registry, "guard", None)  # a registry without promises: no gate
    promise = lookup(m[1]) if lookup is not None else None
    if promise is None or promise.field != m[2]:
        return None
    return promise.fires_on


def derive_gate(rules: Iterable[Rule], registry: FeatureRegistry) -> OrderGate | None:
    """The gate of one hook's rules, or None when some rule may fire on any order."""
    valuesets: list[str] = []
    for rule in rules:
        fires_on = guard_of(rule, registry)
        if fires_on is None:
            return None
        valuesets.extend(v for v in fires_on if v not in valuesets)
    return OrderGate(tuple(valuesets))
