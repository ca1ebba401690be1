"""Generate the realistic whole-record replay scenarios ``tests/scenarios/whole-record-*.json``.

    python tests/scenarios/_make_whole_records.py          # rewrite the files
    python tests/scenarios/_make_whole_records.py --check  # exit 1 if a file is stale

Each record is what a test EHR export of a child with relapsed/refractory B-ALL looks like
after years of treatment: diagnosis, frontline chemotherapy by name, maintenance, relapse,
salvage (blinatumomab, TKIs for Ph+), transplant, inotuzumab cycles with premedication,
years of liver tests and blood counts with reference ranges, growth, performance status,
the INO2 attestation QuestionnaireResponse, and the draft orders of today's session.

Deterministic: a seeded ``random.Random`` per patient and relative dates only
(``today-400d``; architecture.md §8), so the files never change between runs and the
scenarios never go stale. Codes: only the verified ones of shared/reference/clinical.md §2
(LOINC, SNOMED, ATC); other chemotherapy by name, with no code.

The expected cards are written here by hand, reasoned from the rule PlanDefinitions in
plan_definitions/rules/ (each expectation carries the reasoning in a comment); they are
never copied from the tool's output.
"""

from __future__ import annotations

import functools
import json
import math
import random
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cds_service.knowledge.terms import ATC, INO2_QUESTIONNAIRE, LOINC, SNOMED, UCUM
from cds_service.knowledge.terms import CRITERION_CODES as CRITERIA
from cds_service.knowledge.terms import RESPONSE_STATUS_SYSTEM as RESPONSE_STATUS

HERE = Path(__file__).resolve().parent


#: analyte -> (LOINC, display, UCUM unit, reference low, reference high, normal mean, sd)
LABS: dict[str, tuple[str, str, str, float, float, float, float]] = {
    "bilirubin": ("14631-6", "Bilirubin.total [Moles/volume] in Serum or Plasma", "umol/L", 3, 21, 8, 2.5),
    "bilirubin_mg": ("1975-2", "Bilirubin.total [Mass/volume] in Serum or Plasma", "mg/dL", 0.2, 1.2, 0.5, 0.15),
    "alt": ("1742-6", "Alanine aminotransferase [Enzymatic activity/volume] in Serum or Plasma", "U/L", 5, 40, 22, 7),
    "ast": ("1920-8", "Aspartate aminotransferase [Enzymatic activity/volume] in Serum or Plasma", "U/L", 10, 50, 30, 7),
    "alp": ("6768-6", "Alkaline phosphatase [Enzymatic activity/volume] in Serum or Plasma", "U/L", 100, 420, 230, 40),
    "anc": ("751-8", "Neutrophils [#/volume] in Blood by Automated count", "10*9/L", 1.5, 8.0, 3.2, 0.9),
    "plt": ("777-3", "Platelets [#/volume] in Blood by Automated count", "10*9/L", 150, 450, 260, 50),
}
ATC_CODES = {
    "inotuzumab ozogamicin": "L01FB01",
    "imatinib": "L01EA01",
    "dasatinib": "L01EA02",
    "asciminib": "L01EA06",
    "blinatumomab": "L01FX07",
    "fluconazole": "J02AC01",
    "loratadine": "R06AX13",
    "paracetamol": "N02BE01",
    "dexamethasone": "H02AB02",
}
ROUTES = {"IV": "Intravenous", "PO": "Oral", "IT": "Intrathecal", "IM": "Intramuscular", "SC": "Subcutaneous"}


def day(n: int) -> str:
    """A calendar date ``n`` days before (negative) or after today, as a relative token."""
    return "today" if n == 0 else f"today{n:+d}d"


def medication(name: str) -> dict[str, Any]:
    """A medication CodeableConcept: verified ATC code where there is one, else name only."""
    code = ATC_CODES.get(name)
    concept: dict[str, Any] = {"text": name}
    if code:
        concept["coding"] = [{"system": ATC, "code": code, "display": name}]
    return concept


def mosteller(height_cm: float, weight_kg: float) -> float:
    return round(math.sqrt(height_cm * weight_kg / 3600), 2)


@dataclass
class Record:
    """One patient's record being written; ``entries`` in the order a export lists them."""

    pid: str
    seed: int
    practitioner: str = "Practitioner/dr-haem-01"
    encounter: str = "enc-today"
    entries: list[dict[str, Any]] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def next_id(self, prefix: str) -> str:
        self.counters[prefix] = self.counters.get(prefix, 0) + 1
        return f"{prefix}-{self.counters[prefix]:03d}"

    def add(self, resource: dict[str, Any]) -> dict[str, Any]:
        self.entries.append(resource)
        return resource

    @property
    def subject(self) -> dict[str, str]:
        return {"reference": f"Patient/{self.pid}"}

    # ---------------------------------------------------------------- people and places

    def patient(self, *, gender: str, birth_day: int, given: str, family: str) -> None:
        self.add({
            "resourceType": "Patient", "id": self.pid,
            "identifier": [{"system": "https://test-ehr.example.org/mrn", "value": f"MRN{self.seed:07d}"}],
            "name": [{"family": family, "given": [given]}],
            "gender": gender, "birthDate": day(birth_day),
        })
        self.add({
            "resourceType": "Practitioner", "id": self.practitioner.split("/")[1],
            "name": [{"family": "Okafor", "given": ["Adaeze"], "prefix": ["Dr"]}],
            "qualification": [{"code": {"text": "Consultant paediatric haematologist"}}],
        })
        self.add({
            "resourceType": "Encounter", "id": self.encounter, "status": "in-progress",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB", "display": "ambulatory"},
            "type": [{"text": "Paediatric oncology day unit"}],
            "subject": self.subject, "period": {"start": day(0)},
        })

    def condition(self, *, text: str, onset: int, status: str, snomed: bool = True, note: str | None = None) -> None:
        code: dict[str, Any] = {"text": text}
        if snomed:
            code["coding"] = [{"system": SNOMED, "code": "277571004", "display": "B-cell acute lymphoblastic leukemia"}]
        resource: dict[str, Any] = {
            "resourceType": "Condition", "id": self.next_id("cond"),
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": status}]},
            "verificationStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "confirmed"}]},
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-category", "code": "problem-list-item"}]}],
            "code": code, "subject": self.subject, "onsetDateTime": day(onset), "recordedDate": day(onset),
        }
        if note:
            resource["note"] = [{"text": note}]
        self.add(resource)

    def finding(self, *, text: str, on: int, value: str) -> None:
        """A laboratory finding without a verified code (immunophenotype, cytogenetics, MRD)."""
        self.add({
            "resourceType": "Observation", "id": self.next_id("finding"), "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}],
            "code": {"text": text}, "subject": self.subject, "effectiveDateTime": day(on),
            "valueString": value,
        })

    def procedure(self, *, text: str, on: int, snomed: str | None = None, display: str | None = None,
                  note: str | None = None) -> None:
        code: dict[str, Any] = {"text": text}
        if snomed:
            code["coding"] = [{"system": SNOMED, "code": snomed, "display": display or text}]
        resource: dict[str, Any] = {
            "resourceType": "Procedure", "id": self.next_id("proc"), "status": "completed",
            "code": code, "subject": self.subject, "performedDateTime": day(on),
        }
        if note:
            resource["note"] = [{"text": note}]
        self.add(resource)

    # ---------------------------------------------------------------- observations

    def lab(self, analyte: str, on: int, value: float) -> None:
        code, display, unit, low, high, _, _ = LABS[analyte]
        places = 2 if unit in ("mg/dL", "10*9/L") and value < 10 else 0 if value >= 10 else 1
        self.add({
            "resourceType": "Observation", "id": self.next_id(f"lab-{analyte.replace('_', '-')}"),
            "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}],
            "code": {"coding": [{"system": LOINC, "code": code, "display": display}], "text": display.split(" [")[0]},
            "subject": self.subject, "effectiveDateTime": day(on), "issued": f"{day(on)}",
            "valueQuantity": {"value": round(value, places), "unit": unit, "system": UCUM, "code": unit},
            "referenceRange": [{"low": {"value": low, "unit": unit, "system": UCUM, "code": unit},
                                "high": {"value": high, "unit": unit, "system": UCUM, "code": unit}}],
        })

    def normal(self, analyte: str, scale: float = 1.0) -> float:
        _, _, _, low, high, mean, sd = LABS[analyte]
        value = self.rng.gauss(mean * scale, sd * scale)
        return max(value, low * 0.5 if analyte not in ("anc", "plt") else 0.05)

    def panel(self, on: int, *, bilirubin_unit: str = "bilirubin", **values: float) -> None:
        """Liver tests and blood counts drawn on one day; ``values`` override the normal draw
        (keys bilirubin, alt, ast, alp, anc, plt; a value of -1 leaves that test out)."""
        for analyte in ("bilirubin", "alt", "ast", "alp", "anc", "plt"):
            key = bilirubin_unit if analyte == "bilirubin" else analyte
            value = values.get(analyte)
            if value == -1:
                continue
            self.lab(key, on, value if value is not None else self.normal(key))

    def lab_history(self, start: int, end: int, every: int, *, counts_scale: float = 1.0,
                    bilirubin_unit: str = "bilirubin") -> None:
        """Routine panels from ``start`` to ``end`` (days relative to today) every ``every`` days."""
        on = start
        while on <= end:
            self.panel(on + self.rng.randint(0, 1) if on + 1 <= end else on, bilirubin_unit=bilirubin_unit,
                       anc=self.normal("anc", counts_scale), plt=self.normal("plt", counts_scale))
            on += every

    def vital(self, kind: str, on: int, value: float) -> None:
        code, display, unit = {
            "height": ("8302-2", "Body height", "cm"),
            "weight": ("29463-7", "Body weight", "kg"),
            "bsa": ("8277-6", "Body surface area", "m2"),
        }[kind]
        self.add({
            "resourceType": "Observation", "id": self.next_id(kind), "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
            "code": {"coding": [{"system": LOINC, "code": code, "display": display}], "text": display},
            "subject": self.subject, "effectiveDateTime": day(on),
            "valueQuantity": {"value": value, "unit": unit, "system": UCUM, "code": unit},
        })

    def growth(self, start: int, end: int, every: int, *, height: tuple[float, float], weight: tuple[float, float]) -> None:
        """Height and weight from ``start`` to ``end``, growing linearly with a little noise."""
        span = max(end - start, 1)
        on = start
        while on <= end:
            f = (on - start) / span
            self.vital("height", on, round(height[0] + (height[1] - height[0]) * f + self.rng.uniform(-0.3, 0.3), 1))
            self.vital("weight", on, round(weight[0] + (weight[1] - weight[0]) * f + self.rng.uniform(-0.4, 0.4), 1))
            on += every

    def measured(self, on: int, height: float, weight: float) -> float:
        """Today's-style measurement: height, weight and the BSA the EHR calculates."""
        self.vital("height", on, height)
        self.vital("weight", on, weight)
        bsa = mosteller(height, weight)
        self.vital("bsa", on, bsa)
        return bsa

    def performance(self, on: int, *, ecog: int | None = None, karnofsky: int | None = None) -> None:
        if ecog is not None:
            code, display, value = "89247-1", "ECOG Performance Status score", ecog
        else:
            code, display, value = "89243-0", "Karnofsky Performance Status score", karnofsky
        self.add({
            "resourceType": "Observation", "id": self.next_id("ps"), "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "survey"}]}],
            "code": {"coding": [{"system": LOINC, "code": code, "display": display}], "text": display},
            "subject": self.subject, "effectiveDateTime": day(on), "valueInteger": value,
        })

    # ---------------------------------------------------------------- medications

    def given(self, name: str, on: int, dose: float, unit: str, route: str, *, until: int | None = None,
              status: str = "completed", note: str | None = None) -> str:
        """A MedicationAdministration (``until``: a continuous infusion ending that day)."""
        rid = self.next_id("admin")
        resource: dict[str, Any] = {
            "resourceType": "MedicationAdministration", "id": rid, "status": status,
            "medicationCodeableConcept": medication(name), "subject": self.subject,
        }
        if until is None:
            resource["effectiveDateTime"] = day(on)
        else:
            resource["effectivePeriod"] = {"start": day(on), "end": day(until)}
        resource["dosage"] = {
            "route": {"text": ROUTES[route]},
            "dose": {"value": dose, "unit": unit, "system": UCUM, "code": unit},
        }
        if note:
            resource["note"] = [{"text": note}]
        self.add(resource)
        return rid

    def prescribed(self, name: str, start: int, end: int | None, text: str, *, status: str = "completed",
                   route: str = "PO", reason: str | None = None) -> str:
        """A MedicationRequest of the past (completed/stopped) or still running (active)."""
        rid = self.next_id("rx")
        dosage: dict[str, Any] = {"text": text, "route": {"text": ROUTES[route]}}
        bounds: dict[str, str] = {"start": day(start)}
        if end is not None:
            bounds["end"] = day(end)
        dosage["timing"] = {"repeat": {"boundsPeriod": bounds}}
        resource: dict[str, Any] = {
            "resourceType": "MedicationRequest", "id": rid, "status": status, "intent": "order",
            "medicationCodeableConcept": medication(name), "subject": self.subject,
            "authoredOn": day(start), "requester": {"reference": self.practitioner},
            "dosageInstruction": [dosage],
        }
        if reason:
            resource["statusReason"] = {"text": reason}
        self.add(resource)
        return rid

    def ino_cycle(self, day1: int, bsa: float, doses_mg_m2: tuple[float, ...] = (0.8, 0.5, 0.5),
                  days: tuple[int, ...] = (0, 7, 14)) -> None:
        """One inotuzumab cycle given: premedication then the dose, on each dosing day."""
        for offset, mg_m2 in zip(days, doses_mg_m2, strict=False):
            on = day1 + offset
            self.given("loratadine", on, 10, "mg", "PO")
            self.given("paracetamol", on, 500, "mg", "PO")
            self.given("dexamethasone", on, 4, "mg", "IV")
            self.given("inotuzumab ozogamicin", on, round(mg_m2 * bsa, 2), "mg", "IV",
                       note=f"{mg_m2} mg/m2 x BSA {bsa} m2, infused over 1 hour")

    def attestation(self, on: int, *, answers: dict[str, bool | None], response: str, mrd_negative: bool,
                    hsct_planned: bool) -> None:
        items: list[dict[str, Any]] = [  # an answer of None: the item is left unanswered
            {"linkId": code, "answer": [{"valueBoolean": answers.get(code, True)}]} if answers.get(code, True) is not None
            else {"linkId": code} for code in CRITERIA
        ]
        display = {"CR": "Complete remission", "CRi": "Complete remission with incomplete haematological recovery",
                   "not-in-CR": "Not in CR or CRi"}[response]
        items.append({"linkId": "response-status",
                      "answer": [{"valueCoding": {"system": RESPONSE_STATUS, "code": response, "display": display}}]})
        items.append({"linkId": "mrd-negative", "answer": [{"valueBoolean": mrd_negative}]})
        items.append({"linkId": "hsct-planned", "answer": [{"valueBoolean": hsct_planned}]})
        self.add({
            "resourceType": "QuestionnaireResponse", "id": self.next_id("ino2"),
            "questionnaire": INO2_QUESTIONNAIRE, "status": "completed", "subject": self.subject,
            "authored": day(on), "author": {"reference": self.practitioner}, "item": items,
        })

    def draft(self, rid: str, name: str, *, on: int, dose: float, unit: str, route: str, text: str,
              authored_hours_ago: int) -> None:
        """A draft order of today's session (status draft; planned date in timing.event)."""
        self.add({
            "resourceType": "MedicationRequest", "id": rid, "status": "draft", "intent": "order",
            "medicationCodeableConcept": medication(name), "subject": self.subject,
            "encounter": {"reference": f"Encounter/{self.encounter}"},
            "authoredOn": f"now-{authored_hours_ago}h", "requester": {"reference": self.practitioner},
            "dosageInstruction": [{
                "text": text, "route": {"text": ROUTES[route]},
                "timing": {"event": [day(on)]},
                "doseAndRate": [{"doseQuantity": {"value": dose, "unit": unit, "system": UCUM, "code": unit}}],
            }],
        })

    def premedication_drafts(self, on: int, prefix: str = "draft") -> None:
        self.draft(f"{prefix}-loratadine", "loratadine", on=on, dose=10, unit="mg", route="PO",
                   text="Loratadine 10 mg PO 30-60 minutes before inotuzumab", authored_hours_ago=2)
        self.draft(f"{prefix}-paracetamol", "paracetamol", on=on, dose=500, unit="mg", route="PO",
                   text="Paracetamol 500 mg PO 30-60 minutes before inotuzumab", authored_hours_ago=2)
        self.draft(f"{prefix}-dexamethasone", "dexamethasone", on=on, dose=4, unit="mg", route="IV",
                   text="Dexamethasone 4 mg IV 30 minutes before inotuzumab", authored_hours_ago=2)

    # ---------------------------------------------------------------- frontline therapy

    def frontline(self, start: int, *, ph_positive: bool = False) -> int:
        """UKALL-style frontline therapy by name (induction, consolidation, interim
        maintenance, delayed intensification, maintenance); returns the day it ended."""
        s = start
        for d in (0, 7, 14, 21):
            self.given("vincristine", s + d, 1.5, "mg", "IV")
        self.prescribed("dexamethasone", s, s + 27, "Dexamethasone 6 mg/m2/day PO in 2 doses for 28 days")
        for d in (3, 17):
            self.given("pegaspargase", s + d, 2500, "[iU]", "IM", note="2500 units/m2")
        for d in (0, 7, 14, 21):
            self.given("daunorubicin", s + d, 25, "mg", "IV")
        for d in (0, 28):
            self.given("methotrexate", s + d, 12, "mg", "IT", note="intrathecal")
        if ph_positive:
            self.prescribed("imatinib", s + 14, s + 400, "Imatinib 340 mg/m2 PO once daily")
        c = s + 35  # consolidation
        self.given("cyclophosphamide", c, 1000, "mg", "IV")
        for d in range(0, 12, 4):
            self.given("cytarabine", c + d, 75, "mg", "IV")
        self.prescribed("mercaptopurine", c, c + 27, "Mercaptopurine 60 mg/m2 PO daily")
        im = c + 42  # interim maintenance: escalating IV methotrexate
        for d in (0, 10, 20, 30, 40):
            self.given("methotrexate", im + d, 100, "mg", "IV", note="Capizzi escalating methotrexate")
        for d in (0, 10, 20, 30, 40):
            self.given("vincristine", im + d, 1.5, "mg", "IV")
        di = im + 56  # delayed intensification
        for d in (0, 7, 14):
            self.given("doxorubicin", di + d, 25, "mg", "IV")
            self.given("vincristine", di + d, 1.5, "mg", "IV")
        self.given("pegaspargase", di + 3, 2500, "[iU]", "IM")
        self.given("cyclophosphamide", di + 28, 1000, "mg", "IV")
        maint = di + 56
        end = maint + 560
        self.prescribed("mercaptopurine", maint, end, "Mercaptopurine 75 mg/m2 PO daily (maintenance)")
        self.prescribed("methotrexate", maint, end, "Methotrexate 20 mg/m2 PO weekly (maintenance)")
        for d in range(0, 560, 84):
            self.given("vincristine", maint + d, 1.5, "mg", "IV", note="maintenance pulse")
        return end

    def ph_positive_all(self, diagnosis: int, *, note: str, blasts: str) -> int:
        """Ph-positive (BCR-ABL1 p190) CD22-positive BCP-ALL diagnosed on day ``diagnosis``,
        now relapsed (``note``), treated frontline with imatinib; returns the day frontline ended."""
        self.condition(text="B-cell precursor acute lymphoblastic leukaemia, Philadelphia-positive (BCR-ABL1 p190), "
                            "CD22-positive", onset=diagnosis, status="relapse", note=note)
        self.finding(text="Cytogenetics (BCR-ABL1)", on=diagnosis,
                     value="t(9;22)(q34;q11) BCR-ABL1 p190 positive (Philadelphia positive)")
        self.finding(text="Bone marrow immunophenotype", on=diagnosis, value=blasts)
        return self.frontline(diagnosis + 2, ph_positive=True)

    def bundle(self) -> dict[str, Any]:
        return {"resourceType": "Bundle", "type": "collection",
                "entry": [{"fullUrl": f"urn:uuid:{self.pid}-{i:04d}", "resource": r} for i, r in enumerate(self.entries)]}


# ==================================================================== the patients


def ph_negative_first_cycle(unanswered: tuple[str, ...] = ()) -> tuple[dict[str, Any], Record]:
    """Girl, 8, Ph-negative BCP-ALL diagnosed ~3 years ago, bone-marrow relapse 3 months ago,
    refractory to two cycles of blinatumomab; today cycle 1 day 1 of inotuzumab is drafted
    with full premedication. Labs normal, counts adequate, ECOG 1, INO2 attested (but for
    the ``unanswered`` items)."""
    r = Record("wr-phneg-c1", seed=101)
    r.patient(gender="female", birth_day=-3050, given="Amara", family="Testpatient")
    diagnosis = -1130
    r.condition(text="B-cell precursor acute lymphoblastic leukaemia, Philadelphia-negative, CD22-positive",
                onset=diagnosis, status="relapse",
                note="Bone marrow relapse; refractory to blinatumomab salvage.")
    r.finding(text="Bone marrow immunophenotype", on=diagnosis, value="CD19+ CD22+ CD10+ B-cell precursor blasts 88%")
    r.finding(text="Cytogenetics (BCR-ABL1)", on=diagnosis, value="BCR-ABL1 negative (Philadelphia negative)")
    r.procedure(text="Bone marrow aspirate", on=diagnosis)
    ended = r.frontline(diagnosis + 2)
    relapse = -95
    r.procedure(text="Bone marrow aspirate", on=relapse)
    r.finding(text="Bone marrow immunophenotype", on=relapse, value="CD22+ B-cell precursor blasts 46% (CD22 positive in 97% of blasts)")
    r.prescribed("blinatumomab", relapse + 5, relapse + 32, "Blinatumomab 5-15 micrograms/m2/day continuous IV infusion, cycle 1", route="IV")
    r.given("blinatumomab", relapse + 5, 15, "ug/d", "IV", until=relapse + 32)
    r.prescribed("blinatumomab", relapse + 46, relapse + 60, "Blinatumomab 15 micrograms/m2/day continuous IV infusion, cycle 2", route="IV",
                 status="stopped", reason="Refractory disease: MRD rising")
    r.given("blinatumomab", relapse + 46, 15, "ug/d", "IV", until=relapse + 60)
    r.finding(text="Bone marrow MRD (flow cytometry)", on=relapse + 61, value="MRD 8% - refractory to blinatumomab")
    r.prescribed("fluconazole", diagnosis + 2, diagnosis + 30, "Fluconazole 6 mg/kg PO once daily (induction prophylaxis)")
    r.prescribed("co-trimoxazole", diagnosis + 2, ended, "Co-trimoxazole 450 mg PO twice daily Sat/Sun (PJP prophylaxis)")
    r.prescribed("co-trimoxazole", relapse, None, "Co-trimoxazole 450 mg PO twice daily Sat/Sun (PJP prophylaxis)", status="active")
    r.prescribed("aciclovir", relapse, None, "Aciclovir 400 mg PO twice daily (HSV prophylaxis)", status="active")
    r.prescribed("liposomal amphotericin", relapse + 3, None, "Liposomal amphotericin 3 mg/kg IV twice weekly (antifungal prophylaxis)",
                 status="active", route="IV")
    r.lab_history(diagnosis, diagnosis + 200, 7, counts_scale=0.45)
    r.lab_history(diagnosis + 201, relapse - 10, 28)
    r.lab_history(relapse, -3, 5, counts_scale=0.6)
    r.growth(diagnosis, -30, 45, height=(118.0, 127.5), weight=(21.5, 25.6))
    r.panel(-1, bilirubin=7.0, alt=28.0, ast=36.0, alp=240.0, anc=1.6, plt=88.0)
    bsa = r.measured(-1, 128.0, 26.0)  # 0.96 m2
    r.performance(-3, ecog=1)
    r.attestation(-2, answers=dict.fromkeys(unanswered), response="not-in-CR", mrd_negative=False, hsct_planned=True)
    _signed_today(r, "draft-ino-c1d1", bsa, 0.8, "cycle 1 day 1")
    header = {
        "title": "Whole record: Ph-negative child refractory to blinatumomab, cycle 1 day 1 fully premedicated",
        "description": "Realistic record (~3 years): frontline chemotherapy by name, relapse, two blinatumomab cycles, "
                       "labs with reference ranges, growth, ECOG, INO2 attestation; cycle 1 day 1 drafted with premedication.",
        "hook": "order-select",
        "selections": ["MedicationRequest/draft-ino-c1d1"],
        "expect": EXPECT["ph_negative_first_cycle"],
    }
    return header, r


def ph_positive_post_transplant_cycle2() -> tuple[dict[str, Any], Record]:
    """Boy, 15, Ph-positive ALL: imatinib in frontline, dasatinib after, relapse, allogeneic
    HSCT ~14 months ago, post-transplant relapse, inotuzumab cycle 1 given (CR after it);
    today cycle 2 day 1 is drafted at 0.8 mg/m2 while fluconazole prophylaxis is active."""
    r = Record("wr-phpos-c2", seed=202)
    r.patient(gender="male", birth_day=-5560, given="Jonah", family="Testpatient")
    diagnosis = -1640
    ended = r.ph_positive_all(diagnosis, note="Second relapse, after allogeneic HSCT.",
                              blasts="CD19+ CD22+ B-cell precursor blasts 92%")
    first_relapse = ended + 30
    r.prescribed("dasatinib", diagnosis + 403, first_relapse, "Dasatinib 60 mg/m2 PO once daily", status="stopped",
                 reason="Molecular then haematological relapse on dasatinib (treatment failure)")
    r.finding(text="BCR-ABL1 kinase domain mutation analysis", on=first_relapse, value="T315I not detected")
    r.given("cytarabine", first_relapse + 10, 2000, "mg", "IV", note="salvage high-dose cytarabine")
    r.given("fludarabine", first_relapse + 10, 50, "mg", "IV", note="salvage FLAG")
    hsct = -420
    r.given("fludarabine", hsct - 6, 50, "mg", "IV", note="conditioning")
    r.given("thiotepa", hsct - 4, 250, "mg", "IV", note="conditioning (single alkylating agent)")
    r.procedure(text="Allogeneic haematopoietic stem cell transplant (matched unrelated donor)", on=hsct,
                snomed="234336002", display="Hemopoietic stem cell transplant",
                note="TBI 12 Gy + etoposide; engrafted day +18")
    r.prescribed("ciclosporin", hsct - 1, hsct + 180, "Ciclosporin PO (GvHD prophylaxis)")
    post_relapse = -70
    r.finding(text="Bone marrow immunophenotype", on=post_relapse, value="CD22+ B-cell precursor blasts 31% (post-transplant relapse)")
    r.prescribed("fluconazole", -60, None, "Fluconazole 200 mg PO once daily (antifungal prophylaxis)", status="active")
    r.prescribed("aciclovir", -60, None, "Aciclovir 400 mg PO twice daily (HSV prophylaxis)", status="active")
    r.prescribed("co-trimoxazole", -60, None, "Co-trimoxazole 960 mg PO twice daily Sat/Sun (PJP prophylaxis)", status="active")
    r.lab_history(diagnosis, hsct - 30, 21)
    r.lab_history(hsct - 29, hsct + 100, 4, counts_scale=0.5)
    r.lab_history(hsct + 101, -50, 30, bilirubin_unit="bilirubin_mg")
    r.growth(diagnosis, -60, 60, height=(152.0, 169.0), weight=(41.0, 56.5))
    bsa1 = r.measured(-50, 169.0, 56.5)
    c1 = -49
    r.ino_cycle(c1, bsa1)
    for on in (c1 - 1, c1 + 6, c1 + 13):
        r.panel(on)
    r.lab_history(c1 + 18, -4, 6)
    r.finding(text="Bone marrow MRD (flow cytometry)", on=-8, value="Blasts <5%, MRD 0.05% (CR, MRD positive)")
    r.panel(-1, bilirubin=9.0, alt=31.0, ast=29.0, alp=180.0, anc=2.1, plt=164.0)
    bsa = r.measured(-1, 170.0, 57.0)  # 1.65 m2
    r.performance(-2, karnofsky=90)
    r.attestation(-3, answers={}, response="CR", mrd_negative=False, hsct_planned=False)
    r.draft("draft-ino-c2d1", "inotuzumab ozogamicin", on=0, dose=round(0.8 * bsa, 2), unit="mg", route="IV",
            text=f"Inotuzumab ozogamicin 0.8 mg/m2 ({round(0.8 * bsa, 2)} mg) IV over 1 hour, cycle 2 day 1",
            authored_hours_ago=1)
    r.premedication_drafts(0)
    header = {
        "title": "Whole record: Ph-positive teenager after HSCT in CR signs 0.8 mg/m2 for cycle 2 with fluconazole active",
        "description": "Realistic record (~4.5 years): imatinib then dasatinib failure, allogeneic HSCT, post-transplant relapse, "
                       "inotuzumab cycle 1 with premedication, CR after cycle 1; active fluconazole prophylaxis.",
        "hook": "order-sign",
        "expect": EXPECT["ph_positive_post_transplant_cycle2"],
    }
    return header, r


def liver_toxicity_day15() -> tuple[dict[str, Any], Record]:
    """Girl, 12, Ph-negative second relapse; cycle 1 days 1 and 8 given; day 15 drafted but
    yesterday's bilirubin is 1.8 x ULN with ALT 3.1 x ULN (the hold rule's 'and')."""
    r = Record("wr-liver-d15", seed=303)
    r.patient(gender="female", birth_day=-4420, given="Lena", family="Testpatient")
    diagnosis = -1500
    r.condition(text="B-cell precursor acute lymphoblastic leukaemia, Philadelphia-negative, CD22-positive",
                onset=diagnosis, status="relapse", note="Second relapse.")
    r.finding(text="Cytogenetics (BCR-ABL1)", on=diagnosis, value="BCR-ABL1 negative; ETV6-RUNX1 positive")
    ended = r.frontline(diagnosis + 3)
    relapse1 = ended + 60
    for d in (0, 7, 14, 21):
        r.given("vincristine", relapse1 + d, 1.5, "mg", "IV", note="relapse induction")
    r.given("mitoxantrone", relapse1, 14, "mg", "IV", note="relapse induction")
    r.given("pegaspargase", relapse1 + 3, 2500, "[iU]", "IM")
    r.prescribed("blinatumomab", relapse1 + 40, relapse1 + 68, "Blinatumomab 15 micrograms/m2/day continuous IV infusion", route="IV")
    r.given("blinatumomab", relapse1 + 40, 15, "ug/d", "IV", until=relapse1 + 68)
    relapse2 = -40
    r.finding(text="Bone marrow immunophenotype", on=relapse2, value="CD22+ blasts 62% (second relapse)")
    r.prescribed("aciclovir", relapse2, None, "Aciclovir 400 mg PO twice daily (HSV prophylaxis)", status="active")
    r.prescribed("co-trimoxazole", relapse2, None, "Co-trimoxazole 480 mg PO twice daily Sat/Sun (PJP prophylaxis)", status="active")
    r.prescribed("caspofungin", relapse2 + 5, None, "Caspofungin 50 mg/m2 IV daily (antifungal prophylaxis)", status="active", route="IV")
    r.prescribed("allopurinol", -15, -5, "Allopurinol 100 mg/m2 PO three times daily (tumour lysis prophylaxis)")
    r.lab_history(diagnosis, relapse1 + 90, 14)
    r.lab_history(relapse1 + 91, -16, 30)
    r.growth(diagnosis, -20, 60, height=(136.0, 150.5), weight=(30.0, 39.5))
    bsa = r.measured(-15, 151.0, 40.0)  # 1.3 m2
    r.performance(-15, ecog=1)
    r.attestation(-16, answers={}, response="not-in-CR", mrd_negative=False, hsct_planned=True)
    c1 = -14
    r.panel(c1 - 1, bilirubin=9.0, alt=30.0, ast=34.0, alp=260.0, anc=1.4, plt=95.0)
    r.ino_cycle(c1, bsa, doses_mg_m2=(0.8, 0.5), days=(0, 7))
    r.panel(c1 + 3, bilirubin=12.0, alt=45.0, ast=48.0, alp=280.0, anc=1.1, plt=80.0)
    r.panel(c1 + 6, bilirubin=18.0, alt=70.0, ast=62.0, alp=300.0, anc=0.9, plt=66.0)
    r.panel(c1 + 10, bilirubin=27.0, alt=98.0, ast=85.0, alp=330.0, anc=0.8, plt=52.0)
    r.panel(-1, bilirubin=38.0, alt=125.0, ast=110.0, alp=350.0, anc=0.9, plt=41.0)  # 1.81 x ULN, ALT 3.1 x ULN
    r.measured(-1, 151.0, 40.3)  # 1.3 m2
    r.draft("draft-ino-c1d15", "inotuzumab ozogamicin", on=0, dose=round(0.5 * bsa, 2), unit="mg", route="IV",
            text=f"Inotuzumab ozogamicin 0.5 mg/m2 ({round(0.5 * bsa, 2)} mg) IV over 1 hour, cycle 1 day 15",
            authored_hours_ago=1)
    r.premedication_drafts(0)
    header = {
        "title": "Whole record: rising bilirubin and ALT before cycle 1 day 15 holds the dose",
        "description": "Realistic record (~4 years, two relapses): day 15 drafted with bilirubin 38 umol/L (ULN 21) and "
                       "ALT 125 U/L (ULN 40) yesterday; neutrophils and platelets low.",
        "hook": "order-sign",
        "expect": EXPECT["liver_toxicity_day15"],
    }
    return header, r


def not_in_cr_after_three_cycles() -> tuple[dict[str, Any], Record]:
    """Boy, 16, Ph-negative; three inotuzumab cycles given without CR/CRi; cycle 4 day 1 drafted."""
    r = Record("wr-cycle4-nocr", seed=404)
    r.patient(gender="male", birth_day=-5900, given="Tomasz", family="Testpatient")
    diagnosis = -1200
    r.condition(text="B-cell precursor acute lymphoblastic leukaemia, Philadelphia-negative, CD22-positive",
                onset=diagnosis, status="relapse", note="Early bone marrow relapse; refractory.")
    r.finding(text="Cytogenetics (BCR-ABL1)", on=diagnosis, value="BCR-ABL1 negative; hypodiploid")
    r.frontline(diagnosis + 2)
    relapse = -200
    r.given("clofarabine", relapse + 5, 60, "mg", "IV", note="salvage")
    r.given("etoposide", relapse + 5, 200, "mg", "IV", note="salvage")
    r.given("cyclophosphamide", relapse + 5, 800, "mg", "IV", note="salvage")
    r.prescribed("blinatumomab", relapse + 35, relapse + 63, "Blinatumomab 15 micrograms/m2/day continuous IV infusion", route="IV")
    r.given("blinatumomab", relapse + 35, 15, "ug/d", "IV", until=relapse + 63)
    r.prescribed("aciclovir", -110, None, "Aciclovir 400 mg PO twice daily (HSV prophylaxis)", status="active")
    r.prescribed("co-trimoxazole", -110, None, "Co-trimoxazole 960 mg PO twice daily Sat/Sun (PJP prophylaxis)", status="active")
    r.prescribed("liposomal amphotericin", -110, None, "Liposomal amphotericin 3 mg/kg IV twice weekly (antifungal prophylaxis)",
                 status="active", route="IV")
    r.lab_history(diagnosis, -110, 21)
    r.growth(diagnosis, -10, 60, height=(163.0, 176.0), weight=(50.0, 61.0))
    bsa = r.measured(-110, 175.5, 60.0)
    cycles = (-105, -77, -49)  # 28-day cycles after a 28-day cycle 1
    for i, start in enumerate(cycles):
        r.ino_cycle(start, bsa)
        for on in (start - 1, start + 6, start + 13, start + 20):
            r.panel(on, anc=r.normal("anc", 0.6), plt=r.normal("plt", 0.5))
        r.finding(text="Bone marrow response assessment", on=start + 25,
                  value=f"After cycle {i + 1}: blasts {[38, 22, 17][i]}% - not in CR/CRi")
    r.panel(-1, bilirubin=10.0, alt=26.0, ast=33.0, alp=150.0, anc=1.3, plt=72.0)
    bsa_now = r.measured(-1, 176.0, 60.5)  # 1.72 m2
    r.performance(-2, karnofsky=80)
    r.attestation(-2, answers={}, response="not-in-CR", mrd_negative=False, hsct_planned=False)
    r.draft("draft-ino-c4d1", "inotuzumab ozogamicin", on=0, dose=round(0.8 * bsa_now, 2), unit="mg", route="IV",
            text=f"Inotuzumab ozogamicin 0.8 mg/m2 ({round(0.8 * bsa_now, 2)} mg) IV over 1 hour, cycle 4 day 1",
            authored_hours_ago=1)
    r.premedication_drafts(0)
    header = {
        "title": "Whole record: no CR or CRi after three cycles and cycle 4 drafted",
        "description": "Realistic record (~3.3 years): frontline, salvage chemotherapy, blinatumomab, three 28-day "
                       "inotuzumab cycles with marrow assessments never in CR/CRi; cycle 4 day 1 drafted.",
        "hook": "order-select",
        "selections": ["MedicationRequest/draft-ino-c4d1"],
        "expect": EXPECT["not_in_cr_after_three_cycles"],
    }
    return header, r


def azole_drafted_mid_course() -> tuple[dict[str, Any], Record]:
    """Girl, 6, pre-pubescent; inotuzumab cycle 1 given on days 1, 8 and 15 (the last dose
    14 days ago); today oral voriconazole is drafted for a probable fungal chest infection,
    with no inotuzumab in the session."""
    r = Record("wr-azole-midcourse", seed=505)
    r.patient(gender="female", birth_day=-2300, given="Mia", family="Testpatient")
    diagnosis = -1000
    r.condition(text="B-cell precursor acute lymphoblastic leukaemia, Philadelphia-negative, CD22-positive",
                onset=diagnosis, status="relapse")
    r.frontline(diagnosis + 2)
    r.lab_history(diagnosis, -30, 21)
    r.growth(diagnosis, -25, 60, height=(104.0, 114.0), weight=(16.5, 19.8))
    bsa = r.measured(-30, 114.0, 19.8)
    r.attestation(-31, answers={}, response="not-in-CR", mrd_negative=False, hsct_planned=True)
    r.ino_cycle(-28, bsa)
    for on in (-29, -22, -15, -8):
        r.panel(on)
    r.condition(text="Probable invasive pulmonary aspergillosis", onset=-2, status="active", snomed=False)
    r.panel(-1)
    r.draft("draft-voriconazole", "voriconazole", on=0, dose=180, unit="mg", route="PO",
            text="Voriconazole 9 mg/kg (180 mg) PO twice daily", authored_hours_ago=1)
    header = {
        "title": "Whole record: oral voriconazole drafted four weeks after inotuzumab cycle 1 day 1",
        "description": "Realistic record: frontline therapy, inotuzumab cycle 1 (last dose 14 days ago); "
                       "a systemic azole is drafted with no inotuzumab in the session.",
        "hook": "order-select",
        "selections": ["MedicationRequest/draft-voriconazole"],
        "expect": EXPECT["azole_drafted_mid_course"],
    }
    return header, r


def ph_positive_imatinib_only() -> tuple[dict[str, Any], Record]:
    """Boy, 17, Ph-positive relapse still on imatinib (never a second-generation TKI), ECOG 3;
    the INO2 form leaves the MDT item unanswered. Cycle 1 day 1 is signed at 1.8 mg for a
    BSA of 1.79 m2 with loratadine as the only premedication."""
    r = Record("wr-phpos-imatinib", seed=606)
    r.patient(gender="male", birth_day=-6300, given="Dev", family="Testpatient")
    diagnosis = -900
    r.condition(text="B-cell precursor acute lymphoblastic leukaemia, Philadelphia-positive, CD22-positive",
                onset=diagnosis, status="relapse", note="Bone marrow relapse during maintenance.")
    r.finding(text="Cytogenetics (BCR-ABL1)", on=diagnosis, value="t(9;22) BCR-ABL1 p190 positive (Philadelphia positive)")
    r.frontline(diagnosis + 2, ph_positive=True)
    relapse = -30
    r.finding(text="Bone marrow immunophenotype", on=relapse, value="CD22+ B-cell precursor blasts 55%")
    r.prescribed("imatinib", relapse, None, "Imatinib 400 mg PO once daily", status="active")
    r.prescribed("aciclovir", relapse, None, "Aciclovir 400 mg PO twice daily (HSV prophylaxis)", status="active")
    r.lab_history(diagnosis, -3, 14)
    r.growth(diagnosis, -10, 60, height=(172.0, 178.0), weight=(60.0, 65.5))
    r.panel(-2, bilirubin=11.0, alt=35.0, ast=41.0, alp=140.0, anc=1.2, plt=64.0)
    r.measured(-2, 178.0, 65.0)  # 1.79 m2
    r.performance(-2, ecog=3)
    answers = {code: True for code in CRITERIA if code != "mdt-discussion"}
    r.attestation(-2, answers=answers, response="not-in-CR", mrd_negative=False, hsct_planned=False)
    r.entries[-1]["item"] = [i for i in r.entries[-1]["item"] if i["linkId"] != "mdt-discussion"]
    r.draft("draft-ino-c1d1", "inotuzumab ozogamicin", on=0, dose=1.8, unit="mg", route="IV",
            text="Inotuzumab ozogamicin 1.8 mg IV over 1 hour, cycle 1 day 1", authored_hours_ago=1)
    r.draft("draft-loratadine", "loratadine", on=0, dose=10, unit="mg", route="PO",
            text="Loratadine 10 mg PO 30-60 minutes before inotuzumab", authored_hours_ago=2)
    header = {
        "title": "Whole record: Ph-positive 17-year-old on imatinib with ECOG 3 signs an overdosed first cycle",
        "description": "Realistic record (~2.5 years): Ph-positive ALL, imatinib only (still active), ECOG 3, INO2 form "
                       "without the MDT answer; cycle 1 day 1 at 1.8 mg for BSA 1.79 m2, loratadine the only premedication.",
        "hook": "order-sign",
        "expect": EXPECT["ph_positive_imatinib_only"],
    }
    return header, r


def ph_positive_asciminib(unanswered: tuple[str, ...]) -> tuple[dict[str, Any], Record]:
    """Girl, 13, Ph-positive BCP-ALL: imatinib in frontline, relapse on it, asciminib (a
    STAMP inhibitor, not a second/third-generation TKI by any list) as the only later TKI,
    stopped at a second relapse 6 weeks ago; cycle 1 day 1 of inotuzumab signed at the
    regimen dose with full premedication. ECOG 1, labs and counts fine, no HSCT planned.
    The INO2 form of 2 days ago leaves the ``unanswered`` items unanswered, the others yes:
    whether asciminib counts for INO2 is a site-policy question (``ph-status-tki`` unknown
    whatever the form says); an unanswered attestation item is one the form settles."""
    r = Record("wr-phpos-asciminib", seed=909)
    r.patient(gender="female", birth_day=-4800, given="Leila", family="Testpatient")
    diagnosis = -1200
    ended = r.ph_positive_all(diagnosis, note="Second relapse; refractory to asciminib salvage.",
                              blasts="CD19+ CD22+ CD10+ B-cell precursor blasts 84%")
    first_relapse = ended + 20
    r.finding(text="BCR-ABL1 kinase domain mutation analysis", on=first_relapse, value="T315I not detected; F359V detected")
    r.prescribed("asciminib", first_relapse + 7, -42, "Asciminib 40 mg PO twice daily (off-label, after MDT discussion)",
                 status="stopped", reason="Second relapse on asciminib (treatment failure)")
    relapse = -45
    r.procedure(text="Bone marrow aspirate", on=relapse)
    r.finding(text="Bone marrow immunophenotype", on=relapse, value="CD22+ B-cell precursor blasts 41% (CD22 positive in 95% of blasts)")
    r.prescribed("co-trimoxazole", relapse, None, "Co-trimoxazole 450 mg PO twice daily Sat/Sun (PJP prophylaxis)", status="active")
    r.prescribed("aciclovir", relapse, None, "Aciclovir 400 mg PO twice daily (HSV prophylaxis)", status="active")
    r.lab_history(diagnosis, relapse - 10, 28)
    r.lab_history(relapse, -4, 6, counts_scale=0.8)
    r.growth(diagnosis, -20, 60, height=(142.0, 152.0), weight=(35.0, 41.0))
    r.panel(-1, bilirubin=8.0, alt=25.0, ast=33.0, alp=260.0, anc=1.8, plt=132.0)
    bsa = r.measured(-1, 153.0, 41.5)  # 1.33 m2
    r.performance(-2, ecog=1)
    r.attestation(-2, answers=dict.fromkeys(unanswered), response="not-in-CR", mrd_negative=False, hsct_planned=False)
    _signed_today(r, "draft-ino-c1d1", bsa, 0.8, "cycle 1 day 1")
    header = _ASCIMINIB_HEADERS[unanswered]
    return {**header, "expect": EXPECT[header["expect"]]}, r


#: The asciminib record's two forms: the items left unanswered -> the scenario header.
_ASCIMINIB_HEADERS: dict[tuple[str, ...], dict[str, Any]] = {
    ("ph-status-tki",): {
        "title": "Whole record: asciminib the only later TKI and the INO2 form silent on it: a policy question, "
                 "no link to the form",
        "description": "Realistic record (~3 years): Ph-positive ALL, imatinib in frontline, asciminib salvage stopped "
                       "at a second relapse; the INO2 form answers every item but the Ph/TKI one. Whether asciminib "
                       "counts is a site policy the form cannot settle. Cycle 1 day 1 signed with premedication.",
        "hook": "order-sign",
        "expect": "ph_positive_asciminib_policy_only_sign",
    },
    ("ph-status-tki", "mdt-discussion"): {
        "title": "Whole record: asciminib policy question plus an unanswered MDT item: the card links to the form "
                 "for the MDT item",
        "description": "The asciminib record, its INO2 form leaving the Ph/TKI item and the MDT item unanswered: "
                       "answering the MDT item settles it, the Ph/TKI item stays a policy question. Cycle 1 day 1 "
                       "signed with premedication.",
        "hook": "order-sign",
        "expect": "ph_positive_asciminib_policy_and_mdt_sign",
    },
}


# ==================================================================== expectations
#
# Reasoned from the rule definitions (CodeSystem sact-cds-rule definitions and the rule
# PlanDefinitions), not copied from replay output. See each patient's docstring.

def _clean_child(key: str, seed: int) -> tuple[Record, float]:
    """Boy, 10, Ph-negative BCP-ALL, relapsed and refractory to blinatumomab; no HSCT
    planned, no liver disease, labs and counts normal, ECOG 0, every INO2 criterion
    attested; antiviral, PJP and non-azole antifungal prophylaxis active. Returns the
    record and today's BSA (m2)."""
    r = Record(key, seed=seed)
    r.patient(gender="male", birth_day=-3700, given="Idris", family="Testpatient")
    diagnosis = -1000
    r.condition(text="B-cell precursor acute lymphoblastic leukaemia, Philadelphia-negative, CD22-positive",
                onset=diagnosis, status="relapse", note="Bone marrow relapse; refractory to blinatumomab.")
    r.finding(text="Cytogenetics (BCR-ABL1)", on=diagnosis, value="BCR-ABL1 negative (Philadelphia negative)")
    ended = r.frontline(diagnosis + 2)
    relapse = -90
    r.finding(text="Bone marrow immunophenotype", on=relapse, value="CD22+ B-cell precursor blasts 38%")
    r.prescribed("blinatumomab", relapse + 5, relapse + 33, "Blinatumomab 15 micrograms/m2/day continuous IV infusion",
                 route="IV", status="stopped", reason="Refractory disease")
    r.given("blinatumomab", relapse + 5, 15, "ug/d", "IV", until=relapse + 33)
    r.prescribed("co-trimoxazole", diagnosis + 2, ended, "Co-trimoxazole 450 mg PO twice daily Sat/Sun (PJP prophylaxis)")
    r.prescribed("co-trimoxazole", relapse, None, "Co-trimoxazole 450 mg PO twice daily Sat/Sun (PJP prophylaxis)", status="active")
    r.prescribed("aciclovir", relapse, None, "Aciclovir 400 mg PO twice daily (HSV prophylaxis)", status="active")
    r.prescribed("liposomal amphotericin", relapse + 3, None, "Liposomal amphotericin 3 mg/kg IV twice weekly (antifungal prophylaxis)",
                 status="active", route="IV")
    r.lab_history(diagnosis, relapse - 10, 28)
    r.lab_history(relapse, -9, 7, counts_scale=0.8)
    r.growth(diagnosis, -20, 60, height=(130.0, 139.0), weight=(27.0, 31.5))
    bsa = r.measured(-1, 139.0, 32.0)
    r.performance(-3, ecog=0)
    r.attestation(-4, answers={}, response="not-in-CR", mrd_negative=False, hsct_planned=False)
    return r, bsa


def _signed_today(r: Record, key: str, bsa: float, mg_m2: float, label: str) -> None:
    """Today's inotuzumab draft at the regimen dose for the BSA, with its premedication."""
    mg = round(mg_m2 * bsa, 2)
    r.draft(key, "inotuzumab ozogamicin", on=0, dose=mg, unit="mg", route="IV",
            text=f"Inotuzumab ozogamicin {mg_m2} mg/m2 ({mg} mg) IV over 1 hour, {label}", authored_hours_ago=1)
    r.premedication_drafts(0)


#: The clean child's two signed doses: (record key, seed, title tail, description).
_CLEAN = {
    1: ("wr-clean-c1d1", 707, "cycle 1 day 1 signs with one info card",
        "Realistic record (~3 years), every INO2 criterion documented, no VOD risk factor, labs and counts "
        "normal, dose = BSA x 0.8 mg/m2, full premedication: only the supportive-care reminder of a new cycle."),
    8: ("wr-clean-c1d8", 808, "cycle 1 day 8 signs with no card",
        "The same clean record a week later: day 1 given with premedication, day 8 drafted at the "
        "regimen dose with premedication, labs and counts fine."),
}


def clean_sign(day: int) -> tuple[dict[str, Any], Record]:
    """The clean child signing cycle 1 day ``day`` (1: 0.8 mg/m2; 8: 0.5 mg/m2 a week after
    day 1 was given), premedicated, labs and counts normal."""
    key, seed, tail, description = _CLEAN[day]
    r, bsa = _clean_child(key, seed)
    if day == 8:
        r.panel(-8, bilirubin=6.0, alt=22.0, ast=30.0, alp=210.0, anc=1.9, plt=140.0)
        r.ino_cycle(-7, bsa, doses_mg_m2=(0.8,), days=(0,))
        r.panel(-1, bilirubin=7.0, alt=26.0, ast=31.0, alp=220.0, anc=1.5, plt=120.0)
    else:
        r.panel(-1, bilirubin=6.0, alt=22.0, ast=30.0, alp=210.0, anc=1.9, plt=140.0)
    _signed_today(r, f"draft-ino-c1d{day}", bsa, 0.8 if day == 1 else 0.5, f"cycle 1 day {day}")
    header = {
        "title": f"Whole record, alert burden: a clean, fully documented {tail}",
        "description": description,
        "hook": "order-sign",
        "expect": EXPECT[f"clean_cycle1_day{day}_sign"],
    }
    return header, r


def ph_negative_first_cycle_sign() -> tuple[dict[str, Any], Record]:
    """The Ph-negative first-cycle record at order-sign (the session complete)."""
    header, r = ph_negative_first_cycle()
    header = {
        "title": "Whole record, alert burden: Ph-negative child with HSCT planned signs cycle 1 day 1 (two cards)",
        "description": header["description"] + " Signed (order-sign): the session-only checks run too.",
        "hook": "order-sign",
        "expect": EXPECT["ph_negative_first_cycle_sign"],
    }
    return header, r


def ph_negative_first_cycle_form_gap_sign() -> tuple[dict[str, Any], Record]:
    """The Ph-negative first-cycle record at order-sign, its INO2 form leaving the Trust
    unlicensed-medicines item unanswered: a gap the card's link to the form can close."""
    header, r = ph_negative_first_cycle(unanswered=("unlicensed-policy",))
    header = {
        "title": "Whole record: the INO2 form leaves one item unanswered, so the eligibility card links to the form",
        "description": header["description"] + " The INO2 form leaves 'Trust unlicensed-medicines policy followed' "
                       "unanswered. Signed (order-sign) with the three premedication drafts.",
        "hook": "order-sign",
        "expect": EXPECT["ph_negative_first_cycle_form_gap_sign"],
    }
    return header, r


EXPECT: dict[str, dict[str, Any]] = {
    "ph_negative_first_cycle": {
        # ino2-eligibility: absent. Every criterion is met: age 8 (<18), B-ALL coded (SNOMED
        #   277571004) and attested, Ph-negative (no TKI: the form decides, true), ECOG 1,
        #   no other SACT agent active (blinatumomab ended 35 days ago, > 7-day window),
        #   the other items attested true -> ``open`` is empty -> no card.
        # hepatotoxicity-vod: fires (urgent -> warning): the form says HSCT planned
        #   (factor planned-hsct); no prior VOD or liver disease -> not critical.
        # supportive-care: fires (routine -> info): cycle 1 day 1.
        # Everything else is false: liver tests yesterday bilirubin 7/21, ALT 28/40; cycle 1
        #   so no blood-counts/cycle-limit/treatment-break; no azole drafted or active
        #   (fluconazole ended ~3 years ago); premedication, remission-dosing and bsa-dose are
        #   order-sign rules. No data-unavailable: every condition is decidable.
        "cards": [
            {"rule": "hepatotoxicity-vod", "indicator": "warning"},
            {"rule": "supportive-care", "indicator": "info"},
        ],
        "absent": ["ino2-eligibility", "azole-antifungal", "liver-function-hold", "blood-counts",
                   "cycle-limit", "dose-schedule", "monotherapy", "treatment-break", "data-unavailable"],
        "only": True,
    },
    "ph_positive_post_transplant_cycle2": {
        # order-sign: every draft (inotuzumab + 3 premedications) is selected.
        # azole-antifungal: fires (warning): inotuzumab selected and fluconazole active
        #   (MedicationRequest status active). No azole draft -> no removal suggestion.
        # bsa-dose: fires (stat -> critical): in CR the day-1 dose is 0.5 mg/m2; 0.799 is 60 % above
        #   it, beyond the 15 % gross-error band (issue 10 a): 1.31 mg = 1.6 x the calculated
        #   1.64 m2 x 0.5 = 0.82 mg, with the calculated dose offered as a replacement.
        # remission-dosing: absent. Its condition holds (cycle 2 day 1, the INO2 form says CR,
        #   1.31 mg / BSA 1.64 m2 = 0.799 mg/m2), but it is the same problem as bsa-dose
        #   (card-supersedes), and the critical bsa-dose card, which names the CR/CRi regimen
        #   and the response's source, stands for both (one card per problem, issue 13).
        # hepatotoxicity-vod: fires (warning): prior HSCT (Procedure 234336002, completed).
        # Absent: ino2-eligibility (all met: dasatinib = second-generation TKI, Karnofsky 90
        #   >= 70, age 15), supportive-care (day 1 of cycle 2 but in CR), blood-counts (ANC 2.1,
        #   platelets 164), treatment-break (28 days beyond, limit 42), premedication (all 3
        #   drafted), liver-function-hold (bilirubin 9/21), cycle-limit (2 cycles).
        "cards": [
            {"rule": "bsa-dose", "indicator": "critical",
             "contains": ["1.31 mg ordered = 1.6 × the calculated 0.82 mg", "for patients in CR/CRi; response CR"],
             "suggestions": ["Replace the drafted inotuzumab dose"]},
            {"rule": "azole-antifungal", "indicator": "warning", "contains": ["fluconazole"]},
            {"rule": "hepatotoxicity-vod", "indicator": "warning"},
        ],
        "absent": ["remission-dosing", "ino2-eligibility", "supportive-care", "blood-counts", "treatment-break", "premedication",
                   "liver-function-hold", "cycle-limit", "monotherapy", "dose-schedule", "data-unavailable"],
        "only": True,
    },
    "liver_toxicity_day15": {
        # order-sign, day 15 of cycle 1 (day 1 14 days ago, day 8 7 days ago).
        # liver-function-hold: fires (stat -> critical): bilirubin 38/21 = 1.81 x ULN > 1.5
        #   and ALT 125/40 = 3.1 x ULN > 2.5 (AST 110/50 = 2.2).
        # hepatotoxicity-vod: fires (warning): HSCT planned on the form, bilirubin >= 1 x ULN.
        # Absent: dose-schedule (day 15, 7 days after day 8), blood-counts (only judged on
        #   day 1 of cycle >= 2: day 8/15 are not interrupted for counts), bsa-dose (0.65 mg /
        #   1.3 m2 = 0.5 mg/m2, the day-15 dose; measurements yesterday), premedication (all 3
        #   drafted), supportive-care (not day 1), ino2-eligibility (all met, ECOG 1, age 12).
        "cards": [
            {"rule": "liver-function-hold", "indicator": "critical"},
            {"rule": "hepatotoxicity-vod", "indicator": "warning"},
        ],
        "absent": ["ino2-eligibility", "azole-antifungal", "blood-counts", "dose-schedule", "bsa-dose", "premedication",
                   "monotherapy", "treatment-break", "cycle-limit", "remission-dosing", "supportive-care",
                   "data-unavailable"],
        "only": True,
    },
    "not_in_cr_after_three_cycles": {
        # order-select, cycle 4 day 1 (cycles started 105, 77 and 49 days ago).
        # cycle-limit: fires (cycle-limit-no-response, stat -> critical): cycle 4 and the form
        #   says not in CR/CRi. (hsct-fourth needs HSCT planned: the form says no.)
        # hepatotoxicity-vod: fires (warning): cycle number >= 3.
        # supportive-care: fires (info): day 1 of a cycle, not in CR/CRi.
        # Absent: blood-counts (ANC 1.3 >= 1, platelets 72 >= 50), treatment-break (49 days
        #   after a 28-day cycle: 21 beyond, limit 42), dose-schedule (day 1, 35 days after the
        #   previous dose), ino2-eligibility (all met: Karnofsky 80, age 16).
        "cards": [
            {"rule": "cycle-limit", "indicator": "critical"},
            {"rule": "hepatotoxicity-vod", "indicator": "warning"},
            {"rule": "supportive-care", "indicator": "info"},
        ],
        "absent": ["ino2-eligibility", "azole-antifungal", "liver-function-hold", "blood-counts", "monotherapy",
                   "treatment-break", "dose-schedule", "data-unavailable"],
        "only": True,
    },
    "azole_drafted_mid_course": {
        # order-select with only voriconazole selected (no inotuzumab in the session).
        # azole-antifungal: fires (warning): the azole is selected and the last inotuzumab
        #   dose was 14 days ago, within the 56-day site window; the draft azole is offered
        #   for removal ("Remove the draft azole order").
        # Every inotuzumab rule needs an inotuzumab dose selected: none fires.
        "cards": [{"rule": "azole-antifungal", "indicator": "warning", "contains": ["voriconazole"],
                   "suggestions": ["Remove"]}],
        "absent": ["ino2-eligibility", "hepatotoxicity-vod", "liver-function-hold", "monotherapy", "supportive-care",
                   "data-unavailable"],
        "only": True,
    },
    "ph_positive_imatinib_only": {
        # order-sign, cycle 1 day 1.
        # ino2-eligibility: fires, 3 unmet -> urgent -> warning: ph-status-tki unmet (only a
        #   first-generation TKI, imatinib), performance-status unmet (ECOG 3 > 2),
        #   monotherapy unmet (imatinib active); mdt-discussion unknown (not answered on the
        #   form); child met (17 < 18). The form leaves the MDT item unanswered, so the card
        #   links to the form (cds-link-condition), although the unmet criteria stand.
        # monotherapy: fires (warning): imatinib (BCR-ABL TKI) active with inotuzumab.
        # bsa-dose: fires (stat -> critical): 1.8 mg / 1.79 m2 = 1.01 mg/m2, 26 % above 0.8,
        #   beyond the 15 % gross-error band: 1.26 x the calculated 1.43 mg, replacement offered.
        # premedication: fires (routine -> info): paracetamol and dexamethasone not drafted;
        #   suggestions to order them (loratadine is drafted, so not suggested).
        # supportive-care: fires (info): cycle 1 day 1.
        # Absent: hepatotoxicity-vod (no prior/planned HSCT, liver tests present, bilirubin
        #   11/21 < ULN, cycle 1), liver-function-hold, blood-counts (cycle 1), azole.
        "cards": [
            {"rule": "ino2-eligibility", "indicator": "warning",
             "criteria": {"ph-status-tki": "unmet", "performance-status": "unmet", "monotherapy": "unmet",
                          "mdt-discussion": "unknown"},
             "links": ["Complete the INO2 form"]},
            {"rule": "monotherapy", "indicator": "warning", "contains": ["imatinib"]},
            {"rule": "bsa-dose", "indicator": "critical", "contains": ["1.8 mg ordered = 1.26 × the calculated 1.43 mg"],
             "suggestions": ["Replace the drafted inotuzumab dose"]},
            {"rule": "premedication", "indicator": "info", "suggestions": ["paracetamol", "dexamethasone"]},
            {"rule": "supportive-care", "indicator": "info"},
        ],
        "absent": ["hepatotoxicity-vod", "liver-function-hold", "blood-counts", "azole-antifungal", "remission-dosing",
                   "cycle-limit", "treatment-break", "dose-schedule", "data-unavailable"],
        "only": True,
    },
    "clean_cycle1_day1_sign": {
        # Alert-burden target (issue 13): a clean, fully documented order gives no warning or
        # critical card and at most one info card. Cycle 1 day 1 starts a cycle, so the
        # supportive-care reminder (info) is the one card; everything else is met or absent:
        # every INO2 criterion attested and consistent with the record (age 10, Ph-negative,
        # ECOG 0, blinatumomab stopped 57 days ago), no VOD risk factor (no HSCT, no liver
        # disease, bilirubin 6/21), counts normal, dose = BSA x 0.8 mg/m2, premedication drafted.
        "cards": [{"rule": "supportive-care", "indicator": "info"}],
        "only": True,
    },
    "clean_cycle1_day8_sign": {
        # The same child on day 8 (7 days after day 1, inside the 6-10 window; 0.5 mg/m2 x BSA;
        # premedicated): not a new cycle, so not even the supportive-care reminder: no card.
        "cards": [],
        "only": True,
    },
    "ph_negative_first_cycle_form_gap_sign": {
        # As ph_negative_first_cycle_sign, plus ino2-eligibility: fires (0 unmet -> routine ->
        #   info) with unlicensed-policy unknown ("Not answered on the INO2 form"), every other
        #   criterion met as in ph_negative_first_cycle. The form leaves that item unanswered,
        #   so answering it can settle it: the card offers "Complete the INO2 form" and its
        #   "What to do" points to the form (the link's cds-link-condition).
        "cards": [{"rule": "hepatotoxicity-vod", "indicator": "warning"},
                  {"rule": "ino2-eligibility", "indicator": "info", "criteria": {"unlicensed-policy": "unknown"},
                   "contains": ["Not answered on the INO2 form", "on the INO2 form (link on this card)"],
                   "links": ["Complete the INO2 form"]},
                  {"rule": "supportive-care", "indicator": "info"}],
        "only": True,
    },
    "ph_positive_asciminib_policy_only_sign": {
        # order-sign, cycle 1 day 1 at BSA x 0.8 mg/m2, the three premedications drafted.
        # ino2-eligibility: fires (0 unmet -> routine -> info) with ph-status-tki unknown only:
        #   imatinib (first generation) and asciminib recorded, no second/third-generation
        #   TKI, site policy asciminib_counts_for_ino2 = ask -> "a policy decision"; the form
        #   leaves the item unanswered, but a yes or no there changes nothing (the record
        #   decides before the form), so no criterion is one the form can settle: no link
        #   (cds-link-condition), and "What to do" says the form would not settle it. Every
        #   other criterion met: age 13, B-ALL coded and attested, ECOG 1, asciminib stopped
        #   42 days ago (no other SACT agent active or drafted), attestations yes.
        # supportive-care: fires (info): cycle 1 day 1, not in CR/CRi.
        # Absent: hepatotoxicity-vod (no HSCT done or planned, no liver disease, bilirubin
        #   8/21, cycle 1), liver-function-hold, blood-counts (cycle 1), bsa-dose (dose = BSA x
        #   0.8), premedication (all 3 drafted), azole (none), monotherapy, data-unavailable.
        "cards": [{"rule": "ino2-eligibility", "indicator": "info", "criteria": {"ph-status-tki": "unknown"},
                   "contains": ["policy decision", "an answer on the INO2 form would not settle it"],
                   "links": []},
                  {"rule": "supportive-care", "indicator": "info"}],
        "only": True,
    },
    "ph_positive_asciminib_policy_and_mdt_sign": {
        # As ph_positive_asciminib_policy_only_sign, but the form also leaves mdt-discussion
        #   unanswered: an attestation-only item, which a yes or no on the form settles. So
        #   ino2-eligibility (info; ph-status-tki and mdt-discussion unknown) offers the link
        #   and points to the form, and names the Ph/TKI criterion as one the form would not
        #   settle. supportive-care as before; nothing else fires.
        "cards": [{"rule": "ino2-eligibility", "indicator": "info",
                   "criteria": {"ph-status-tki": "unknown", "mdt-discussion": "unknown"},
                   "contains": ["policy decision", "Not answered on the INO2 form",
                                "on the INO2 form (link on this card); for **Ph-negative, or Ph-positive after a failed "
                                "2nd/3rd-generation TKI**, do what its line says: an answer on the INO2 form would not "
                                "settle it."],
                   "links": ["Complete the INO2 form"]},
                  {"rule": "supportive-care", "indicator": "info"}],
        "only": True,
    },
    "ph_negative_first_cycle_sign": {
        # As ph_negative_first_cycle, signed: hepatotoxicity-vod (HSCT planned is a risk
        # factor: warning) and supportive-care (info); the dose is BSA x 0.8 mg/m2 and the
        # premedication is drafted, so the session checks stay silent.
        "cards": [{"rule": "hepatotoxicity-vod", "indicator": "warning"},
                  {"rule": "supportive-care", "indicator": "info"}],
        "only": True,
    },
}

PATIENTS = {
    "whole-record-ph-negative-cycle-1-day-1.json": ph_negative_first_cycle,
    "whole-record-ph-positive-post-hsct-cycle-2.json": ph_positive_post_transplant_cycle2,
    "whole-record-liver-toxicity-day-15.json": liver_toxicity_day15,
    "whole-record-no-cr-after-three-cycles.json": not_in_cr_after_three_cycles,
    "whole-record-azole-drafted-mid-course.json": azole_drafted_mid_course,
    "whole-record-ph-positive-imatinib-only.json": ph_positive_imatinib_only,
    "whole-record-burden-clean-cycle-1-day-1-sign.json": functools.partial(clean_sign, 1),
    "whole-record-burden-clean-cycle-1-day-8-sign.json": functools.partial(clean_sign, 8),
    "whole-record-burden-ph-negative-cycle-1-day-1-sign.json": ph_negative_first_cycle_sign,
    "whole-record-ph-negative-form-item-unanswered-sign.json": ph_negative_first_cycle_form_gap_sign,
    "whole-record-ph-positive-asciminib-policy-unanswered-sign.json":
        functools.partial(ph_positive_asciminib, ("ph-status-tki",)),
    "whole-record-ph-positive-asciminib-policy-and-mdt-unanswered-sign.json":
        functools.partial(ph_positive_asciminib, ("ph-status-tki", "mdt-discussion")),
}


def render(header: dict[str, Any], record: Record) -> str:
    """The scenario JSON: header pretty-printed, one bundle entry per line (reviewable diffs)."""
    lines = ["{", f'  "scenario": {json.dumps(header, indent=2, ensure_ascii=False).replace(chr(10), chr(10) + "  ")},']
    lines.append('  "bundle": {"resourceType": "Bundle", "type": "collection", "entry": [')
    entries = record.bundle()["entry"]
    for i, entry in enumerate(entries):
        lines.append("    " + json.dumps(entry, ensure_ascii=False, separators=(",", ":")) + ("," if i < len(entries) - 1 else ""))
    lines.append("  ]}")
    lines.append("}")
    return "\n".join(lines) + "\n"


def build() -> dict[str, str]:
    out = {}
    for name, make in PATIENTS.items():
        header, record = make()
        text = render(header, record)
        json.loads(text)  # always valid JSON
        out[name] = text
    return out


def write_or_check(files: dict[str, str], argv: Iterable[str], script: str) -> int:
    """Write the generated scenario ``files`` (name -> text) beside this script, or with
    ``--check`` only say which are stale (exit 1), naming the ``script`` to rerun."""
    check = "--check" in list(argv)
    stale = []
    for name, text in files.items():
        path = HERE / name
        if check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(name)
        else:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path.relative_to(HERE.parent.parent)} ({text.count(chr(10)) - 5} resources)")
    if stale:
        print(f"stale (rerun tests/scenarios/{script}):", ", ".join(stale))
        return 1
    return 0


def main(argv: Iterable[str]) -> int:
    return write_or_check(build(), argv, "_make_whole_records.py")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
