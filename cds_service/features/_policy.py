"""Site policies: the decisions the sources leave open, explicit and configurable.

Each field has a conservative default and help text that says why it is a policy and
what it rests on (shared/reference/clinical.md). A site changes them in the `[policy]`
table of the config file or with `CDS_POLICY_<NAME>` environment variables; the values
in force are stamped into the audit record of every invocation.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

#: The BSA formulas the site may choose (bsa_formula): only ones with a cited reference.
BSA_FORMULAS = ("none", "mosteller")


def plausible_range(text: str, name: str = "range") -> tuple[float, float]:
    """``"low-high"`` as two numbers (low < high), else ValueError naming the policy."""
    low, sep, high = str(text).partition("-")
    try:
        lo, hi = float(low), float(high)
    except ValueError:
        lo = hi = float("nan")
    if not sep or not lo < hi:
        raise ValueError(f"{name} must be 'low-high' with low < high (e.g. 20-300), not {text!r}")
    return lo, hi


@dataclass(frozen=True)
class Allowed:
    """The range a site may set a policy to, and why (HAZ-026: a value of the right type
    can still make every check weaker). ``low``/``high`` bound a number (inclusive unless
    ``low_open``); ``choices`` list the accepted words. A value outside stops the start."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    choices: tuple[str, ...] = ()
    why: str = ""

    def problem(self, value: Any) -> str | None:
        """Why ``value`` is not allowed, or None."""
        if self.choices:
            return None if value in self.choices else f"must be one of {' | '.join(self.choices)}"
        if isinstance(value, str) and self.low is not None and self.high is not None:  # a 'low-high' range
            try:
                lo, hi = plausible_range(value)
            except ValueError as exc:
                return str(exc)
            return None if self.low <= lo and hi <= self.high else f"must lie within {self.text()}"
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return "must be a number"
        if value != value or (self.low is not None and (value <= self.low if self.low_open else value < self.low)) \
                or (self.high is not None and value > self.high):
            return f"must be in {self.text()}"
        return None

    def text(self) -> str:
        if self.choices:
            return " | ".join(self.choices)
        return f"{'(' if self.low_open else '['}{self.low:g}, {self.high:g}]"


def _policy(default: Any, help: str, allowed: Allowed | None = None) -> Any:
    """A policy field. ``allowed`` is required in practice (a test fails on a policy
    without one, HAZ-026) but optional here, so a policy added without one still loads."""
    return field(default=default, metadata={"help": help, "allowed": allowed})


@dataclass(frozen=True)
class SitePolicy:
    child_age_limit_years: int = _policy(
        18,
        "INO2 is for a 'child' but sets no age (clinical.md §4.1); NHS England's children's "
        "medicines commissioning applies under 18. At or above this age the `child` "
        "criterion is unmet and the card points to the adult form INO1.",
        Allowed(16, 18,
                why="the only definitions of a child in the reference: under 16 (PTC service) and under 18 (children's medicines commissioning), clinical.md §4.1"),
    )
    azole_window_days: int = _policy(
        56,
        "How long after the last inotuzumab dose a drafted systemic azole still warns: "
        "VOD occurred up to 56 days after the last dose (US label, clinical.md §1.2).",
        Allowed(56, 365,
                why="VOD up to 56 days after the last dose (clinical.md §1.2): a shorter window misses azoles in that period"),
    )
    recent_administration_days: int = _policy(
        7,
        "A medication administered within this many days counts as active (systemic azole "
        "and other-SACT checks) even when no active order is recorded. No source sets it "
        "(issue 3: 'MedicationAdministration within the window'); longer flags more.",
        Allowed(1, 90, why="0 would never count an administered drug as active"),
    )
    bsa_dose_tolerance_percent: float = _policy(
        5.0,
        "Largest accepted difference between the ordered inotuzumab dose and BSA x mg/m2 "
        "before the bsa-dose card fires (no source sets it: local dose-banding policy).",
        Allowed(0, 10, low_open=True,
                why="above 10 % a dose error of one dose band or more passes silently; 0 would flag every rounding"),
    )
    bsa_max_age_days: int = _policy(
        7,
        "Oldest height, weight or BSA measurement accepted for BSA dosing; older counts as "
        "missing (no source sets it; children's weight changes quickly).",
        Allowed(0, 28, why="a child's weight changes within a cycle (28 days)"),
    )
    lab_max_age_days: int = _policy(
        7,
        "Oldest liver test (bilirubin, AST, ALT, ALP) or blood count (ANC, platelets) that "
        "counts as taken 'before this dose'; older, the check is unknown and the card asks to "
        "repeat the test. The label asks for liver tests and a full blood count before each "
        "dose (clinical.md §1.3) but sets no age; results must also postdate the last "
        "inotuzumab dose. Default: doses are at least 6 days apart (NZ regimen), so 7 days "
        "is the longest a result can be and still belong to this dosing interval.",
        Allowed(0, 14, why="results older than two weeks are from before the previous dose interval; "
                "many sites use 3 days"),
    )
    bsa_dose_critical_percent: float = _policy(
        15.0,
        "Difference between the ordered inotuzumab dose and BSA x mg/m2 beyond which the bsa-dose "
        "card is critical (a gross error) and proposes the calculated dose; between the tolerance "
        "and this band it stays a warning. No source sets it: 15% is three times the tolerance and "
        "below the smallest step between the doses in the sources (0.5 vs 0.8 mg/m2 = 60%; the "
        "paediatric dose levels 0.4/0.5 and 0.6/0.8 mg/m2 = 20-25%, clinical.md §1.10), so a dose "
        "for another day, response or dose level is critical. Lower = more critical cards; must not "
        "be below bsa_dose_tolerance_percent.",
        Allowed(0, 50, low_open=True, why="at 60 % (0.5 vs 0.8 mg/m², the smallest step between the regimen's doses) "
                "a dose of another day or response would not be critical; never below the tolerance"),
    )
    bsa_formula: str = _policy(
        "none",
        "How BSA is obtained when only height and weight are recorded. `none` (default): BSA is "
        "taken only from a recorded BSA observation; the sources cite no formula (clinical.md), so "
        "the card names the height and weight and asks for a recorded BSA. `mosteller`: "
        "sqrt(height cm x weight kg / 3600) (Mosteller RD, Simplified calculation of body-surface "
        "area, N Engl J Med 1987;317:1098), used only when no usable recorded BSA exists; the card "
        "shows the derived BSA and the formula. One of none | mosteller.",
        Allowed(choices=BSA_FORMULAS, why="only formulas with a cited reference"),
    )
    gilbert_haemolysis_exception: str = _policy(
        "hold",
        "The label excepts bilirubin raised because of Gilbert's syndrome or haemolysis from the "
        "liver hold (clinical.md §1.4) but no source says how to tell that the rise is due to it. "
        "`hold` (default, conservative): the hold card stays critical and says Gilbert's/haemolysis "
        "is recorded and the label's exception may apply (the prescriber judges). `apply`: with "
        "Gilbert's syndrome or haemolysis recorded as active, the card is a warning that says the "
        "exception was applied. One of hold | apply.",
        Allowed(choices=("hold", "apply"), why="the two ways the label's exception can be handled"),
    )
    plausible_age_max_years: int = _policy(
        120,
        "Plausibility: an age above this (or a birth date in the future) is not a human age, so age "
        "and every criterion on it is unknown and the card names the birth date (placeholder birth "
        "dates such as 1900-01-01 are caught). Only physically impossible values are rejected.",
        Allowed(1, 150, why="above 150 is no human age, so placeholder birth dates would count; a low value only makes "
                "more ages unknown (fail visible), never met"),
    )
    plausible_height_cm: str = _policy(
        "20-300",
        "Plausibility: heights outside this range (cm; other units converted) are physically "
        "impossible for a living patient (e.g. metres or inches entered as cm) and are not used for "
        "BSA dosing; the card names the datum.",
        Allowed(10, 300, why="a range wider than physically possible would let an impossible height through"),
    )
    plausible_weight_kg: str = _policy(
        "0.2-700",
        "Plausibility: weights outside this range (kg; g and lb converted) are physically impossible "
        "for a living patient (e.g. grams entered as kg) and are not used for BSA dosing; the card "
        "names the datum.",
        Allowed(0.1, 1000, why="a range wider than physically possible would let an impossible weight through"),
    )
    plausible_bsa_m2: str = _policy(
        "0.03-7.7",
        "Plausibility: body surface areas outside this range (m2) are physically impossible and are "
        "not used for dosing; the card names the datum. The limits are those of the height and weight "
        "ranges above under the Mosteller formula (20 cm and 0.2 kg give 0.03 m2; 300 cm and 700 kg "
        "give 7.6 m2). Negative laboratory results are always implausible.",
        Allowed(0.01, 10, why="a range wider than physically possible would let an impossible BSA through"),
    )
    ecog_max_met: int = _policy(
        2,
        "Highest ECOG score that meets INO2 'performance status of 0 - 2'.",
        Allowed(0, 2, why="INO2: performance status 0 - 2; a higher value meets what INO2 excludes"),
    )
    lansky_karnofsky_met_min: int = _policy(
        70,
        "Lowest Lansky/Karnofsky score counted as ECOG 0-2 with confidence. The published "
        "mappings disagree at ECOG 2 (clinical.md §3), so 50-60 is 'unknown' by default.",
        Allowed(50, 100, why="below 50 no published mapping gives ECOG 0-2 (clinical.md §3)"),
    )
    lansky_karnofsky_unmet_below: int = _policy(
        50,
        "Lansky/Karnofsky scores below this are unmet under every published mapping "
        "(clinical.md §3).",
        Allowed(0, 70,
                why="above 70, a score of 70 (ECOG 2 or better under every mapping, clinical.md §3) would be unmet"),
    )
    asciminib_counts_for_ino2: str = _policy(
        "unknown",
        "Whether a failed asciminib alone satisfies INO2's 'second or third generation TKI' "
        "(clinical.md §4.2: not defined, policy decision). One of unknown | yes | no.",
        Allowed(choices=("unknown", "yes", "no"), why="the three decisions clinical.md §4.2 leaves open"),
    )

    def __post_init__(self) -> None:
        """Refuse values that would silence a check (a setting error stops the start)."""
        if self.bsa_formula not in BSA_FORMULAS:
            raise ValueError(f"bsa_formula must be one of {' | '.join(BSA_FORMULAS)}, not {self.bsa_formula!r}")
        if self.gilbert_haemolysis_exception not in ("hold", "apply"):
            raise ValueError("gilbert_haemolysis_exception must be hold | apply, "
                             f"not {self.gilbert_haemolysis_exception!r}")
        if self.bsa_dose_critical_percent < self.bsa_dose_tolerance_percent and not self._out_of_range(
                "bsa_dose_tolerance_percent", "bsa_dose_critical_percent"):
            raise ValueError("bsa_dose_critical_percent must not be below bsa_dose_tolerance_percent")
        for name in ("plausible_height_cm", "plausible_weight_kg", "plausible_bsa_m2"):
            plausible_range(getattr(self, name), name)

    def _out_of_range(self, *names: str) -> bool:
        """Whether any of ``names`` is outside its own allowed range (that problem is then
        the one reported, naming the policy, rather than a comparison between two)."""
        allowed = self.allowed()
        return any(allowed[n] is not None and allowed[n].problem(getattr(self, n)) for n in names)

    @classmethod
    def allowed(cls) -> dict[str, Allowed | None]:
        """Field name -> the range a site may set it to (README table, start-up check)."""
        return {f.name: f.metadata.get("allowed") for f in fields(cls)}

    def problems(self) -> list[tuple[str, str]]:
        """(policy name, what is wrong) for every value outside its allowed range."""
        out = []
        for name, allowed in self.allowed().items():
            why = allowed.problem(getattr(self, name)) if allowed is not None else None
            if why:
                out.append((name, f"{why}, got {getattr(self, name)!r} ({allowed.why})"))
        if self.lansky_karnofsky_unmet_below > self.lansky_karnofsky_met_min:
            out.append(("lansky_karnofsky_unmet_below",
                        f"must not be above lansky_karnofsky_met_min ({self.lansky_karnofsky_met_min}), "
                        f"got {self.lansky_karnofsky_unmet_below}"))
        return out

    @classmethod
    def help(cls) -> dict[str, str]:
        """Field name -> help text (for the README table and `--help`)."""
        return {f.name: f.metadata["help"] for f in fields(cls)}

    def as_json(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}
