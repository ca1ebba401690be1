"""What the ordering session drafts: inotuzumab doses and their premedication.

Sources: NZ regimen entry (doses in mg/m² on days 1, 8, 15; loratadine, paracetamol and
dexamethasone before each dose); INO2 ("Inotuzumab ozogamicin will be used as
monotherapy"). Card text and doses live in the rule PlanDefinitions; here the orders are
only read.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from cds_service.features import _valuesets as vs
from cds_service.features._medications import Dose, drafted, is_selected, order_dose, planned_date
from cds_service.features._memo import memo
from cds_service.features._read import fmt
from cds_service.features._registry import Evidence, FeatureContext, FeatureValue, OrderGuard, feature
from cds_service.record import PatientRecord, Resource, reference_of


@dataclass(frozen=True)
class DraftDose:
    """One drafted inotuzumab dose."""

    order: Resource
    reference: str
    day: date
    date_assumed: bool
    dose: Dose
    selected: bool

    def as_json(self) -> dict[str, object]:
        return {
            "order": self.reference,
            "selected": self.selected,
            "date": self.day.isoformat(),
            "date_assumed": self.date_assumed,
            "dose_mg": self.dose.mg,
            "dose_mg_m2": self.dose.mg_per_m2,
        }

    def describe(self) -> str:
        dose = f"{fmt(self.dose.mg, 4)} mg" if self.dose.mg is not None else "no dose in mg"
        if self.dose.mg_per_m2 is not None:
            dose += f" ({fmt(self.dose.mg_per_m2, 4)} mg/m²)"
        when = f"{self.day.isoformat()}" + (" (the order gives no planned day: today is assumed)" if self.date_assumed else "")
        return f"Inotuzumab ozogamicin {dose} drafted for {when}"


@memo
def ino_draft_doses(record: PatientRecord, ctx: FeatureContext) -> tuple[DraftDose, ...]:
    """Every drafted inotuzumab dose of the session, earliest first."""
    out = []
    for order in drafted(record, ctx, vs.INOTUZUMAB):
        day = planned_date(order)
        out.append(
            DraftDose(
                order=order,
                reference=reference_of(order),
                day=day or ctx.now.date(),
                date_assumed=day is None,
                dose=order_dose(order),
                selected=is_selected(record, order),
            )
        )
    out.sort(key=lambda d: (d.day, d.reference))
    return tuple(out)


@feature("ino_drafted", guards=OrderGuard("selected", (vs.INOTUZUMAB,)))
def ino_drafted(record: PatientRecord, ctx: FeatureContext) -> FeatureValue:
    """Is inotuzumab ozogamicin drafted in this session, and is it selected?

    ``selected`` is what the inotuzumab rules fire on: on order-select the clinician
    picked an inotuzumab order (CDS Hooks order-select: "focus on the selected orders");
    on order-sign every draft is selected. Value: ``drafted``, ``selected``, ``orders``
    (each: order, selected, date, date_assumed, dose_mg, dose_mg_m2), ``focus`` = the
    earliest selected dose. Source: the whole INO2 form and NZ entry are about this drug.
    """
    doses = ino_draft_doses(record, ctx)
    selected = [d for d in doses if d.selected]
    value = {
        "drafted": bool(doses),
        "selected": bool(selected),
        "orders": [d.as_json() for d in doses],
        "focus": selected[0].reference if selected else None,
    }
    evidence = tuple(Evidence(d.describe(), d.reference, d.day.isoformat()) for d in selected)
    return FeatureValue("met" if selected else "not_met", value, evidence)


@feature("premedication_missing")
def premedication_missing(record: PatientRecord, ctx: FeatureContext) -> FeatureValue:
    """Which of loratadine, paracetamol and dexamethasone the session does not draft.

    NZ regimen entry: each inotuzumab dose on days 1, 8 and 15 is preceded by
    "loratadine * 10 mg oral administration", "paracetamol * 1000 mg flat dosing oral
    administration" and "dexamethasone * 12 mg flat dosing intravenous" (label: a
    corticosteroid, an antipyretic and an antihistamine before each dose, clinical.md §1.6).
    Only draft orders of the same session count ("in the same order session", issue 3).
    Value: ``missing`` (names), ``present`` (names), each ``<name>_missing`` boolean.
    """
    value: dict[str, object] = {"missing": [], "present": []}
    evidence = []
    for name, valueset in vs.PREMEDICATIONS.items():
        found = drafted(record, ctx, valueset)
        value[f"{name}_missing"] = not found
        if found:
            value["present"].append(name)  # type: ignore[union-attr]
            evidence.append(Evidence(f"{name.capitalize()} drafted in this session", reference_of(found[0])))
        else:
            value["missing"].append(name)  # type: ignore[union-attr]
            evidence.append(Evidence(f"No {name} drafted in this session"))
    status = "met" if value["missing"] else "not_met"
    return FeatureValue(status, value, tuple(evidence))
