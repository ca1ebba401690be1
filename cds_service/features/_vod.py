"""Risk factors for hepatotoxicity and VOD/SOS that the record shows.

Sources (clinical.md §1.2, S-USW/S-USBW/S-UK1): "ongoing or prior liver disease, prior
HSCT, ... a greater number of InO cycles"; "Patients with prior VOD or serious ongoing
liver disease (cirrhosis, nodular regenerative hyperplasia, active hepatitis) are at
higher risk of worsening liver disease, including VOD"; EU contraindications "prior
confirmed severe or ongoing VOD/SOS" and "serious ongoing liver disease"; §1.3: liver
tests "before and after each dose". INO2: the prescriber must be "fully aware of the risk
factors ... and that this risk rises as the number of cycles administered increases".

Factors that need a threshold (bilirubin >= ULN, cycle number) are judged in the rule
PlanDefinition from ``liver_function`` and ``cycle``; the factors here need none.
"""

from __future__ import annotations

from cds_service.features import _valuesets as vs
from cds_service.features._course import course
from cds_service.features._labs import liver_tests_missing_since
from cds_service.features._read import (
    INACTIVE_CLINICAL,
    coded_status,
    concept_text,
    effective,
    in_valueset,
    is_asserted,
    unavailable,
)
from cds_service.features._registry import Evidence, FeatureContext, FeatureValue, feature
from cds_service.features._response import hsct_planned, prior_hsct
from cds_service.record import PatientRecord, reference_of

#: Factors that make the card critical (EU contraindications, clinical.md §1.2).
CRITICAL = frozenset({"prior-vod", "serious-liver-disease"})


def _when(resource: dict) -> str:
    moment = effective(resource)
    return f" ({moment.date().isoformat()})" if moment else ""


@feature("vod_risk")
def vod_risk(record: PatientRecord, ctx: FeatureContext) -> FeatureValue:
    """The VOD/SOS risk factors found (module docstring), each {code, display}.

    Codes: ``prior-vod`` (any asserted Condition in HepaticVenoOcclusiveDisease),
    ``serious-liver-disease`` (SeriousLiverDisease, clinically active or status not
    given), ``prior-liver-disease`` (SeriousLiverDisease, inactive/resolved), ``prior-hsct``,
    ``planned-hsct``, ``no-recent-liver-tests`` (no ALT/AST/bilirubin/ALP result since the
    previous dose, or none at all before the first). Value: ``factors``,
    ``factor_count``, ``critical`` (prior-vod or serious-liver-disease found).
    Unknown when Conditions or Procedures could not be read: absence is then not shown.
    """
    factors: list[dict[str, str]] = []
    evidence: list[Evidence] = []

    def add(code: str, display: str, reference: str | None = None) -> None:
        if code not in {f["code"] for f in factors}:
            factors.append({"code": code, "display": display})
        evidence.append(Evidence(display, reference))

    for cond in record.of_type("Condition"):
        if not is_asserted(cond):
            continue
        name = concept_text(cond.get("code"))
        if in_valueset(record, ctx, vs.HEPATIC_VOD, cond.get("code")):
            add("prior-vod", f"Hepatic VOD/SOS recorded: {name}{_when(cond)}", reference_of(cond))
        elif in_valueset(record, ctx, vs.SERIOUS_LIVER_DISEASE, cond.get("code")):
            if coded_status(cond, "clinicalStatus") in INACTIVE_CLINICAL:
                add("prior-liver-disease", f"Previous liver disease: {name}", reference_of(cond))
            else:
                add("serious-liver-disease", f"Serious ongoing liver disease: {name}", reference_of(cond))
    for res in prior_hsct(record, ctx):
        add("prior-hsct", f"Previous haematopoietic stem cell transplant{_when(res)}", reference_of(res))
    if hsct_planned(record, ctx).value is True:
        add("planned-hsct", "Haematopoietic stem cell transplant planned")
    c = course(record, ctx)
    previous = c.last_given.day if c.last_given else None
    missing = liver_tests_missing_since(record, ctx, previous)
    if missing:
        since = f"since the previous dose on {previous.isoformat()}" if previous else "before the first dose"
        add("no-recent-liver-tests", f"No liver tests {since}: {', '.join(missing)} missing")
    value = {
        "factors": factors,
        "factor_count": len(factors),
        "critical": any(f["code"] in CRITICAL for f in factors),
    }
    gaps = unavailable(record, "Condition", "Procedure")
    if gaps:
        note = ("VOD risk factors may be incomplete: " + "; ".join(gaps)
                + ". Check the history for VOD/SOS, liver disease and HSCT.")
        return FeatureValue("unknown", value, tuple(evidence), note)
    return FeatureValue("met" if factors else "not_met", value, tuple(evidence))
