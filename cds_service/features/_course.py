"""The inotuzumab course: doses given, grouped into cycles, and where a drafted dose falls.

Cycles are counted from the MedicationAdministration history (issue 3: "Cycles counted
from the administration history"), with the structure of the regimen the course follows,
read from its PlanDefinition (``ctx.regimens[REGIMEN_NOT_IN_CR]``, knowledge/_regimen.py):
in the shipped NZ entry "Cycle 1 - 21 days", "Cycles 2 to 3 - 28 days" (later cycles take
the last definition, clinical.md §1.5), inotuzumab on days 1, 8 and 15. A dose starts a
new cycle when the current cycle has run its length (``duration``) or already holds its
doses (the regimen's dose days); otherwise it belongs to the current cycle. Cycle 1 "may
be extended to 28 days" for toxicity (``durationMax``): no dose is given in the
extension, so the next dose still opens cycle 2. Drafted doses are placed after the doses
given, in date order, each as if the earlier drafts had been given. The CR/CRi regimen
has the same 28-day cycles and three doses, so counting on the not-in-CR one holds for
both. Without the regimen the cycles cannot be placed: every feature built on them is
``unknown`` and says why (fail visible), the dates of the doses stay known.

All day counts use calendar dates as recorded. The windows and limits that judge these
numbers (days 8/15 +/- 2, >= 6 days apart, 6 weeks beyond the cycle length, cycle counts)
are in the rule PlanDefinitions, not here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING

from cds_service.features import _valuesets as vs
from cds_service.features._medications import administrations
from cds_service.features._memo import memo
from cds_service.features._orders import DraftDose, ino_draft_doses
from cds_service.features._read import unavailable
from cds_service.features._registry import Evidence, FeatureContext, FeatureValue, feature
from cds_service.record import PatientRecord

if TYPE_CHECKING:
    from cds_service.knowledge import RegimenSchedule


@dataclass(frozen=True)
class Placement:
    """Where one dose (given or drafted) falls in the course.

    The cycle fields (``cycle_number``, ``cycle_start``, ``day_of_cycle``,
    ``dose_in_cycle``, ``cycle_length``) are None when the course could not be placed in
    cycles (no regimen: ``Course.problem`` says so); the dates are always known.
    """

    day: date
    reference: str
    drafted: bool
    date_assumed: bool
    cycle_number: int | None
    cycle_start: date | None
    day_of_cycle: int | None
    dose_in_cycle: int | None
    cycle_length: int | None
    new_cycle: bool
    previous_day: date | None
    previous_cycle_start: date | None
    previous_cycle_length: int | None

    @property
    def days_since_previous(self) -> int | None:
        return (self.day - self.previous_day).days if self.previous_day else None

    @property
    def days_beyond_expected(self) -> int | None:
        """For a dose opening a cycle: days past the end of the previous cycle's expected length."""
        if not self.new_cycle or self.previous_cycle_start is None or self.previous_cycle_length is None:
            return None
        return (self.day - self.previous_cycle_start).days - self.previous_cycle_length

    def as_json(self) -> dict[str, object]:
        return {
            "order": self.reference,
            "date": self.day.isoformat(),
            "date_assumed": self.date_assumed,
            "cycle_number": self.cycle_number,
            "cycle_start": self.cycle_start.isoformat() if self.cycle_start else None,
            "expected_length": self.cycle_length,
            "day_of_cycle": self.day_of_cycle,
            "dose_in_cycle": self.dose_in_cycle,
            "new_cycle": self.new_cycle,
            "previous_dose_date": self.previous_day.isoformat() if self.previous_day else None,
            "days_since_previous": self.days_since_previous,
            "days_beyond_expected": self.days_beyond_expected,
        }


def place(given: list[tuple[date, str]], drafts: tuple[DraftDose, ...] | list[DraftDose],
          schedule: RegimenSchedule | None) -> list[Placement]:
    """Place every dose, given then drafted, in the cycles of ``schedule`` (module
    docstring); without a schedule only the dates and intervals are set."""
    doses = [(day, ref, False, False) for day, ref in given]
    doses += [(d.day, d.reference, True, d.date_assumed) for d in drafts]
    out: list[Placement] = []
    previous: date | None = None
    if schedule is None:
        for day, ref, is_draft, assumed in doses:
            out.append(Placement(day, ref, is_draft, assumed, None, None, None, None, None, False, previous, None, None))
            previous = day
        return out
    number, start, in_cycle = 0, None, 0
    prev_start: date | None = None
    prev_length: int | None = None
    for day, ref, is_draft, assumed in doses:
        new = (start is None or (day - start).days >= schedule.length_days(number)
               or in_cycle >= schedule.doses_per_cycle(number))
        if new:
            prev_start, prev_length = start, (schedule.length_days(number) if start else None)
            number, start, in_cycle = number + 1, day, 0
        in_cycle += 1
        assert start is not None
        out.append(
            Placement(day, ref, is_draft, assumed, number, start, (day - start).days + 1, in_cycle,
                      schedule.length_days(number), new, previous, prev_start if new else None,
                      prev_length if new else None)
        )
        previous = day
    return out


def _schedule_problem(schedule: RegimenSchedule | None) -> str | None:
    if schedule is None:
        return (f"the regimen {vs.REGIMEN_NOT_IN_CR} is not loaded, so the cycle lengths and doses per "
                "cycle are unknown (knowledge package incomplete: run `cds-service validate`)")
    if any(not c.dose_days for c in schedule.cycles):
        return f"the regimen {schedule.url} has a cycle without inotuzumab dose days (per m²)"
    return None


@dataclass(frozen=True)
class Course:
    """The course as far as the record tells: placements of given and drafted doses."""

    given: tuple[Placement, ...]
    drafts: tuple[Placement, ...]
    selected: tuple[Placement, ...]
    problem: str | None
    #: False when the doses could not be placed in cycles (no usable regimen).
    placed: bool = True

    @property
    def last_given(self) -> Placement | None:
        return self.given[-1] if self.given else None


@memo
def course(record: PatientRecord, ctx: FeatureContext) -> Course:
    admins, notes = administrations(record, ctx, vs.INOTUZUMAB)
    drafts = ino_draft_doses(record, ctx)
    missing = unavailable(record, "MedicationAdministration")
    problems = []
    if missing:
        problems.append("inotuzumab administrations could not be read (" + "; ".join(missing) + ")")
    elif notes:
        problems.append("some inotuzumab administrations could not be placed: " + "; ".join(notes))
    schedule = ctx.regimens.get(vs.REGIMEN_NOT_IN_CR)
    schedule_problem = _schedule_problem(schedule)
    if schedule_problem:
        problems.append(schedule_problem)
        schedule = None
    placed = place([(a.day, a.reference) for a in admins], drafts, schedule)
    selected_refs = {d.reference for d in drafts if d.selected}
    given = tuple(p for p in placed if not p.drafted)
    drafted = tuple(p for p in placed if p.drafted)
    return Course(given, drafted, tuple(p for p in drafted if p.reference in selected_refs),
                  "; ".join(problems) or None, schedule is not None)


def _remedy(c: Course) -> str:
    """What to do about ``c.problem`` (a missing regimen's problem already says it)."""
    return " Record the administrations." if c.placed else ""


def _course_evidence(c: Course) -> list[Evidence]:
    out = []
    if c.given:
        last = c.given[-1]
        where = (f"{last.cycle_number} cycle(s); current cycle {last.cycle_number} started "
                 f"{last.cycle_start.isoformat()}, " if last.cycle_start else "cycles not placed; ")
        out.append(
            Evidence(
                f"Inotuzumab doses given: {len(c.given)} in {where}last dose {last.day.isoformat()}",
                last.reference,
                last.day.isoformat(),
            )
        )
    else:
        out.append(Evidence("No inotuzumab administration recorded before this order"))
    for p in c.selected:
        extra = " (the order gives no planned day: today is assumed)" if p.date_assumed else ""
        since = f", {p.days_since_previous} days after the previous dose" if p.previous_day else ""
        where = f"cycle {p.cycle_number}, day {p.day_of_cycle}" if p.cycle_number else "cycle not placed"
        out.append(Evidence(f"Drafted dose {p.day.isoformat()}{extra}: {where}{since}", p.reference, p.day.isoformat()))
    return out


@feature("cycle")
def cycle(record: PatientRecord, ctx: FeatureContext) -> FeatureValue:
    """Cycle number and day of the drafted inotuzumab dose(s), from the doses given.

    INO2 / NZ treatment-duration policy counts cycles ("a maximum of 6 cycles", "within 3
    cycles"); the regimen sets the cycle lengths (module docstring). Value (for the
    earliest selected draft): ``number``, ``day_of_cycle``, ``start_date``,
    ``expected_length``, ``new_cycle``, ``previous_dose_date``, ``days_since_previous``,
    ``last_given_date``, ``cycles_given``; ``max_number`` over the selected drafts;
    ``doses`` = every selected draft's placement. Unknown when administrations cannot be
    read or the regimen is not loaded: a cycle count from partial history (or from
    guessed cycle lengths) is never presented as known.
    """
    c = course(record, ctx)
    if not c.selected:
        return FeatureValue("not_met", None, (), "no inotuzumab dose is selected")
    evidence = tuple(_course_evidence(c))
    if c.problem:
        return FeatureValue.unknown(f"Cycle count unknown: {c.problem}.{_remedy(c)}", *evidence)
    focus = c.selected[0]
    value = {
        "number": focus.cycle_number,
        "day_of_cycle": focus.day_of_cycle,
        "start_date": focus.cycle_start.isoformat() if focus.cycle_start else None,
        "expected_length": focus.cycle_length,
        "new_cycle": focus.new_cycle,
        "previous_dose_date": focus.previous_day.isoformat() if focus.previous_day else None,
        "days_since_previous": focus.days_since_previous,
        "last_given_date": c.last_given.day.isoformat() if c.last_given else None,
        "cycles_given": c.last_given.cycle_number if c.last_given else 0,
        "max_number": max(p.cycle_number or 0 for p in c.selected),
        "doses": [p.as_json() for p in c.selected],
    }
    return FeatureValue("met", value, evidence)


@feature("dose_schedule")
def dose_schedule(record: PatientRecord, ctx: FeatureContext) -> FeatureValue:
    """Day of cycle of each selected inotuzumab draft and days since the previous dose.

    NZ regimen entry: "Days of administration for doses on days 8 and 15 can be moved
    +/- 2 days (maintain a minimum of 6 days between doses)". Value: ``doses`` (each:
    order, date, cycle_number, day_of_cycle, days_since_previous, previous_dose_date,
    date_assumed). The rule PlanDefinition holds the windows.
    """
    c = course(record, ctx)
    if not c.selected:
        return FeatureValue("not_met", {"doses": []}, (), "no inotuzumab dose is selected")
    evidence = tuple(_course_evidence(c))
    if c.problem:
        return FeatureValue.unknown(f"Dose schedule cannot be checked: {c.problem}.", *evidence)
    return FeatureValue("met", {"doses": [p.as_json() for p in c.selected]}, evidence)


@feature("treatment_break")
def treatment_break(record: PatientRecord, ctx: FeatureContext) -> FeatureValue:
    """How far a drafted new cycle starts beyond the previous cycle's expected length.

    INO2: "No planned treatment breaks of more than 6 weeks beyond the expected cycle
    length are allowed"; the expected length is the regimen's cycle length (``duration``:
    21 days for cycle 1, 28 later in the NZ entry), not the extension (``durationMax``).
    Value: ``doses`` (selected drafts that open a cycle after an earlier one: order,
    date, days_beyond_expected, previous_cycle_start, previous_cycle_length),
    ``max_days_beyond``, ``days_since_last_dose``.
    """
    c = course(record, ctx)
    if not c.selected:
        return FeatureValue("not_met", {"doses": []}, (), "no inotuzumab dose is selected")
    evidence = list(_course_evidence(c))
    if c.problem:
        return FeatureValue.unknown(f"Treatment break cannot be measured: {c.problem}.", *evidence)
    doses = []
    for p in c.selected:
        beyond = p.days_beyond_expected
        if beyond is None:
            continue
        doses.append(
            {
                "order": p.reference,
                "date": p.day.isoformat(),
                "days_beyond_expected": beyond,
                "previous_cycle_start": p.previous_cycle_start.isoformat() if p.previous_cycle_start else None,
                "previous_cycle_length": p.previous_cycle_length,
            }
        )
        evidence.append(
            Evidence(
                f"Cycle {p.cycle_number} would start {p.day.isoformat()}: {beyond} days beyond the "
                f"{p.previous_cycle_length}-day cycle that started {p.previous_cycle_start}",
                p.reference,
            )
        )
    last = c.last_given
    value = {
        "doses": doses,
        "max_days_beyond": max((d["days_beyond_expected"] for d in doses), default=None),
        "days_since_last_dose": (ctx.now.date() - last.day).days if last else None,
    }
    return FeatureValue("met" if doses else "not_met", value, tuple(evidence))
