"""Child actions -> CDS Hooks suggestions, none of them dropped in silence.

architecture.md §5.1: a child action is one suggestion (``title`` -> ``label``, a fresh
``uuid``):

- ``definitionCanonical`` -> an ActivityDefinition: one ``create`` action whose resource
  is the $apply result (apply.py);
- ``type`` ``remove`` + dynamicValue ``resourceId`` (FHIRPath giving ``Type/id``
  strings): one ``delete`` action per id, with ``resourceId`` (CDS Hooks 2.0: SHOULD for
  delete; the deprecated resource-as-id form is not used);
- ``type`` ``update`` + dynamicValues ``resourceId`` and the new dose (``_plan.UPDATE_PATHS``):
  one ``update`` action per draft order, carrying the whole draft with its dose replaced;
- neither: a label-only suggestion (as the CDC opioid rules' "snooze" choices).

A child whose condition is false is not offered: that is the rule saying so. A child
that *should* be offered but cannot be built (its condition cannot be evaluated, $apply
lacks the BSA for a per-m² dose, no order to remove was found) is not dropped silently, as
clinical-reasoning does (its CdsResponseEncoderService builds suggestions and then drops
them without a ``selectionBehavior``): the reason goes into :attr:`Built.missing`, which
the card shows under "Suggestions not offered".
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cds_service.engine._plan import UPDATE_DOSE_UNIT, UPDATE_DOSE_VALUE, UPDATE_NOTE, Rule, SuggestionRule
from cds_service.engine.apply import BSA_FEATURE, _clone, apply_with_problems
from cds_service.engine.cards import md
from cds_service.engine.conditions import Scope, all_true, to_json
from cds_service.knowledge.terms import DOSE_RATE_TYPE, UCUM
from cds_service.record import PatientRecord

if TYPE_CHECKING:
    from cds_service.features import FeatureContext, FeatureValue

#: A relative reference ``Type/id`` (FHIR id: 1-64 of [A-Za-z0-9-.]).
REFERENCE = re.compile(r"^[A-Z][A-Za-z]+/[A-Za-z0-9\-.]{1,64}$")


@dataclass
class Built:
    suggestions: list[dict[str, Any]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # markdown bullets
    errors: list[tuple[str, str]] = field(default_factory=list)  # (where, exception type) for logs


def build_suggestions(
    rule: Rule,
    scope: Scope,
    record: PatientRecord,
    ctx: FeatureContext,
    values: Mapping[str, FeatureValue],
) -> Built:
    """The suggestions of a card whose rule fired, and why any are missing (a child's
    conditions follow the same three-valued logic as the rule's: conditions.all_true)."""
    built = Built()
    for child in rule.suggestions:
        result = all_true(child.conditions, scope)
        if result.truth is False:
            continue
        if result.truth is None:
            why = "its condition could not be evaluated"
            if result.errors:
                why += " (" + "; ".join(f"{w}: {t}" for w, t, _ in result.errors) + ")"
                built.errors.extend((w, t) for w, t, _ in result.errors)
            built.missing.append(_missing(child, why))
            continue
        builder = _BUILDERS[child.kind]
        builder(child, scope, record, ctx, values, built)
    return built


def _missing(child: SuggestionRule, why: str) -> str:
    return f"- {md(child.label)}: not offered, {md(why)}"


def _create(child, scope, record, ctx, values, built: Built) -> None:
    bsa: float | None = None
    supporting: list[str] = []
    bsa_note = ""
    if child.uses_bsa:
        fv = values.get(BSA_FEATURE)
        if fv is not None and fv.status != "unknown":
            bsa = fv.value
            supporting = [e.reference for e in fv.evidence if e.reference]
        elif fv is not None and fv.note:
            bsa_note = f" ({fv.note})"
    result = apply_with_problems(child.activity, record, ctx, bsa, supporting=supporting)
    if result.problems:
        built.missing.append(_missing(child, "; ".join(result.problems) + bsa_note))
        return
    built.suggestions.append(
        {
            "label": child.label,
            "uuid": str(uuid.uuid4()),
            "actions": [
                {"type": "create", "description": child.description or child.label, "resource": result.resource}
            ],
        }
    )


def _delete(child, scope, record, ctx, values, built: Built) -> None:
    try:
        raw = to_json(child.resource_ids.evaluate(scope))
    except Exception as exc:  # noqa: BLE001 - becomes a visible reason, never silence
        built.errors.append((child.resource_ids.where, type(exc).__name__))
        built.missing.append(_missing(child, f"the orders to remove could not be found ({type(exc).__name__})"))
        return
    ids = list(dict.fromkeys(_flatten(raw)))
    bad = [i for i in ids if not isinstance(i, str) or not REFERENCE.match(i)]
    if bad or not ids:
        why = "no order to remove was found" if not ids else "the orders to remove are not Type/id references"
        built.missing.append(_missing(child, why))
        return
    base = child.description or child.label
    built.suggestions.append(
        {
            "label": child.label,
            "uuid": str(uuid.uuid4()),
            "actions": [
                {"type": "delete", "description": f"{base} ({_display(record, ref)})", "resourceId": ref}
                for ref in ids
            ],
        }
    )


def _update(child, scope, record, ctx, values, built: Built) -> None:
    """One ``update`` action per draft order named by ``resourceId``: the whole draft
    (CDS Hooks 2.0: update carries the whole resource) with its dose replaced.

    The i-th result of each change expression belongs to the i-th id; a count that does
    not match, a draft that is not in the session, or a draft with other than one dosage
    instruction gives no suggestion and a visible reason. The dosage ``text`` is dropped
    (it states the old dose); the note says what changed.
    """
    try:
        ids = list(dict.fromkeys(_flatten(to_json(child.resource_ids.evaluate(scope)))))
        changes = {path: _flatten(to_json(expr.evaluate(scope))) for path, expr in child.changes}
    except Exception as exc:  # noqa: BLE001 - becomes a visible reason, never silence
        built.errors.append((child.resource_ids.where, type(exc).__name__))
        built.missing.append(_missing(child, f"the change could not be worked out ({type(exc).__name__})"))
        return
    values_ = changes.get(UPDATE_DOSE_VALUE, [])
    units = changes.get(UPDATE_DOSE_UNIT, [])
    notes = changes.get(UPDATE_NOTE, [])
    if not ids or any(not isinstance(i, str) or not REFERENCE.match(i) for i in ids):
        built.missing.append(_missing(child, "no draft order to change was found"))
        return
    if len(values_) != len(ids) or len(units) not in (1, len(ids)) or notes and len(notes) != len(ids):
        built.missing.append(_missing(child, "the new dose could not be matched to the draft order"))
        return
    actions = []
    for n, ref in enumerate(ids):
        draft = next((d for d in record.draft_orders if f"{d.get('resourceType')}/{d.get('id')}" == ref), None)
        dose, unit = values_[n], units[0 if len(units) == 1 else n]
        dosages = (draft or {}).get("dosageInstruction") or []
        if draft is None or len(dosages) != 1:
            why = "is not a draft order of this session" if draft is None else "has more than one dosage instruction"
            built.missing.append(_missing(child, f"{_display(record, ref)} {why}: change the dose by hand"))
            return
        if not isinstance(dose, (int, float)) or isinstance(dose, bool) or dose <= 0 or not isinstance(unit, str):
            built.missing.append(_missing(child, "the new dose is not a positive number with a unit"))
            return
        resource = _clone(draft)
        dosage = resource["dosageInstruction"][0]
        dosage.pop("text", None)
        dosage["doseAndRate"] = [{
            "type": {"coding": [{"system": DOSE_RATE_TYPE, "code": "ordered", "display": "Ordered"}]},
            "doseQuantity": {"value": dose, "unit": unit, "system": UCUM, "code": unit},
        }]
        if notes:
            resource["note"] = [*resource.get("note", []), {"text": str(notes[n])}]
        base = child.description or child.label
        actions.append({"type": "update", "description": f"{base} ({_display(record, ref)})", "resource": resource})
    built.suggestions.append({"label": child.label, "uuid": str(uuid.uuid4()), "actions": actions})


def _label(child, scope, record, ctx, values, built: Built) -> None:
    suggestion: dict[str, Any] = {"label": child.label, "uuid": str(uuid.uuid4())}
    built.suggestions.append(suggestion)


_BUILDERS = {"create": _create, "delete": _delete, "update": _update, "label": _label}


def _flatten(value: Any) -> list[Any]:
    if isinstance(value, list):
        return [x for v in value for x in _flatten(v)]
    if isinstance(value, Mapping) and "reference" in value:  # a Reference
        return [value["reference"]]
    return [value]


def _display(record: PatientRecord, reference: str) -> str:
    """What the clinician calls the resource: its medication text, else the reference."""
    res = record.resolve(reference) or {}
    concept = res.get("medicationCodeableConcept") or res.get("code") or {}
    text = concept.get("text") or next(
        (c.get("display") for c in concept.get("coding") or () if c.get("display")), None
    )
    return text or reference
