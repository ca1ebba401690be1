"""Builders for the clinical-feature tests: hand-made FHIR records, the real terminology.

Used by ``tests/test_features_*.py``: records are built with ``PatientRecord(...)``
directly, from small resource builders with dates relative to a fixed evaluation time
``NOW``; terminology is the real ``Terminology`` compiled from
``plan_definitions/terminology`` (and our CodeSystems), and the regimens are the shipped
``plan_definitions/regimen`` PlanDefinitions read as schedules, so the tests exercise the
ValueSets and regimens the service ships. The per-rule scenarios (``tests/scenarios``) are replayed by
the conftest collector through ``cds_service.replay``, not from here.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

from cds_service.features import FeatureContext, FeatureValue, SitePolicy
from cds_service.knowledge import KnowledgeBase, RegimenSchedule, Terminology, regimen_schedule
from cds_service.record import DataNote, PatientRecord, reference_of

REPO = Path(__file__).resolve().parents[1]
NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
TODAY = NOW.date()

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
ATC = "http://www.whocc.no/atc"
UCUM = "http://unitsofmeasure.org"
INO2_FORM = "https://sact-cds.org/fhir/Questionnaire/Ino2Attestation"

#: name -> ATC code (clinical.md §2.1), for medication builders.
ATC_CODES = {
    "inotuzumab ozogamicin": "L01FB01",
    "fluconazole": "J02AC01",
    "posaconazole": "J02AC04",
    "voriconazole": "J02AC03",
    "imatinib": "L01EA01",
    "dasatinib": "L01EA02",
    "ponatinib": "L01EA05",
    "asciminib": "L01EA06",
    "blinatumomab": "L01FX07",
    "loratadine": "R06AX13",
    "paracetamol": "N02BE01",
    "dexamethasone": "H02AB02",
}


@cache
def terminology() -> Terminology:
    files = [*(REPO / "plan_definitions" / "terminology").glob("*.json"),
             *(REPO / "fhir_profiles").glob("CodeSystem-*.json")]
    return Terminology.from_resources(json.loads(f.read_text(encoding="utf-8")) for f in files)


def regimen_resources() -> dict[str, dict[str, Any]]:
    """canonical url -> resource of every shipped regimen artifact (fresh copies: tests may edit them)."""
    out = {}
    for path in sorted((REPO / "plan_definitions" / "regimen").glob("*.json")):
        res = json.loads(path.read_text(encoding="utf-8"))
        out[res["url"]] = res
    return out


def regimens_from(resources: Mapping[str, dict[str, Any]]) -> dict[str, RegimenSchedule]:
    """Every clinical-protocol PlanDefinition of ``resources`` as a schedule, as the engine builds them."""
    kb = KnowledgeBase("0.1.0", resources)
    return {pd["url"]: regimen_schedule(kb, pd) for pd in kb.regimen_plans()}


@cache
def shipped_regimens() -> Mapping[str, RegimenSchedule]:
    return regimens_from(regimen_resources())


def ctx(now: datetime = NOW, *, regimens: Mapping[str, RegimenSchedule] | None = None, **policy: Any) -> FeatureContext:
    """A context with the real terminology and the shipped regimens (or ``regimens``)."""
    return FeatureContext(now, terminology(), replace(SitePolicy(), **policy),
                          shipped_regimens() if regimens is None else regimens)


def day(offset: int = 0) -> str:
    """ISO date ``offset`` days from TODAY (negative = past)."""
    return (TODAY + timedelta(days=offset)).isoformat()


def at(offset: int = 0, hour: int = 8) -> str:
    """ISO dateTime ``offset`` days from TODAY at ``hour`` UTC."""
    return datetime.combine(TODAY + timedelta(days=offset), datetime.min.time(), UTC).replace(hour=hour).isoformat()


def patient(birth: str | None = "2015-03-01", pid: str = "p1") -> dict[str, Any]:
    out: dict[str, Any] = {"resourceType": "Patient", "id": pid}
    if birth is not None:
        out["birthDate"] = birth
    return out


def medication(name: str) -> dict[str, Any]:
    code = ATC_CODES.get(name)
    coding = [{"system": ATC, "code": code, "display": name}] if code else []
    return {"coding": coding, "text": name}


def dosage(mg: float | None = None, mg_m2: float | None = None, on: int | None = None,
           route: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    rates = []
    if mg_m2 is not None:
        rates.append({"type": {"coding": [{"code": "calculated"}]},
                      "doseQuantity": {"value": mg_m2, "unit": "mg/m2", "system": UCUM, "code": "mg/m2"}})
    if mg is not None:
        rates.append({"type": {"coding": [{"code": "ordered"}]},
                      "doseQuantity": {"value": mg, "unit": "mg", "system": UCUM, "code": "mg"}})
    if rates:
        out["doseAndRate"] = rates
    if on is not None:
        out["timing"] = {"event": [day(on)]}
    if route:
        out["route"] = {"text": route}
    return out


def draft(rid: str, name: str = "inotuzumab ozogamicin", *, on: int | None = 0, mg: float | None = None,
          mg_m2: float | None = None, route: str | None = None) -> dict[str, Any]:
    """A draft MedicationRequest (planned for day ``on``; None: no date on the order)."""
    return {"resourceType": "MedicationRequest", "id": rid, "status": "draft", "intent": "order",
            "subject": {"reference": "Patient/p1"}, "authoredOn": at(0),
            "medicationCodeableConcept": medication(name),
            "dosageInstruction": [dosage(mg, mg_m2, on, route)]}


def order(rid: str, name: str, status: str = "active", authored: int = -10) -> dict[str, Any]:
    return {"resourceType": "MedicationRequest", "id": rid, "status": status, "intent": "order",
            "subject": {"reference": "Patient/p1"}, "authoredOn": at(authored),
            "medicationCodeableConcept": medication(name)}


def given(rid: str, offset: int, name: str = "inotuzumab ozogamicin", status: str = "completed") -> dict[str, Any]:
    """A MedicationAdministration ``offset`` days from today (negative = past)."""
    return {"resourceType": "MedicationAdministration", "id": rid, "status": status,
            "subject": {"reference": "Patient/p1"}, "effectiveDateTime": at(offset, 10),
            "medicationCodeableConcept": medication(name)}


def statement(rid: str, name: str, status: str = "active", offset: int = -30) -> dict[str, Any]:
    return {"resourceType": "MedicationStatement", "id": rid, "status": status,
            "subject": {"reference": "Patient/p1"}, "effectiveDateTime": at(offset),
            "medicationCodeableConcept": medication(name)}


def obs(rid: str, loinc: str, value: float | None, unit: str, offset: int = -1, *,
        high: float | None = None, high_unit: str | None = None, system: str = LOINC,
        **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"resourceType": "Observation", "id": rid, "status": "final",
                           "subject": {"reference": "Patient/p1"},
                           "code": {"coding": [{"system": system, "code": loinc}]},
                           "effectiveDateTime": at(offset, 7)}
    if value is not None:
        out["valueQuantity"] = {"value": value, "unit": unit, "system": UCUM, "code": unit}
    if high is not None:
        out["referenceRange"] = [{"high": {"value": high, "unit": high_unit or unit}}]
    out.update(extra)
    return out


def bilirubin(rid: str, value: float, uln: float | None = 21, offset: int = -1, unit: str = "umol/L") -> dict[str, Any]:
    return obs(rid, "14631-6" if unit == "umol/L" else "1975-2", value, unit, offset, high=uln)


def ast(rid: str, value: float, uln: float | None = 40, offset: int = -1) -> dict[str, Any]:
    return obs(rid, "1920-8", value, "U/L", offset, high=uln)


def alt(rid: str, value: float, uln: float | None = 40, offset: int = -1) -> dict[str, Any]:
    return obs(rid, "1742-6", value, "U/L", offset, high=uln)


def alp(rid: str, value: float, uln: float | None = 300, offset: int = -1) -> dict[str, Any]:
    return obs(rid, "6768-6", value, "U/L", offset, high=uln)


def normal_liver_tests(offset: int = -1, prefix: str = "lft") -> list[dict[str, Any]]:
    return [bilirubin(f"{prefix}-bil", 10, offset=offset), ast(f"{prefix}-ast", 30, offset=offset),
            alt(f"{prefix}-alt", 25, offset=offset), alp(f"{prefix}-alp", 200, offset=offset)]


def anc(rid: str, value: float, offset: int = -1) -> dict[str, Any]:
    return obs(rid, "751-8", value, "10*9/L", offset)


def platelets(rid: str, value: float, offset: int = -1) -> dict[str, Any]:
    return obs(rid, "777-3", value, "10*9/L", offset)


def bsa(rid: str = "bsa", value: float = 1.0, offset: int = -1) -> dict[str, Any]:
    return obs(rid, "8277-6", value, "m2", offset)


def height(rid: str = "height", value: float = 130, offset: int = -1) -> dict[str, Any]:
    return obs(rid, "8302-2", value, "cm", offset)


def weight(rid: str = "weight", value: float = 27, offset: int = -1) -> dict[str, Any]:
    return obs(rid, "29463-7", value, "kg", offset)


def score(rid: str, scale: str, value: int, offset: int = -3) -> dict[str, Any]:
    code = {"ECOG": (LOINC, "89247-1"), "Karnofsky": (LOINC, "89243-0"),
            "Lansky": ("http://ncicb.nci.nih.gov/xml/owl/EVS/Thesaurus.owl", "C38144")}[scale]
    return {"resourceType": "Observation", "id": rid, "status": "final", "subject": {"reference": "Patient/p1"},
            "code": {"coding": [{"system": code[0], "code": code[1]}], "text": f"{scale} performance status"},
            "effectiveDateTime": at(offset), "valueInteger": value}


def condition(rid: str, text: str, snomed: str | None = None, clinical: str | None = "active",
              onset: int = -400) -> dict[str, Any]:
    code: dict[str, Any] = {"text": text}
    if snomed:
        code["coding"] = [{"system": SNOMED, "code": snomed, "display": text}]
    out: dict[str, Any] = {"resourceType": "Condition", "id": rid, "subject": {"reference": "Patient/p1"},
                           "code": code, "onsetDateTime": at(onset)}
    if clinical:
        out["clinicalStatus"] = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                             "code": clinical}]}
    return out


def b_all(rid: str = "ball") -> dict[str, Any]:
    return condition(rid, "B-cell acute lymphoblastic leukemia", "277571004", "relapse")


def procedure(rid: str, text: str, snomed: str | None = None, status: str = "completed", offset: int = -300) -> dict:
    code: dict[str, Any] = {"text": text}
    if snomed:
        code["coding"] = [{"system": SNOMED, "code": snomed}]
    return {"resourceType": "Procedure", "id": rid, "status": status, "subject": {"reference": "Patient/p1"},
            "code": code, "performedDateTime": at(offset)}


def form(answers: Mapping[str, Any], offset: int = -2, status: str = "completed", rid: str = "ino2") -> dict:
    """An INO2 QuestionnaireResponse: booleans as valueBoolean, response-status as valueCoding."""
    items = []
    for link, value in answers.items():
        if isinstance(value, bool):
            answer = {"valueBoolean": value}
        else:
            answer = {"valueCoding": {"system": "https://sact-cds.org/fhir/CodeSystem/response-status", "code": value}}
        items.append({"linkId": link, "answer": [answer]})
    return {"resourceType": "QuestionnaireResponse", "id": rid, "status": status,
            "questionnaire": f"{INO2_FORM}|0.1.0", "subject": {"reference": "Patient/p1"},
            "authored": at(offset), "item": items}


ALL_ATTESTED = {code: True for code in (
    "application-consultant", "vod-risk-awareness", "rr-cd22-bcp-all", "ph-status-tki", "prior-intensive-chemo",
    "child", "puberty-dosing", "principal-treatment-centre", "mdt-discussion", "performance-status",
    "treatment-duration-policy", "monotherapy", "no-planned-break", "unlicensed-policy", "spc-use")}


def record(*resources: dict[str, Any], pt: dict[str, Any] | None = None, drafts: Iterable[dict[str, Any]] = (),
           selections: Iterable[str] | None = None, notes: Iterable[DataNote] = ()) -> PatientRecord:
    """A PatientRecord; ``selections`` default to every draft (as on order-sign)."""
    by_type: dict[str, list[dict[str, Any]]] = {}
    for res in resources:
        by_type.setdefault(res["resourceType"], []).append(res)
    drafts = tuple(drafts)
    chosen = tuple(selections) if selections is not None else tuple(reference_of(d) for d in drafts)
    return PatientRecord(patient=pt if pt is not None else patient(), resources={k: tuple(v) for k, v in by_type.items()},
                         draft_orders=drafts, selections=chosen, notes=tuple(notes))


def cycle_history(cycles: int, last_start: int, days: Iterable[int] = (1, 8, 15)) -> list[dict[str, Any]]:
    """Administrations for ``cycles`` full cycles, the last one starting ``last_start`` days
    from today; earlier cycles 28 days apart (21 between cycle 1 and 2)."""
    starts = [last_start]
    for n in range(cycles - 1, 0, -1):
        starts.insert(0, starts[0] - (21 if n == 1 else 28))
    out = []
    for c, start in enumerate(starts, 1):
        for d in days:
            out.append(given(f"ino-c{c}d{d}", start + d - 1))
    return [a for a in out if date.fromisoformat(a["effectiveDateTime"][:10]) <= TODAY]


def fv(value: FeatureValue) -> dict[str, Any]:
    return value.as_json()
