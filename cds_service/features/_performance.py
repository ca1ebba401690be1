"""Performance status for INO2 "The patient has a performance status of 0 - 2".

INO2 names no scale. The latest score on any of ECOG, Karnofsky or Lansky is used
(whichever is newest; no source says which age switches from Lansky to Karnofsky,
clinical.md §3/§5). ECOG is judged against ``SitePolicy.ecog_max_met``; Karnofsky and
Lansky against ``lansky_karnofsky_met_min`` / ``lansky_karnofsky_unmet_below``, because
the published mappings to ECOG disagree at ECOG 2 (clinical.md §3): between the two the
answer is "unknown: scale mapping uncertain", a policy question an attestation does not
settle. Scores are read from valueInteger, valueQuantity, a numeric valueString, or a
valueCodeableConcept whose text or code is a plain number; coded answers (LOINC LA…,
NCIt C…) are not mapped (no verified answer-code table) and are reported as unreadable.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from cds_service.features import _valuesets as vs
from cds_service.features._labs import observations
from cds_service.features._registry import Evidence, FeatureContext
from cds_service.record import PatientRecord, Resource, reference_of

SCALES = {"ECOG": vs.ECOG, "Karnofsky": vs.KARNOFSKY, "Lansky": vs.LANSKY}
_NUMBER = re.compile(r"^\s*(\d{1,3})\s*$")


def read_score(obs: Resource) -> int | None:
    """The score as an integer, or None when it is not a plain number."""
    if isinstance(obs.get("valueInteger"), int) and not isinstance(obs.get("valueInteger"), bool):
        return int(obs["valueInteger"])
    q = obs.get("valueQuantity") or {}
    if isinstance(q.get("value"), (int, float)) and not isinstance(q.get("value"), bool) \
            and float(q["value"]).is_integer():
        return int(q["value"])
    texts: list[Any] = [obs.get("valueString")]
    concept = obs.get("valueCodeableConcept") or {}
    texts.append(concept.get("text"))
    texts += [c.get("code") for c in concept.get("coding") or ()]
    for text in texts:
        m = _NUMBER.match(text) if isinstance(text, str) else None
        if m:
            return int(m[1])
    return None


@dataclass(frozen=True)
class PerformanceStatus:
    """The INO2 performance-status judgement: status met|unmet|unknown, and whether an
    attestation may settle an unknown (only when no score could be read)."""

    status: str
    reason: str
    attestation_may_decide: bool
    evidence: tuple[Evidence, ...] = ()


def performance_status(record: PatientRecord, ctx: FeatureContext) -> PerformanceStatus:
    latest = []
    for scale, valueset in SCALES.items():
        found = observations(record, ctx, valueset)
        if found:
            latest.append((found[0][0], scale, found[0][1]))
    if not latest:
        return PerformanceStatus("unknown", "No ECOG, Lansky or Karnofsky score is recorded.", True)
    when, scale, obs = max(latest, key=lambda t: t[0])
    day = when.date().isoformat()
    score = read_score(obs)
    if score is None:
        return PerformanceStatus(
            "unknown", f"The {scale} score of {day} is not recorded as a number and cannot be read.", True,
            (Evidence(f"{scale} performance status on {day}: value not readable", reference_of(obs), day),),
        )
    ev = (Evidence(f"{scale} performance status {score} on {day}", reference_of(obs), day),)
    policy = ctx.policy
    if scale == "ECOG":
        if not 0 <= score <= 5:
            return PerformanceStatus("unknown", f"ECOG {score} on {day} is not a valid ECOG score (0-5).", True, ev)
        if score <= policy.ecog_max_met:
            return PerformanceStatus("met", f"ECOG {score} on {day}.", False, ev)
        return PerformanceStatus("unmet", f"ECOG {score} on {day}: INO2 requires performance status 0-2.", False, ev)
    if not 0 <= score <= 100:
        return PerformanceStatus("unknown", f"{scale} {score} on {day} is not a valid score (0-100).", True, ev)
    if score >= policy.lansky_karnofsky_met_min:
        return PerformanceStatus("met", f"{scale} {score} on {day}.", False, ev)
    if score < policy.lansky_karnofsky_unmet_below:
        return PerformanceStatus(
            "unmet", f"{scale} {score} on {day}: below performance status 0-2 under every published mapping.",
            False, ev,
        )
    return PerformanceStatus(
        "unknown",
        f"{scale} {score} on {day}: scale mapping uncertain. Published {scale}-to-ECOG mappings disagree "
        f"at ECOG 2 (site policy counts >= {policy.lansky_karnofsky_met_min} as met); clinical judgement needed.",
        False,
        ev,
    )
