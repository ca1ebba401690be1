"""Laboratory results before an inotuzumab dose: liver tests as multiples of the ULN, and
neutrophil/platelet counts against the pre-treatment counts.

Sources (clinical.md §1.3, §1.4, S-IE/S-USD): liver tests (ALT, AST, total bilirubin,
ALP) "before and after each dose"; the hold rule compares total bilirubin and AST/ALT
with the ULN; day-1 count rules compare ANC and platelets with the counts "before InO
treatment". clinical.md §2.5: a bilirubin rule must accept both mass (1975-2) and molar
(14631-6) units "and compare each against its own ULN"; "×ULN rules cannot be evaluated
without the reference range". The ULN is the Observation's own ``referenceRange.high``;
no ULN, or a ULN in another unit than the value, gives no ratio (and says why), never a
guessed one. Ratios are rounded to 6 decimals only to drop float noise.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from operator import itemgetter
from typing import Any

from cds_service.features import _valuesets as vs
from cds_service.features._course import course
from cds_service.features._index import RAISES, dated, moment
from cds_service.features._memo import memo, shared
from cds_service.features._read import (
    INACTIVE_CLINICAL,
    coded_status,
    concept_key,
    fmt,
    in_valueset,
    is_asserted,
    quantity,
    unavailable,
)
from cds_service.features._registry import Evidence, FeatureContext, FeatureValue, feature
from cds_service.record import PatientRecord, Resource, reference_of

LIVER_TESTS = {"bilirubin": vs.TOTAL_BILIRUBIN, "ast": vs.AST, "alt": vs.ALT, "alp": vs.ALP}
_LABEL = {"bilirubin": "Total bilirubin", "ast": "AST", "alt": "ALT", "alp": "ALP",
          "anc": "Neutrophils (ANC)", "platelets": "Platelets"}
_NO_RESULT = frozenset({"registered", "cancelled", "entered-in-error"})


#: One usable result: (when, its position in the record, the Observation).
_Row = tuple[datetime, int, Resource]


@memo
def _usable_by_code(record: PatientRecord, ctx: FeatureContext) -> tuple[tuple[Any, tuple[_Row, ...]], ...]:
    """Every Observation with a result dated up to now, grouped by code (groups in order of
    first appearance, rows in record order), each group with its :func:`concept_key`
    (two groups may share one when the same code is written in two shapes).

    Why grouped: a record repeats a few lab codes hundreds of times, so ValueSet membership
    is asked once per distinct code, and one pass over the record serves every ValueSet.
    """
    groups: dict[Any, list[_Row]] = {}
    now = ctx.now
    for n, (obs, void, when_read) in enumerate(dated(record, ctx, "Observation")):
        if void or obs.get("status") in _NO_RESULT:
            continue
        when = moment(obs, when_read) if when_read is RAISES else when_read
        if when is None or when > now:  # type: ignore[operator]
            continue
        code = obs.get("code")
        # grouped by a flat key in the common case (one coding; a record has hundreds of
        # results), else by concept_key (a pair, so never equal to a flat key); each group's
        # concept_key is read once, from its first result
        codings = code.get("coding") if type(code) is dict else None
        if type(codings) is list and len(codings) == 1 and type(codings[0]) is dict:
            c = codings[0]
            key = (c.get("system"), c.get("code"), c.get("display"), code.get("text"))  # type: ignore[union-attr]
        else:
            key = concept_key(code)
        rows = groups.get(key)
        if rows is None:
            rows = groups[key] = []
        rows.append((when, n, obs))  # type: ignore[arg-type]
    return tuple((concept_key(rows[0][2].get("code")), tuple(rows)) for rows in groups.values())


#: sort keys of a row (in C: the sorts of every ValueSet's results were a tenth of the labs' time)
_WHEN, _POSITION = itemgetter(0), itemgetter(1)


@memo
def observations(record: PatientRecord, ctx: FeatureContext, valueset: str) -> tuple[tuple[datetime, Resource], ...]:
    """Results in ``valueset`` up to now, newest first, equal times in record order
    (undated ones are not usable)."""
    picked: list[_Row] = []
    groups = 0
    common = shared(ctx.terminology)
    for key, rows in _usable_by_code(record, ctx):
        # in_valueset's cached answer read here without the call (twelve ValueSets ask)
        hit = common.get(("vs", valueset, key))
        if hit is None:
            hit = in_valueset(record, ctx, valueset, rows[0][2].get("code"), key)
        if hit:
            picked.extend(rows)
            groups += 1
    if groups > 1:  # one group's rows are in record order already
        picked.sort(key=_POSITION)
    picked.sort(key=_WHEN, reverse=True)  # stable: equal times keep record order
    return tuple([(when, obs) for when, _, obs in picked])


def _norm_unit(unit: str) -> str:
    return unit.lower().replace(" ", "").replace("µ", "u").replace("μ", "u")


@dataclass(frozen=True)
class Result:
    """One numeric result, read against its own reference range."""

    name: str
    reference: str
    day: date
    value: float
    unit: str
    uln: float | None
    x_uln: float | None
    problem: str | None

    def as_json(self) -> dict[str, Any]:
        return {"value": self.value, "unit": self.unit, "uln": self.uln, "x_uln": self.x_uln,
                "date": self.day.isoformat(), "reference": self.reference}

    def describe(self) -> str:
        text = f"{_LABEL[self.name]} {fmt(self.value)} {self.unit}".rstrip()
        if self.x_uln is not None:
            text += f" (ULN {fmt(self.uln)}: {fmt(self.x_uln)} × ULN)"
        elif self.problem:
            text += f" ({self.problem})"
        return f"{text} on {self.day.isoformat()}"


def read_x_uln(name: str, when: datetime, obs: Resource) -> Result | str:
    """The result as a multiple of its own ULN, or why it cannot be read at all."""
    q = quantity(obs.get("valueQuantity"))
    if q is None:
        return f"{_LABEL[name]} result of {when.date().isoformat() if when else 'unknown date'} has no numeric value"
    value, unit = q
    if value < 0:  # SitePolicy plausible_*: a negative result is physically impossible
        return (f"{_LABEL[name]} {fmt(value)} {unit} on {when.date().isoformat()} is implausible "
                "(a negative result): correct or repeat it")
    uln = x = problem = None
    highs = [r.get("high") for r in obs.get("referenceRange") or () if isinstance(r, dict) and r.get("high")]
    if not highs:
        problem = "no reference range upper limit (ULN) recorded"
    else:
        hq = quantity(highs[0])
        if hq is None or hq[0] <= 0:
            problem = "the reference range upper limit (ULN) cannot be read"
        elif hq[1] and unit and _norm_unit(hq[1]) != _norm_unit(unit):
            problem = f"ULN unit {hq[1]} differs from the result unit {unit}"
        else:
            uln = hq[0]
            x = round(value / uln, 6)
    return Result(name, reference_of(obs), when.date(), value, unit, uln, x, problem)


def latest_result(record: PatientRecord, ctx: FeatureContext, name: str) -> Result | str | None:
    found = observations(record, ctx, LIVER_TESTS[name])
    return read_x_uln(name, *found[0]) if found else None


@dataclass(frozen=True)
class DoseWindow:
    """What 'before this dose' means for a result (HAZ-006; clinical.md §1.3: liver tests
    and a full blood count "before each dose"): dated after the last inotuzumab dose given
    (when there is one) and at most ``SitePolicy.lab_max_age_days`` old on the day of the
    dose (the latest selected drafted dose, or today)."""

    last_dose: date | None
    dose_day: date
    max_age_days: int

    def why_not_current(self, day: date) -> str | None:
        """Why a result dated ``day`` does not count as taken before this dose, or None."""
        if self.last_dose is not None and day <= self.last_dose:
            return f"taken before the last inotuzumab dose on {self.last_dose.isoformat()}"
        age = (self.dose_day - day).days
        if age > self.max_age_days:
            return (f"{age} days old on the day of the dose, {self.dose_day.isoformat()}; "
                    f"site limit {self.max_age_days} days")
        return None


def dose_window(record: PatientRecord, ctx: FeatureContext) -> DoseWindow:
    c = course(record, ctx)
    day = max([ctx.now.date(), *(p.day for p in c.selected)])
    return DoseWindow(c.last_given.day if c.last_given else None, day, ctx.policy.lab_max_age_days)


def gilbert_or_haemolysis(record: PatientRecord, ctx: FeatureContext) -> list[Resource] | None:
    """Active Conditions in GilbertSyndromeOrHaemolysis; None if Conditions are unavailable."""
    found = [
        c for c in record.of_type("Condition")
        if is_asserted(c) and coded_status(c, "clinicalStatus") not in INACTIVE_CLINICAL
        and in_valueset(record, ctx, vs.GILBERT_OR_HAEMOLYSIS, c.get("code"))
    ]
    if not found and unavailable(record, "Condition"):
        return None
    return found


@feature("liver_function")
def liver_function(record: PatientRecord, ctx: FeatureContext) -> FeatureValue:
    """Latest total bilirubin, AST, ALT and ALP before this dose as multiples of their own ULN.

    SmPC hold rule (clinical.md §1.4): "Total bilirubin >1.5×ULN and AST/ALT >2.5×ULN",
    with the exception "bilirubin raised because of Gilbert's syndrome or haemolysis".
    "Before this dose" (clinical.md §1.3: liver tests "before and after each dose"): dated
    after the last inotuzumab dose and no older than ``SitePolicy.lab_max_age_days``
    (:class:`DoseWindow`); an older latest result gives None and is named with its date and
    "repeat it" (HAZ-006: month-old normal results must not silence the hold). A rule reads
    ``x_uln > t or latest_x_uln.x > t``: false only on a current result, true on an abnormal
    one however old (the hold stands until a repeat shows recovery), else unknown.
    Value: ``bilirubin_x_uln``, ``ast_x_uln``, ``alt_x_uln``, ``alp_x_uln`` (None when
    not computable or not current), ``latest_x_uln`` (test -> ratio of the latest result,
    current or not), ``results`` (per test: value, unit, uln, x_uln, date, reference, and
    ``stale`` = why not current), ``problems``, ``gilbert_or_haemolysis`` (bool, None if
    Conditions unavailable).
    Status ``met`` when at least one of bilirubin, AST, ALT is known as ×ULN (the others
    are None and the note says why: a rule that needs them gets an empty result, i.e. a
    data-unavailable card); ``unknown`` when none is.
    """
    value: dict[str, Any] = {"results": {}, "problems": [], "latest_x_uln": {}}
    evidence = []
    window = dose_window(record, ctx)
    stale_tests = []
    for name in LIVER_TESTS:
        res = latest_result(record, ctx, name)
        value[f"{name}_x_uln"] = None
        if res is None:
            value["problems"].append(f"no {_LABEL[name]} result recorded")
            evidence.append(Evidence(f"No {_LABEL[name]} result recorded"))
            continue
        if isinstance(res, str):
            value["problems"].append(res)
            evidence.append(Evidence(res))
            continue
        value["results"][name] = res.as_json()
        value["latest_x_uln"][name] = res.x_uln
        stale = window.why_not_current(res.day)
        if stale:
            # not a result 'before this dose': it rules nothing out (HAZ-006); only
            # ``latest_x_uln`` keeps it, so a rule may still act on an abnormal one
            value["results"][name]["stale"] = stale
            stale_tests.append(_LABEL[name])
            evidence.append(Evidence(f"{res.describe()}: not current ({stale}); repeat it before this dose",
                                     res.reference, res.day.isoformat()))
            continue
        value[f"{name}_x_uln"] = res.x_uln
        evidence.append(Evidence(res.describe(), res.reference, res.day.isoformat()))
        if res.problem:
            value["problems"].append(f"{_LABEL[name]} on {res.day.isoformat()}: {res.problem}")
    if stale_tests:
        value["problems"].append(f"{', '.join(stale_tests)} not taken before this dose (see the dates): repeat")
    gilbert = gilbert_or_haemolysis(record, ctx)
    value["gilbert_or_haemolysis"] = None if gilbert is None else bool(gilbert)
    for cond in gilbert or ():
        code = cond.get("code") or {}
        name = code.get("text") or next((c.get("display") for c in code.get("coding") or () if c.get("display")), "")
        evidence.append(Evidence(f"Recorded: {name or 'Gilbert syndrome or haemolysis'} "
                                 "(bilirubin may be raised for this reason)", reference_of(cond)))
    unread = unavailable(record, "Observation")
    if unread:
        value["problems"].append("laboratory results could not be read: " + "; ".join(unread))
        evidence.append(Evidence("Laboratory results could not be read: " + "; ".join(unread)))
    if all(value[f"{n}_x_uln"] is not None for n in ("bilirubin", "ast", "alt")):
        return FeatureValue("met", value, tuple(evidence))
    note = ("Liver tests incomplete: " + "; ".join(value["problems"])
            + ". Record total bilirubin, AST and ALT with their reference ranges before each dose.")
    # Partly known values stay usable: FHIRPath's empty propagation decides what they
    # settle (bilirubin <= 1.5 x ULN rules out the hold whatever AST/ALT are).
    partial = any(value[f"{n}_x_uln"] is not None for n in ("bilirubin", "ast", "alt"))
    return FeatureValue("met" if partial else "unknown", value, tuple(evidence), note)


# ------------------------------------------------------------------ blood counts

#: Count units read as 10^9/L (factor 1) or cells per microlitre (factor 1/1000). Unit
#: arithmetic only: 10^3/uL equals 10^9/L.
_PER_L9 = {"10*9/l", "10^9/l", "x10^9/l", "x10*9/l", "10e9/l", "10*3/ul", "10^3/ul", "x10^3/ul",
           "k/ul", "thou/ul", "10*3/mm3", "10^3/mm3"}
_PER_UL = {"/ul", "/mm3", "cells/ul", "{cells}/ul", "1/ul"}


def count_1e9_per_l(obs: Resource) -> float | None:
    q = quantity(obs.get("valueQuantity"))
    if q is None:
        return None
    unit = _norm_unit(q[1])
    if unit in _PER_L9:
        return q[0]
    if unit in _PER_UL:
        return round(q[0] / 1000, 6)
    return None


@feature("blood_counts")
def blood_counts(record: PatientRecord, ctx: FeatureContext) -> FeatureValue:
    """ANC and platelets now and before inotuzumab treatment, in 10^9/L.

    SmPC (clinical.md §1.4, day-1 rules): the rule depends on the "counts before InO
    treatment" = the latest count on or before the day of the first inotuzumab dose
    (with no dose given yet: the latest count). The current count is the latest one
    after the last dose given ("full blood count before each dose", §1.3); an older one
    does not count, nor does one older than ``SitePolicy.lab_max_age_days`` on the day of
    the dose (HAZ-006; it is named with its date and "repeat"). Value: ``anc``, ``platelets``, ``anc_baseline``,
    ``platelets_baseline`` (10^9/L or None), ``dates``, ``problems``. Status ``met`` when
    a current ANC or platelet count is known (missing parts are None and the note says
    why); ``unknown`` when neither is, or the doses given cannot be read.
    """
    c = course(record, ctx)
    first = c.given[0].day if c.given else None
    last = c.last_given.day if c.last_given else None
    window = dose_window(record, ctx)
    value: dict[str, Any] = {"problems": [], "dates": {}}
    evidence = []
    for name, valueset in (("anc", vs.NEUTROPHIL_COUNT), ("platelets", vs.PLATELET_COUNT)):
        found = observations(record, ctx, valueset)
        current = [(w, o) for w, o in found if last is None or w.date() > last]
        baseline = [(w, o) for w, o in found if first is None or w.date() <= first]
        for key, pool, label in ((name, current, "latest"), (f"{name}_baseline", baseline, "before treatment")):
            value[key] = None
            if not pool:
                since = f" after the last dose on {last.isoformat()}" if key == name and last else ""
                value["problems"].append(f"no {_LABEL[name]} result{since} ({label})")
                evidence.append(Evidence(f"No {_LABEL[name]} result{since} ({label})"))
                continue
            when, obs = pool[0]
            stale = window.why_not_current(when.date()) if key == name else None
            if stale:  # HAZ-006: a count too old for "before each dose" (clinical.md §1.3)
                shown = f"{_LABEL[name]} on {when.date().isoformat()}"
                value["problems"].append(f"{shown} is {stale}: repeat the full blood count before this dose")
                evidence.append(Evidence(f"{_LABEL[name]} on {when.date().isoformat()}: not current ({stale}); "
                                         "repeat the full blood count before this dose",
                                         reference_of(obs), when.date().isoformat()))
                continue
            count = count_1e9_per_l(obs)
            unit = (obs.get("valueQuantity") or {}).get("unit") or (obs.get("valueQuantity") or {}).get("code")
            if count is not None and count < 0:
                why = (f"{_LABEL[name]} {fmt(count)} × 10⁹/L on {when.date().isoformat()} is implausible "
                       "(a negative count): correct or repeat it")
                value["problems"].append(why)
                evidence.append(Evidence(why, reference_of(obs), when.date().isoformat()))
                continue
            if count is None:
                value["problems"].append(f"{_LABEL[name]} of {when.date().isoformat()}: the value or unit ({unit}) cannot be read")
                evidence.append(Evidence(f"{_LABEL[name]}: value or unit {unit!r} cannot be read",
                                         reference_of(obs), when.date().isoformat()))
                continue
            value[key] = count
            value["dates"][key] = when.date().isoformat()
            evidence.append(Evidence(f"{_LABEL[name]} {fmt(count)} × 10⁹/L on {when.date().isoformat()} ({label})",
                                     reference_of(obs), when.date().isoformat()))
    if c.problem:
        value["problems"].append(c.problem)
    if unavailable(record, "Observation"):
        value["problems"].append("laboratory results could not be read")
    if all(value[k] is not None for k in ("anc", "platelets", "anc_baseline", "platelets_baseline")) and not c.problem:
        return FeatureValue("met", value, tuple(evidence))
    note = "Blood counts incomplete: " + "; ".join(value["problems"]) + ". Record a full blood count before each dose."
    partial = value["anc"] is not None or value["platelets"] is not None
    return FeatureValue("met" if partial and not c.problem else "unknown", value, tuple(evidence), note)


def liver_tests_missing_since(record: PatientRecord, ctx: FeatureContext, day: date | None) -> list[str]:
    """Liver tests (of bilirubin, AST, ALT, ALP) with no result dated after ``day``
    (with ``day`` None: with no result at all)."""
    missing = []
    for name, valueset in LIVER_TESTS.items():
        found = observations(record, ctx, valueset)
        if not any(day is None or w.date() > day for w, _ in found):
            missing.append(_LABEL[name])
    return missing
