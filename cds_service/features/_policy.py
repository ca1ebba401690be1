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


def _policy(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class SitePolicy:
    child_age_limit_years: int = _policy(
        18,
        "INO2 is for a 'child' but sets no age (clinical.md §4.1); NHS England's children's "
        "medicines commissioning applies under 18. At or above this age the `child` "
        "criterion is unmet and the card points to the adult form INO1.",
    )
    azole_window_days: int = _policy(
        56,
        "How long after the last inotuzumab dose a drafted systemic azole still warns: "
        "VOD occurred up to 56 days after the last dose (US label, clinical.md §1.2).",
    )
    recent_administration_days: int = _policy(
        7,
        "A medication administered within this many days counts as active (systemic azole "
        "and other-SACT checks) even when no active order is recorded. No source sets it "
        "(issue 3: 'MedicationAdministration within the window'); longer flags more.",
    )
    bsa_dose_tolerance_percent: float = _policy(
        5.0,
        "Largest accepted difference between the ordered inotuzumab dose and BSA x mg/m2 "
        "before the bsa-dose card fires (no source sets it: local dose-banding policy).",
    )
    bsa_max_age_days: int = _policy(
        7,
        "Oldest height, weight or BSA measurement accepted for BSA dosing; older counts as "
        "missing (no source sets it; children's weight changes quickly).",
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
    )
    bsa_formula: str = _policy(
        "none",
        "How BSA is obtained when only height and weight are recorded. `none` (default): BSA is "
        "taken only from a recorded BSA observation; the sources cite no formula (clinical.md), so "
        "the card names the height and weight and asks for a recorded BSA. `mosteller`: "
        "sqrt(height cm x weight kg / 3600) (Mosteller RD, Simplified calculation of body-surface "
        "area, N Engl J Med 1987;317:1098), used only when no usable recorded BSA exists; the card "
        "shows the derived BSA and the formula. One of none | mosteller.",
    )
    gilbert_haemolysis_exception: str = _policy(
        "hold",
        "The label excepts bilirubin raised because of Gilbert's syndrome or haemolysis from the "
        "liver hold (clinical.md §1.4) but no source says how to tell that the rise is due to it. "
        "`hold` (default, conservative): the hold card stays critical and says Gilbert's/haemolysis "
        "is recorded and the label's exception may apply (the prescriber judges). `apply`: with "
        "Gilbert's syndrome or haemolysis recorded as active, the card is a warning that says the "
        "exception was applied. One of hold | apply.",
    )
    plausible_age_max_years: int = _policy(
        120,
        "Plausibility: an age above this (or a birth date in the future) is not a human age, so age "
        "and every criterion on it is unknown and the card names the birth date (placeholder birth "
        "dates such as 1900-01-01 are caught). Only physically impossible values are rejected.",
    )
    plausible_height_cm: str = _policy(
        "20-300",
        "Plausibility: heights outside this range (cm; other units converted) are physically "
        "impossible for a living patient (e.g. metres or inches entered as cm) and are not used for "
        "BSA dosing; the card names the datum.",
    )
    plausible_weight_kg: str = _policy(
        "0.2-700",
        "Plausibility: weights outside this range (kg; g and lb converted) are physically impossible "
        "for a living patient (e.g. grams entered as kg) and are not used for BSA dosing; the card "
        "names the datum.",
    )
    plausible_bsa_m2: str = _policy(
        "0.03-7.7",
        "Plausibility: body surface areas outside this range (m2) are physically impossible and are "
        "not used for dosing; the card names the datum. The limits are those of the height and weight "
        "ranges above under the Mosteller formula (20 cm and 0.2 kg give 0.03 m2; 300 cm and 700 kg "
        "give 7.6 m2). Negative laboratory results are always implausible.",
    )
    ecog_max_met: int = _policy(
        2,
        "Highest ECOG score that meets INO2 'performance status of 0 - 2'.",
    )
    lansky_karnofsky_met_min: int = _policy(
        70,
        "Lowest Lansky/Karnofsky score counted as ECOG 0-2 with confidence. The published "
        "mappings disagree at ECOG 2 (clinical.md §3), so 50-60 is 'unknown' by default.",
    )
    lansky_karnofsky_unmet_below: int = _policy(
        50,
        "Lansky/Karnofsky scores below this are unmet under every published mapping "
        "(clinical.md §3).",
    )
    asciminib_counts_for_ino2: str = _policy(
        "unknown",
        "Whether a failed asciminib alone satisfies INO2's 'second or third generation TKI' "
        "(clinical.md §4.2: not defined, policy decision). One of unknown | yes | no.",
    )

    def __post_init__(self) -> None:
        """Refuse values that would silence a check (a setting error stops the start)."""
        if self.bsa_formula not in BSA_FORMULAS:
            raise ValueError(f"bsa_formula must be one of {' | '.join(BSA_FORMULAS)}, not {self.bsa_formula!r}")
        if self.gilbert_haemolysis_exception not in ("hold", "apply"):
            raise ValueError("gilbert_haemolysis_exception must be hold | apply, "
                             f"not {self.gilbert_haemolysis_exception!r}")
        if self.bsa_dose_critical_percent < self.bsa_dose_tolerance_percent:
            raise ValueError("bsa_dose_critical_percent must not be below bsa_dose_tolerance_percent")
        for name in ("plausible_height_cm", "plausible_weight_kg", "plausible_bsa_m2"):
            plausible_range(getattr(self, name), name)

    @classmethod
    def help(cls) -> dict[str, str]:
        """Field name -> help text (for the README table and `--help`)."""
        return {f.name: f.metadata["help"] for f in fields(cls)}

    def as_json(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}
