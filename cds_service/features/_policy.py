"""Site policies: the decisions the sources leave open, explicit and configurable.

Each field has a conservative default and help text that says why it is a policy and
what it rests on (shared/reference/clinical.md). A site changes them in the `[policy]`
table of the config file or with `CDS_POLICY_<NAME>` environment variables; the values
in force are stamped into the audit record of every invocation.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any


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

    @classmethod
    def help(cls) -> dict[str, str]:
        """Field name -> help text (for the README table and `--help`)."""
        return {f.name: f.metadata["help"] for f in fields(cls)}

    def as_json(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}
