"""A regimen's cycle structure and BSA doses, read from its clinical-protocol PlanDefinition.

The cycle lengths and the mg/m² of each dose day are clinical facts, so they live in the
regimen artifacts (plan_definitions/regimen/) and the features read them from here instead
of keeping their own copies (DESIGN.md: knowledge is data, the engine is generic).

How a ``clinical-protocol`` PlanDefinition reads as a schedule:

- **Cycles** are the top-level actions with ``timingTiming.repeat``, in document order;
  other top-level actions (the treatment-duration policy, supportive care) are not cycles.
  Numbering runs on from the previous cycle action: ``count`` 1 is one cycle, ``count`` 1
  with ``countMax`` 2 is up to two (NZ "Cycles 2 to 3"), no ``count`` at all is open-ended
  (only allowed for the last cycle action: the CR/CRi regimen's "subsequent cycles").
- **Length**: ``duration`` with ``durationUnit`` ``d`` (the cycle length), ``durationMax``
  (how far it may be extended: cycle 1 "may be extended to 28 days").
- **Dose days**: the child actions with the ``timing-daysOfCycle`` extension whose
  ``definitionCanonical`` ActivityDefinition has a ``calculated`` dose in UCUM ``mg/m2``
  (the BSA-dosed drug; premedication at flat doses is not counted): day -> mg/m².
- **Dose windows**: a dose may be given on another day than its nominal one when the
  regimen says so with a ``before-start`` ``relatedAction`` (``offsetRange`` in days) from
  the cycle's first dose to it: NZ "Days of administration for doses on days 8 and 15 can
  be moved +/- 2 days (maintain a minimum of 6 days between doses)" is encoded as day 8 =
  6-9 days after day 1 (days 7-10) and day 15 = 12-16 days after day 1 (days 13-17). A day
  inside no window (day 12, say) is not a dose day of the regimen.

Numbers past the last defined cycle use the last definition (:meth:`RegimenSchedule.cycle`):
this is how later cycles — up to 6 for patients not proceeding to HSCT (INO2, NZ) — keep
the 28-day structure of "Cycles 2 to 3": clinical.md §1.5, "Later cycles" (in CR/CRi and
not in CR/CRi) are "28 days".

Anything that cannot be read this way is a :class:`~cds_service.errors.KnowledgeError`
naming the artifact and the action, at startup and in ``validate`` — never a guessed number.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from cds_service.errors import KnowledgeError
from cds_service.knowledge._base import is_clinical_protocol
from cds_service.knowledge.terms import DOSE_RATE_TYPE, EXT_TIMING_DAYS_OF_CYCLE, UCUM

if TYPE_CHECKING:
    from cds_service.knowledge._base import KnowledgeBase

_PER_M2 = "mg/m2"


@dataclass(frozen=True)
class CycleDefinition:
    """One cycle action of a regimen: which cycle numbers it covers and its BSA doses.

    ``last`` is None for an open-ended definition. ``dose_days``: nominal day of cycle ->
    mg/m². ``dose_windows``: nominal day -> (first, last) day of cycle on which that dose may
    be given; a dose day without a window is given on its nominal day only.
    """

    first: int
    last: int | None
    length_days: int
    max_length_days: int | None
    dose_days: Mapping[int, float]
    dose_windows: Mapping[int, tuple[int, int]] = field(default_factory=lambda: MappingProxyType({}))

    def __post_init__(self) -> None:
        object.__setattr__(self, "dose_days", MappingProxyType(dict(sorted(self.dose_days.items()))))
        object.__setattr__(self, "dose_windows", MappingProxyType(dict(sorted(self.dose_windows.items()))))

    def covers(self, number: int) -> bool:
        return number >= self.first and (self.last is None or number <= self.last)

    def dose_day(self, day_of_cycle: int) -> int | None:
        """The nominal dose day a dose on ``day_of_cycle`` is (its own or a window's), else None."""
        if day_of_cycle in self.dose_days:
            return day_of_cycle
        for nominal, (low, high) in self.dose_windows.items():
            if low <= day_of_cycle <= high:
                return nominal
        return None


@dataclass(frozen=True)
class RegimenSchedule:
    """The cycles of one regimen, in order (module docstring)."""

    url: str
    version: str | None
    title: str
    cycles: tuple[CycleDefinition, ...]

    def cycle(self, number: int) -> CycleDefinition:
        """The definition for cycle ``number`` (1-based). A number past the last defined
        cycle takes the last definition: later cycles keep the 28-day structure of
        "Cycles 2 to 3" (clinical.md §1.5: "Later cycles … 28 days"; up to 6 cycles without
        HSCT, INO2). ValueError for a number below 1 (there is no cycle 0)."""
        if number < 1:
            raise ValueError(f"cycle numbers start at 1, not {number}")
        for definition in self.cycles:
            if definition.covers(number):
                return definition
        return self.cycles[-1]

    def length_days(self, number: int) -> int:
        """Cycle length in days (``duration``)."""
        return self.cycle(number).length_days

    def max_length_days(self, number: int) -> int | None:
        """How far the cycle may be extended (``durationMax``), None if not extendable."""
        return self.cycle(number).max_length_days

    def doses_per_cycle(self, number: int) -> int:
        """How many doses of the BSA-dosed drug the cycle has."""
        return len(self.cycle(number).dose_days)

    def dose_day(self, number: int, day_of_cycle: int) -> int | None:
        """The nominal dose day a dose on ``day_of_cycle`` of cycle ``number`` is, or None."""
        return self.cycle(number).dose_day(day_of_cycle)

    def mg_per_m2(self, number: int, day_of_cycle: int) -> float | None:
        """The regimen's mg/m² for a dose on ``day_of_cycle`` of cycle ``number`` (inside a
        dose day's window counts as that dose day); None on a day that is no dose day."""
        definition = self.cycle(number)
        nominal = definition.dose_day(day_of_cycle)
        return None if nominal is None else definition.dose_days[nominal]


def regimen_schedule(kb: KnowledgeBase, plan: str | Mapping[str, Any]) -> RegimenSchedule:
    """Read the clinical-protocol PlanDefinition ``plan`` (a canonical, pinned or not, or the
    resource) into a :class:`RegimenSchedule`, resolving its ActivityDefinitions in ``kb``.

    Raises KnowledgeError (naming the artifact and action) for an unknown canonical, a
    PlanDefinition that is no clinical protocol, or a cycle it cannot read.
    """
    if isinstance(plan, str):
        try:
            plan = kb.get(plan)
        except KnowledgeError as exc:
            raise KnowledgeError(f"no regimen PlanDefinition {plan}", artifact=plan) from exc
    url = str(plan.get("url") or plan.get("id") or "?")
    if not is_clinical_protocol(plan):
        raise KnowledgeError("not a clinical-protocol PlanDefinition: it has no regimen schedule", artifact=url)
    cycles: list[CycleDefinition] = []
    next_number = 1
    for index, action in enumerate(plan.get("action") or ()):
        timing = (action.get("timingTiming") or {}).get("repeat")
        if timing is None:
            continue
        where = str(action.get("id") or f"action[{index}]")
        if cycles and cycles[-1].last is None:
            raise KnowledgeError("a cycle action follows an open-ended one (no count)", artifact=url,
                                 action_id=where)
        definition = _cycle(kb, url, where, action, timing, next_number)
        cycles.append(definition)
        next_number = (definition.last or definition.first) + 1
    if not cycles:
        raise KnowledgeError("no cycle action (a top-level action with timingTiming.repeat)", artifact=url)
    return RegimenSchedule(url, plan.get("version"), str(plan.get("title") or plan.get("name") or url), tuple(cycles))


def _fail(url: str, where: str, message: str, field_name: str | None = None) -> KnowledgeError:
    return KnowledgeError(message, artifact=url, action_id=where, field=field_name)


def _whole(value: Any) -> int | None:
    """A positive whole number from JSON (21 or 21.0), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value) or value < 1:
        return None
    return int(value)


def _cycle(kb: KnowledgeBase, url: str, where: str, action: Mapping[str, Any], repeat: Mapping[str, Any],
           first: int) -> CycleDefinition:
    if repeat.get("durationUnit") != "d":
        raise _fail(url, where, f"cycle length unit {repeat.get('durationUnit')!r} is not 'd'",
                    "timingTiming.repeat.durationUnit")
    length = _whole(repeat.get("duration"))
    if length is None:
        raise _fail(url, where, f"cycle length {repeat.get('duration')!r} is not a whole number of days",
                    "timingTiming.repeat.duration")
    longest = None
    if "durationMax" in repeat:
        longest = _whole(repeat["durationMax"])
        if longest is None or longest < length:
            raise _fail(url, where, f"durationMax {repeat['durationMax']!r} is not a whole number of days "
                        f"of at least the cycle length {length}", "timingTiming.repeat.durationMax")
    last: int | None = None
    if "count" in repeat or "countMax" in repeat:
        count = _whole(repeat.get("count"))
        most = _whole(repeat["countMax"]) if "countMax" in repeat else count
        if count is None or most is None or most < count:
            raise _fail(url, where, f"cycle count {repeat.get('count')!r} / countMax {repeat.get('countMax')!r} "
                        "is not a number of cycles", "timingTiming.repeat.count")
        last = first + most - 1
    doses, ids = _dose_days(kb, url, where, action)
    windows = _windows(url, where, action, doses, ids)
    for day in doses:
        if day > (longest or length):
            raise _fail(url, where, f"dose day {day} is past the end of the {longest or length}-day cycle")
    return CycleDefinition(first, last, length, longest, doses, windows)


def _days_of_cycle(child: Mapping[str, Any]) -> list[int] | None:
    for ext in child.get("extension") or ():
        if ext.get("url") == EXT_TIMING_DAYS_OF_CYCLE:
            return [sub.get("valueInteger") for sub in ext.get("extension") or () if sub.get("url") == "day"]
    return None


def _per_m2_dose(ad: Mapping[str, Any]) -> float | None:
    """The ``calculated`` dose in UCUM mg/m2 of an ActivityDefinition, else None."""
    for dosage in ad.get("dosage") or ():
        for dr in dosage.get("doseAndRate") or ():
            codes = {(c.get("system", DOSE_RATE_TYPE), c.get("code")) for c in (dr.get("type") or {}).get("coding") or ()}
            q = dr.get("doseQuantity") or {}
            if (DOSE_RATE_TYPE, "calculated") in codes and q.get("code") == _PER_M2 and q.get("system") == UCUM:
                value = q.get("value")
                if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                    return None
                return float(value)
    return None


def _product(ad: Mapping[str, Any]) -> str:
    concept = ad.get("productCodeableConcept") or {}
    codes = sorted(f"{c.get('system')}|{c.get('code')}" for c in concept.get("coding") or ())
    return ";".join(codes) or str(concept.get("text") or ad.get("url"))


def _dose_days(kb: KnowledgeBase, url: str, where: str,
               action: Mapping[str, Any]) -> tuple[dict[int, float], dict[str, int]]:
    """(day -> mg/m², child action id -> its day) of the BSA-dosed child actions (an action
    on several days of the cycle has no single day, so no window is read from or to it)."""
    doses: dict[int, float] = {}
    ids: dict[str, int] = {}
    product: str | None = None
    for index, child in enumerate(action.get("action") or ()):
        child_where = f"{where}.{child.get('id') or f'action[{index}]'}"
        canonical = child.get("definitionCanonical")
        days = _days_of_cycle(child)
        if not canonical or days is None:
            continue
        try:
            ad = kb.get(canonical)
        except KnowledgeError as exc:
            raise _fail(url, child_where, f"definitionCanonical {canonical} does not resolve",
                        "definitionCanonical") from exc
        mg_m2 = _per_m2_dose(ad)
        if mg_m2 is None:
            continue  # a flat-dose drug (premedication): not the BSA-dosed one
        if product is not None and _product(ad) != product:
            raise _fail(url, child_where, "a second BSA-dosed product in the cycle: which one the schedule "
                        "follows is ambiguous", "definitionCanonical")
        product = _product(ad)
        if not days or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in days):
            raise _fail(url, child_where, f"timing-daysOfCycle days {days!r} are not days of the cycle (1, 2, ...)",
                        "extension")
        for day in days:
            if doses.get(day, mg_m2) != mg_m2:
                raise _fail(url, child_where, f"day {day} has two different doses ({doses[day]} and {mg_m2} mg/m2)")
            doses[day] = mg_m2
        if child.get("id") and len(days) == 1:
            ids[str(child["id"])] = days[0]
    return doses, ids


def _windows(url: str, where: str, action: Mapping[str, Any], doses: Mapping[int, float],
             ids: Mapping[str, int]) -> dict[int, tuple[int, int]]:
    """Dose windows from the first dose's ``before-start`` relatedActions (module docstring)."""
    if not doses:
        return {}
    anchor_day = min(doses)
    windows: dict[int, tuple[int, int]] = {}
    for child in action.get("action") or ():
        if ids.get(str(child.get("id"))) != anchor_day:
            continue
        for related in child.get("relatedAction") or ():
            target = ids.get(str(related.get("actionId")))
            if not target or related.get("relationship") != "before-start":
                continue
            low, high = _offset_days(related)
            if low is None or high is None:
                continue  # an interval without an upper bound (">= 6 days apart") is no window
            window = (anchor_day + low, anchor_day + high)
            if not window[0] <= target <= window[1]:
                raise _fail(url, where, f"the window of the day-{target} dose (days {window[0]}-{window[1]}) "
                            f"does not hold day {target}", "action.relatedAction")
            windows[target] = window
    days = sorted(doses)
    for nominal, (low, high) in windows.items():
        for other in days:
            if other != nominal and low <= other <= high:
                raise _fail(url, where, f"the window of the day-{nominal} dose (days {low}-{high}) holds "
                            f"the day-{other} dose", "action.relatedAction")
        for other, (olow, ohigh) in windows.items():
            if other != nominal and low <= ohigh and olow <= high:
                raise _fail(url, where, f"the windows of the day-{nominal} and day-{other} doses overlap",
                            "action.relatedAction")
    return windows


def _offset_days(related: Mapping[str, Any]) -> tuple[int | None, int | None]:
    if "offsetDuration" in related:
        d = _days(related["offsetDuration"])
        return d, d
    rng = related.get("offsetRange") or {}
    return _days(rng.get("low")), _days(rng.get("high"))


def _days(quantity: Mapping[str, Any] | None) -> int | None:
    if not quantity or (quantity.get("code") or quantity.get("unit")) != "d":
        return None
    value = quantity.get("value")
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value) or value < 0:
        return None
    return int(value)
