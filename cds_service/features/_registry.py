"""Case features: named, documented, pure functions of the record and the evaluation time.

A feature answers one question about the patient ("BSA in m²", "is a systemic azole
active?"). It never reads the clock (``ctx.now`` is an input, so replay is deterministic)
and never returns a bare False for "don't know": ``FeatureValue.status`` keeps *unknown*
apart from *not met* (STYLE.md §5), and ``evidence`` names the data behind the answer so a
card can show the patient's values and dates.

Registration works like jsonschema's ``FormatChecker.checks``: ``@feature("name")`` only
tags a function; a ``FeatureRegistry`` owned by the engine collects tagged functions from
the modules it is given. There is no module-level mutable table.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType, ModuleType
from typing import TYPE_CHECKING, Any, Literal

from cds_service.errors import UnknownFeature
from cds_service.features._policy import SitePolicy
from cds_service.record import PatientRecord

if TYPE_CHECKING:  # the knowledge layer's terminology service and regimen schedules
    from cds_service.knowledge import RegimenSchedule, Terminology

Status = Literal["met", "not_met", "unknown"]


@dataclass(frozen=True, slots=True)
class Evidence:
    """One datum behind a feature value, as a card shows it.

    ``display`` is a short human sentence with the value, unit and date, e.g.
    "Total bilirubin 40 umol/L (ULN 21: 1.90 x ULN) on 2026-11-20".
    """

    display: str
    reference: str | None = None
    date: str | None = None

    def as_json(self) -> dict[str, str]:
        out = {"display": self.display}
        if self.reference:
            out["reference"] = self.reference
        if self.date:
            out["date"] = self.date
        return out


@dataclass(frozen=True, slots=True)
class FeatureValue:
    """A feature's answer: ``met`` (true / present / computed), ``not_met`` (false /
    absent, positively known) or ``unknown`` (could not tell: ``note`` says why)."""

    status: Status
    value: Any = None
    evidence: tuple[Evidence, ...] = ()
    note: str | None = None

    def as_json(self) -> dict[str, Any]:
        """The shape FHIRPath sees as ``%features.<name>``."""
        return {
            "status": self.status,
            "value": self.value,
            "evidence": [e.as_json() for e in self.evidence],
            "note": self.note,
        }

    @classmethod
    def unknown(cls, note: str, *evidence: Evidence) -> FeatureValue:
        return cls("unknown", None, tuple(evidence), note)


@dataclass(frozen=True, slots=True)
class FeatureContext:
    """What every feature may use besides the record: time, terminology, site policy, and
    the regimens (clinical-protocol PlanDefinitions read as schedules, by canonical url
    without version): cycle lengths and mg/m² are knowledge, read from there, never
    constants in a feature. The engine builds ``regimens`` once from the knowledge base;
    a feature whose regimen is missing says so (``unknown``), it does not guess."""

    now: datetime
    terminology: Terminology
    policy: SitePolicy = field(default_factory=SitePolicy)
    regimens: Mapping[str, RegimenSchedule] = field(default_factory=lambda: MappingProxyType({}))


FeatureFn = Callable[[PatientRecord, FeatureContext], FeatureValue]

_FEATURE_ATTR = "__sact_feature_name__"
_GUARD_ATTR = "__sact_order_guard__"


@dataclass(frozen=True, slots=True)
class OrderGuard:
    """A feature's promise about one boolean field of its value, which the engine's
    relevance gate (engine/relevance.py) builds on.

    The promise: the feature is *known* and ``value[field]`` is not true whenever no draft
    MedicationRequest of the ordering session (selected or not) has a medication in one of
    ``fires_on``, and every draft's membership in them can be read (a draft whose
    medication cannot be read may make the feature unknown, and so its rules show a
    data-unavailable card: it is never "irrelevant"). The ValueSets are canonicals of the
    knowledge: which drugs they hold is terminology, not code. Checked against every
    scenario record (tests/test_relevance_gate.py)."""

    field: str
    fires_on: tuple[str, ...]


def feature(name: str, *, guards: OrderGuard | None = None) -> Callable[[FeatureFn], FeatureFn]:
    """Mark a function as the case feature ``name`` (collected by FeatureRegistry);
    ``guards``: the feature's :class:`OrderGuard` promise, if it makes one."""

    def mark(fn: FeatureFn) -> FeatureFn:
        setattr(fn, _FEATURE_ATTR, name)
        if guards is not None:
            setattr(fn, _GUARD_ATTR, guards)
        return fn

    return mark


class FeatureRegistry:
    """The table of case features one engine instance computes."""

    def __init__(self, features: Mapping[str, FeatureFn] | None = None) -> None:
        self._features: dict[str, FeatureFn] = dict(features or {})

    @classmethod
    def from_modules(cls, modules: Iterable[ModuleType]) -> FeatureRegistry:
        """Collect every ``@feature``-marked function of the given modules."""
        registry = cls()
        for module in modules:
            for _, fn in inspect.getmembers(module, inspect.isfunction):
                name = getattr(fn, _FEATURE_ATTR, None)
                if name is not None:
                    registry.add(name, fn)
        return registry

    def add(self, name: str, fn: FeatureFn) -> None:
        if name in self._features and self._features[name] is not fn:
            raise ValueError(f"case feature {name!r} registered twice")
        self._features[name] = fn

    def names(self) -> frozenset[str]:
        return frozenset(self._features)

    def get(self, name: str) -> FeatureFn:
        try:
            return self._features[name]
        except KeyError:
            raise UnknownFeature(f"no case feature named {name!r}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._features

    def guard(self, name: str) -> OrderGuard | None:
        """The :class:`OrderGuard` promise of feature ``name`` (None: it makes none)."""
        fn = self._features.get(name)
        guard = getattr(fn, _GUARD_ATTR, None)
        return guard if isinstance(guard, OrderGuard) else None
