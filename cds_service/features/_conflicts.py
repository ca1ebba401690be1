"""Co-medication conflicts with inotuzumab: systemic azoles and other anti-cancer agents.

Sources: NZ regimen entry, "Prophylaxis with azole antifungals should be withheld whilst
being treated with inotuzumab ozogamicin (due to risk of sinusoidal obstruction
syndrome)"; INO2, "Inotuzumab ozogamicin will only be used as monotherapy" (form text:
"will be used as monotherapy"). A conflict is looked for in both directions: inotuzumab
selected while the other drug is drafted or active, and the other drug selected while
inotuzumab is drafted or its course is still running.
"""

from __future__ import annotations

from cds_service.features import _valuesets as vs
from cds_service.features._course import course
from cds_service.features._medications import active, drafted, is_selected, matches, planned_date
from cds_service.features._memo import memo
from cds_service.features._orders import ino_draft_doses
from cds_service.features._read import medication_name, unavailable
from cds_service.features._registry import Evidence, FeatureContext, FeatureValue, OrderGuard, feature
from cds_service.record import PatientRecord, Resource, reference_of

_MEDICATION_DATA = ("MedicationRequest", "MedicationStatement", "MedicationAdministration")


def _active_ino_orders(record: PatientRecord, ctx: FeatureContext) -> list[Resource]:
    return [
        r for r in record.of_type("MedicationRequest")
        if r.get("status") in ("active", "on-hold") and matches(ctx, vs.INOTUZUMAB, r, record)
    ]


def _describe(resources: list[Resource], record: PatientRecord, how: str) -> list[Evidence]:
    return [Evidence(f"{medication_name(r, record)} {how}", reference_of(r)) for r in resources]


@feature("azole_conflict", guards=OrderGuard("conflict", (vs.INOTUZUMAB, vs.SYSTEMIC_AZOLES)))
def azole_conflict(record: PatientRecord, ctx: FeatureContext) -> FeatureValue:
    """Is a systemic azole drafted or active together with inotuzumab?

    NZ regimen entry (module docstring); the reason is the risk of sinusoidal obstruction
    syndrome (a CYP3A4 rationale is UNVERIFIED, clinical.md §1.9). "On an active
    inotuzumab course" = an active inotuzumab order, or a dose given within
    ``SitePolicy.azole_window_days`` (default 56: VOD occurred up to 56 days after the
    last dose, clinical.md §1.2) of the azole's planned start (else today).
    Value: ``conflict``, ``kinds``, ``azole_drafts`` (references: the suggestions delete
    them), ``azole_active``, ``last_ino_dose``, ``days_since_last_ino_dose``, ``window_days``.
    """
    window = ctx.policy.azole_window_days
    ino_drafts = ino_draft_doses(record, ctx)
    ino_selected = any(d.selected for d in ino_drafts)
    azole_drafts = drafted(record, ctx, vs.SYSTEMIC_AZOLES)
    azole_selected = [a for a in azole_drafts if is_selected(record, a)]
    if not ino_selected and not azole_selected:
        return FeatureValue("not_met", {"conflict": False, "kinds": [], "azole_drafts": []})
    azole_active = active(record, ctx, vs.SYSTEMIC_AZOLES)
    c = course(record, ctx)
    last = c.last_given
    active_orders = _active_ino_orders(record, ctx)
    evidence = [Evidence(d.describe(), d.reference, d.day.isoformat()) for d in ino_drafts]
    evidence += _describe(azole_drafts, record, "drafted in this session")
    evidence += _describe(azole_active, record, "active")
    kinds: list[str] = []
    days_since = None
    if ino_selected and (azole_drafts or azole_active):
        kinds.append("inotuzumab-with-azole")
    if azole_selected:
        if ino_drafts:
            kinds.append("azole-with-inotuzumab-draft")
        if active_orders:
            kinds.append("azole-during-inotuzumab-order")
            evidence += _describe(active_orders, record, "order active")
        if last is not None:
            starts = [planned_date(a) or ctx.now.date() for a in azole_selected]
            days_since = min((s - last.day).days for s in starts)
            evidence.append(
                Evidence(f"Last inotuzumab dose {last.day.isoformat()}: {days_since} days before the azole "
                         f"(site window {window} days)", last.reference, last.day.isoformat())
            )
            if days_since <= window:
                kinds.append("azole-within-window-of-last-dose")
    value = {
        "conflict": bool(kinds),
        "kinds": kinds,
        "azole_drafts": [reference_of(a) for a in azole_drafts],
        "azole_active": [reference_of(a) for a in azole_active],
        "last_ino_dose": last.day.isoformat() if last else None,
        "days_since_last_ino_dose": days_since,
        "window_days": window,
    }
    if kinds:
        return FeatureValue("met", value, tuple(evidence))
    # No conflict found: say "unknown" when the data that could show one is missing.
    missing = unavailable(record, *_MEDICATION_DATA) if ino_selected else []
    if azole_selected and not ino_drafts and not active_orders and c.problem:
        missing.append(c.problem)
    if missing:
        return FeatureValue.unknown(
            "Azole check incomplete: " + "; ".join(missing)
            + ". Check the medication list for systemic azoles and the date of the last inotuzumab dose.",
            *evidence,
        )
    return FeatureValue("not_met", value, tuple(evidence))


def _other_sact(record: PatientRecord, ctx: FeatureContext, pick) -> list[Resource]:  # noqa: ANN001
    """Other anti-cancer agents (OtherSactAgents and every BCR-ABL TKI ValueSet), never
    inotuzumab or the premedications (dexamethasone is also an ALL agent)."""
    seen: dict[str, Resource] = {}
    for valueset in (vs.OTHER_SACT, *vs.TKI_GENERATIONS.values()):
        for res in pick(record, ctx, valueset):
            seen.setdefault(reference_of(res), res)
    excluded = (vs.INOTUZUMAB, *vs.PREMEDICATIONS.values())
    return [r for r in seen.values() if not any(matches(ctx, v, r, record) for v in excluded)]


@feature("other_sact", guards=OrderGuard("conflict", (vs.INOTUZUMAB, vs.OTHER_SACT, *vs.TKI_GENERATIONS.values())))
@memo
def other_sact(record: PatientRecord, ctx: FeatureContext) -> FeatureValue:
    """Is another anti-cancer agent drafted or active together with inotuzumab?

    INO2: "Inotuzumab ozogamicin will be used as monotherapy". The inotuzumab course
    counts as running while an inotuzumab order is active or the current cycle has not
    reached its expected length (the regimen's cycle length: 21/28 days in the NZ entry).
    Premedication (loratadine, paracetamol, dexamethasone) is not counted. Value:
    ``conflict``, ``drafted``, ``active`` (references), ``ino_course_running``.
    """
    ino_drafts = ino_draft_doses(record, ctx)
    ino_selected = any(d.selected for d in ino_drafts)
    others_drafted = _other_sact(record, ctx, drafted)
    others_selected = [o for o in others_drafted if is_selected(record, o)]
    if not ino_selected and not others_selected:
        return FeatureValue("not_met", {"conflict": False, "drafted": [], "active": []})
    others_active = _other_sact(record, ctx, active)
    c = course(record, ctx)
    last = c.last_given
    running = bool(_active_ino_orders(record, ctx)) or (
        last is not None and last.cycle_start is not None and last.cycle_length is not None
        and (ctx.now.date() - last.cycle_start).days < last.cycle_length
    )
    evidence = [Evidence(d.describe(), d.reference, d.day.isoformat()) for d in ino_drafts]
    evidence += _describe(others_drafted, record, "drafted in this session")
    evidence += _describe(others_active, record, "active")
    conflict = (ino_selected and bool(others_drafted or others_active)) or (
        bool(others_selected) and (bool(ino_drafts) or running)
    )
    if running and last is not None and last.cycle_start is not None:
        evidence.append(Evidence(f"Inotuzumab cycle {last.cycle_number} started {last.cycle_start.isoformat()}",
                                 last.reference))
    value = {
        "conflict": conflict,
        "drafted": [reference_of(o) for o in others_drafted],
        "active": [reference_of(o) for o in others_active],
        "ino_course_running": running,
    }
    if not conflict:
        missing = unavailable(record, *_MEDICATION_DATA) if ino_selected else []
        if others_selected and not ino_drafts and c.problem:
            missing.append(c.problem)
        if missing:
            return FeatureValue.unknown(
                "Monotherapy check incomplete: " + "; ".join(missing)
                + ". Check the medication list for other anti-cancer agents.",
                *evidence,
            )
    return FeatureValue("met" if conflict else "not_met", value, tuple(evidence))
