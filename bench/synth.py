"""Synthetic patients of a chosen size, shaped like the whole-record replay scenarios.

Each patient is a child with relapsed B-ALL on inotuzumab ozogamicin: diagnosis, years of
liver tests and blood counts (with reference ranges), growth, prior regimens by name
(MedicationRequests) and their administrations (MedicationAdministrations), one finished
inotuzumab cycle with premedication, the INO2 attestation, and today's session drafting
cycle 2 day 1 with its premedication while fluconazole prophylaxis is active, so several
rules fire and cards carry evidence and suggestions (the rendering path is exercised).

Sizes are exact: ``make_patient(500)`` holds 500 resources in its record (patient
included, draft orders not, as an EHR keeps unsigned orders in the ordering session).
A fixed clinical core (~40 resources) is kept at every size; the history fills the rest
in a fixed mix (≈70 % laboratory Observations, ≈20 % administrations, ≈5 % requests,
≈5 % growth, procedures and findings), spread over the years before today, so a larger
patient has a longer, denser history, not a different case.

Codes are only those of tests/scenarios/ (LOINC, ATC, SNOMED from shared/reference/
clinical.md §2); other medicines by name. Deterministic: seeded ``random.Random``.
"""

from __future__ import annotations

import math
import random
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from cds_service.knowledge.terms import ATC, INO2_QUESTIONNAIRE, LOINC, SNOMED, UCUM
from cds_service.knowledge.terms import CRITERION_CODES as CRITERIA
from cds_service.knowledge.terms import RESPONSE_STATUS_SYSTEM as RESPONSE_STATUS

Resource = dict[str, Any]

OBS_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"

#: analyte -> (LOINC, display, UCUM unit, reference low, reference high, mean, sd)
LABS: dict[str, tuple[str, str, str, float, float, float, float]] = {
    "bilirubin": ("14631-6", "Bilirubin.total [Moles/volume] in Serum or Plasma", "umol/L", 3, 21, 8, 2.5),
    "alt": ("1742-6", "Alanine aminotransferase [Enzymatic activity/volume] in Serum or Plasma", "U/L", 5, 40, 22, 7),
    "ast": ("1920-8", "Aspartate aminotransferase [Enzymatic activity/volume] in Serum or Plasma", "U/L", 10, 50, 30, 7),
    "alp": ("6768-6", "Alkaline phosphatase [Enzymatic activity/volume] in Serum or Plasma", "U/L", 100, 420, 230, 40),
    "anc": ("751-8", "Neutrophils [#/volume] in Blood by Automated count", "10*9/L", 1.5, 8.0, 3.2, 0.9),
    "plt": ("777-3", "Platelets [#/volume] in Blood by Automated count", "10*9/L", 150, 450, 260, 50),
}
VITALS = {
    "height": ("8302-2", "Body height", "cm"),
    "weight": ("29463-7", "Body weight", "kg"),
    "bsa": ("8277-6", "Body surface area", "m2"),
}
ATC_CODES = {
    "inotuzumab ozogamicin": "L01FB01",
    "fluconazole": "J02AC01",
    "loratadine": "R06AX13",
    "paracetamol": "N02BE01",
    "dexamethasone": "H02AB02",
    "blinatumomab": "L01FX07",
}
ROUTES = {"IV": "Intravenous", "PO": "Oral", "IT": "Intrathecal", "IM": "Intramuscular"}
#: prior regimens given by name: (agent, dose, unit, route)
HISTORY_AGENTS = (
    ("vincristine", 1.5, "mg", "IV"), ("daunorubicin", 25, "mg", "IV"), ("pegaspargase", 2500, "[iU]", "IM"),
    ("methotrexate", 12, "mg", "IT"), ("cytarabine", 75, "mg", "IV"), ("cyclophosphamide", 1000, "mg", "IV"),
    ("doxorubicin", 25, "mg", "IV"), ("mercaptopurine", 50, "mg", "PO"), ("blinatumomab", 15, "ug/d", "IV"),
)  # fmt: skip
HISTORY_REQUESTS = (
    ("mercaptopurine", "Mercaptopurine 75 mg/m2 PO daily (maintenance)"),
    ("methotrexate", "Methotrexate 20 mg/m2 PO weekly (maintenance)"),
    ("dexamethasone", "Dexamethasone 6 mg/m2/day PO in 2 doses for 28 days"),
    ("co-trimoxazole", "Co-trimoxazole 450 mg PO twice daily Sat/Sun (PJP prophylaxis)"),
    ("aciclovir", "Aciclovir 400 mg PO twice daily (HSV prophylaxis)"),
    ("fluconazole", "Fluconazole 6 mg/kg PO once daily (induction prophylaxis)"),
)
SIZES = (50, 500, 5_000, 20_000)
CORE_BUDGET = 45  # resources the clinical core may use; the smallest size must exceed it


def medication(name: str) -> Resource:
    """A medication CodeableConcept: the verified ATC code where there is one, else name only."""
    concept: Resource = {"text": name}
    code = ATC_CODES.get(name)
    if code:
        concept["coding"] = [{"system": ATC, "code": code, "display": name}]
    return concept


@dataclass
class SyntheticPatient:
    """One patient: its record (prefetch resources), today's draft orders, the selection."""

    pid: str
    now: datetime
    resources: list[Resource]
    draft_orders: list[Resource]
    selection: str
    encounter_id: str = "enc-today"

    @property
    def size(self) -> int:
        return len(self.resources)

    def by_type(self) -> dict[str, list[Resource]]:
        out: dict[str, list[Resource]] = {}
        for res in self.resources:
            out.setdefault(res["resourceType"], []).append(res)
        return out

    def counts(self) -> dict[str, int]:
        return {k: len(v) for k, v in sorted(self.by_type().items())}


@dataclass
class _Writer:
    pid: str
    now: datetime
    rng: random.Random
    out: list[Resource] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=dict)

    def next_id(self, prefix: str) -> str:
        self.counters[prefix] = self.counters.get(prefix, 0) + 1
        return f"{prefix}-{self.counters[prefix]:05d}"

    def day(self, n: int) -> str:
        return (self.now + timedelta(days=n)).date().isoformat()

    @property
    def subject(self) -> Resource:
        return {"reference": f"Patient/{self.pid}"}

    def add(self, res: Resource) -> None:
        self.out.append(res)

    # ---- resources ---------------------------------------------------------------------
    def patient(self, birth_day: int) -> None:
        self.add({
            "resourceType": "Patient", "id": self.pid,
            "identifier": [{"system": "https://test-ehr.example.org/mrn", "value": f"MRN{sum(map(ord, self.pid)):07d}"}],
            "name": [{"family": "Testpatient", "given": ["Bench"]}],
            "gender": "male", "birthDate": self.day(birth_day),
        })  # fmt: skip

    def condition(self, onset: int) -> None:
        self.add({
            "resourceType": "Condition", "id": self.next_id("cond"),
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "relapse"}]},
            "verificationStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "confirmed"}]},
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-category", "code": "problem-list-item"}]}],
            "code": {"coding": [{"system": SNOMED, "code": "277571004", "display": "B-cell acute lymphoblastic leukemia"}],
                     "text": "B-cell precursor acute lymphoblastic leukaemia, Philadelphia-negative, CD22-positive"},
            "subject": self.subject, "onsetDateTime": self.day(onset), "recordedDate": self.day(onset),
        })  # fmt: skip

    def lab(self, analyte: str, on: int, value: float | None = None) -> None:
        code, display, unit, low, high, mean, sd = LABS[analyte]
        if value is None:
            value = max(self.rng.gauss(mean, sd), low * 0.5)
        places = 2 if value < 10 else 0
        self.add({
            "resourceType": "Observation", "id": self.next_id(f"lab-{analyte}"), "status": "final",
            "category": [{"coding": [{"system": OBS_CATEGORY, "code": "laboratory"}]}],
            "code": {"coding": [{"system": LOINC, "code": code, "display": display}], "text": display.split(" [")[0]},
            "subject": self.subject, "effectiveDateTime": self.day(on), "issued": self.day(on),
            "valueQuantity": {"value": round(value, places), "unit": unit, "system": UCUM, "code": unit},
            "referenceRange": [{"low": {"value": low, "unit": unit, "system": UCUM, "code": unit},
                                "high": {"value": high, "unit": unit, "system": UCUM, "code": unit}}],
        })  # fmt: skip

    def panel(self, on: int, **values: float) -> None:
        for analyte in LABS:
            self.lab(analyte, on, values.get(analyte))

    def vital(self, kind: str, on: int, value: float) -> None:
        code, display, unit = VITALS[kind]
        self.add({
            "resourceType": "Observation", "id": self.next_id(kind), "status": "final",
            "category": [{"coding": [{"system": OBS_CATEGORY, "code": "vital-signs"}]}],
            "code": {"coding": [{"system": LOINC, "code": code, "display": display}], "text": display},
            "subject": self.subject, "effectiveDateTime": self.day(on),
            "valueQuantity": {"value": value, "unit": unit, "system": UCUM, "code": unit},
        })  # fmt: skip

    def ecog(self, on: int, value: int) -> None:
        self.add({
            "resourceType": "Observation", "id": self.next_id("ps"), "status": "final",
            "category": [{"coding": [{"system": OBS_CATEGORY, "code": "survey"}]}],
            "code": {"coding": [{"system": LOINC, "code": "89247-1", "display": "ECOG Performance Status score"}],
                     "text": "ECOG Performance Status score"},
            "subject": self.subject, "effectiveDateTime": self.day(on), "valueInteger": value,
        })  # fmt: skip

    def finding(self, on: int, text: str, value: str) -> None:
        self.add({
            "resourceType": "Observation", "id": self.next_id("finding"), "status": "final",
            "category": [{"coding": [{"system": OBS_CATEGORY, "code": "laboratory"}]}],
            "code": {"text": text}, "subject": self.subject, "effectiveDateTime": self.day(on), "valueString": value,
        })  # fmt: skip

    def procedure(self, on: int, text: str) -> None:
        self.add({
            "resourceType": "Procedure", "id": self.next_id("proc"), "status": "completed",
            "code": {"text": text}, "subject": self.subject, "performedDateTime": self.day(on),
        })  # fmt: skip

    def given(self, name: str, on: int, dose: float, unit: str, route: str, note: str | None = None) -> None:
        res: Resource = {
            "resourceType": "MedicationAdministration", "id": self.next_id("admin"), "status": "completed",
            "medicationCodeableConcept": medication(name), "subject": self.subject,
            "effectiveDateTime": self.day(on),
            "dosage": {"route": {"text": ROUTES[route]}, "dose": {"value": dose, "unit": unit, "system": UCUM, "code": unit}},
        }  # fmt: skip
        if note:
            res["note"] = [{"text": note}]
        self.add(res)

    def prescribed(self, name: str, start: int, end: int | None, text: str, status: str = "completed") -> None:
        bounds = {"start": self.day(start)}
        if end is not None:
            bounds["end"] = self.day(end)
        self.add({
            "resourceType": "MedicationRequest", "id": self.next_id("rx"), "status": status, "intent": "order",
            "medicationCodeableConcept": medication(name), "subject": self.subject,
            "authoredOn": self.day(start), "requester": {"reference": "Practitioner/dr-haem-01"},
            "dosageInstruction": [{"text": text, "route": {"text": "Oral"}, "timing": {"repeat": {"boundsPeriod": bounds}}}],
        })  # fmt: skip

    def attestation(self, on: int) -> None:
        items: list[Resource] = [{"linkId": c, "answer": [{"valueBoolean": True}]} for c in CRITERIA]
        items.append({"linkId": "response-status", "answer": [{"valueCoding": {
            "system": RESPONSE_STATUS, "code": "CR", "display": "Complete remission"}}]})
        items.append({"linkId": "mrd-negative", "answer": [{"valueBoolean": False}]})
        items.append({"linkId": "hsct-planned", "answer": [{"valueBoolean": False}]})
        self.add({
            "resourceType": "QuestionnaireResponse", "id": self.next_id("ino2"), "questionnaire": INO2_QUESTIONNAIRE,
            "status": "completed", "subject": self.subject, "authored": self.day(on),
            "author": {"reference": "Practitioner/dr-haem-01"}, "item": items,
        })  # fmt: skip

    def draft(self, rid: str, name: str, dose: float, unit: str, route: str, text: str, hours_ago: int) -> Resource:
        return {
            "resourceType": "MedicationRequest", "id": rid, "status": "draft", "intent": "order",
            "medicationCodeableConcept": medication(name), "subject": self.subject,
            "encounter": {"reference": "Encounter/enc-today"},
            "authoredOn": (self.now - timedelta(hours=hours_ago)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "requester": {"reference": "Practitioner/dr-haem-01"},
            "dosageInstruction": [{
                "text": text, "route": {"text": ROUTES[route]}, "timing": {"event": [self.day(0)]},
                "doseAndRate": [{"doseQuantity": {"value": dose, "unit": unit, "system": UCUM, "code": unit}}],
            }],
        }  # fmt: skip


def _core(w: _Writer) -> tuple[list[Resource], str]:
    """The case itself (cycle 2 day 1 drafted, in CR, fluconazole active): ~40 resources."""
    w.patient(birth_day=-4200)
    w.condition(onset=-1400)
    w.finding(-60, "Bone marrow immunophenotype", "CD22+ B-cell precursor blasts 31% (relapse)")
    w.prescribed("fluconazole", -40, None, "Fluconazole 200 mg PO once daily (antifungal prophylaxis)", status="active")
    height, weight = 150.0, 40.0
    bsa = round(math.sqrt(height * weight / 3600), 2)
    w.vital("height", -30, height)
    w.vital("weight", -30, weight)
    c1 = -28  # cycle 1 day 1, 28 days ago: days 1, 8, 15 given with premedication
    for offset, mg_m2 in zip((0, 7, 14), (0.8, 0.5, 0.5), strict=True):
        on = c1 + offset
        w.given("loratadine", on, 10, "mg", "PO")
        w.given("paracetamol", on, 500, "mg", "PO")
        w.given("dexamethasone", on, 4, "mg", "IV")
        w.given("inotuzumab ozogamicin", on, round(mg_m2 * bsa, 2), "mg", "IV",
                note=f"{mg_m2} mg/m2 x BSA {bsa} m2, infused over 1 hour")  # fmt: skip
    w.panel(-1, bilirubin=9.0, alt=31.0, ast=29.0, alp=180.0, anc=2.1, plt=164.0)
    w.vital("height", -1, height)
    w.vital("weight", -1, weight)
    w.vital("bsa", -1, bsa)
    w.ecog(-2, 1)
    w.attestation(-3)
    dose = round(0.8 * bsa, 2)
    drafts = [
        w.draft("draft-ino-c2d1", "inotuzumab ozogamicin", dose, "mg", "IV",
                f"Inotuzumab ozogamicin 0.8 mg/m2 ({dose} mg) IV over 1 hour, cycle 2 day 1", 1),
        w.draft("draft-loratadine", "loratadine", 10, "mg", "PO", "Loratadine 10 mg PO 30-60 minutes before inotuzumab", 2),
        w.draft("draft-paracetamol", "paracetamol", 500, "mg", "PO", "Paracetamol 500 mg PO 30-60 minutes before inotuzumab", 2),
    ]  # fmt: skip
    return drafts, "MedicationRequest/draft-ino-c2d1"


def _history(w: _Writer, budget: int) -> None:
    """Exactly ``budget`` more resources of history before the current course (day -45 back)."""
    if budget <= 0:
        return
    n_admin = budget * 20 // 100
    n_rx = budget * 5 // 100
    n_other = budget * 5 // 100
    n_labs = budget - n_admin - n_rx - n_other
    # history spans 1 year for small records up to ~12 years for the largest (denser, too)
    span = int(min(4400, max(365, budget * 0.22)))
    first, last = -45 - span, -45

    def spread(n: int) -> Iterable[int]:
        step = span / max(n, 1)
        return (first + int(i * step) + w.rng.randint(0, 1) for i in range(n))

    panels, rest = divmod(n_labs, len(LABS))
    for on in spread(panels):
        w.panel(min(on, last))
    for i in range(rest):
        w.lab(list(LABS)[i], last - 1)
    for i, on in enumerate(spread(n_admin)):
        agent, dose, unit, route = HISTORY_AGENTS[i % len(HISTORY_AGENTS)]
        w.given(agent, min(on, last), dose, unit, route)
    for i, on in enumerate(spread(n_rx)):
        name, text = HISTORY_REQUESTS[i % len(HISTORY_REQUESTS)]
        w.prescribed(name, min(on, last), min(on + 28, last), text)
    kinds = ("height", "weight", "procedure", "finding")
    for i, on in enumerate(spread(n_other)):
        kind, on = kinds[i % len(kinds)], min(on, last)
        if kind == "height":
            w.vital("height", on, round(120 + 30 * (on - first) / span, 1))
        elif kind == "weight":
            w.vital("weight", on, round(22 + 18 * (on - first) / span, 1))
        elif kind == "procedure":
            w.procedure(on, "Bone marrow aspirate")
        else:
            w.finding(on, "Bone marrow MRD (flow cytometry)", "MRD < 0.01%")


def make_patient(size: int, *, now: datetime | None = None, seed: int = 6) -> SyntheticPatient:
    """A patient whose record holds exactly ``size`` resources (draft orders not counted)."""
    if size < CORE_BUDGET:
        raise ValueError(f"size must be at least {CORE_BUDGET} (the clinical core)")
    now = (now or datetime.now(UTC)).astimezone(UTC)
    w = _Writer(pid=f"bench-{size}", now=now, rng=random.Random(seed * 100_003 + size))
    drafts, selection = _core(w)
    _history(w, size - len(w.out))
    assert len(w.out) == size, (len(w.out), size)
    return SyntheticPatient(w.pid, now, w.out, drafts, selection)


def searchset(resources: Iterable[Resource]) -> Resource:
    entries = [{"fullUrl": f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, r['resourceType'] + '/' + r['id'])}", "resource": r} for r in resources]
    return {"resourceType": "Bundle", "type": "searchset", "total": len(entries), "entry": entries}


def template_type(template: str) -> str:
    """``Observation?patient=…`` -> ``Observation``; ``Patient/{{…}}`` -> ``Patient``."""
    return template.split("?", 1)[0].split("/", 1)[0]


def _code_filter(template: str) -> set[tuple[str, str]] | None:
    """``&code=system|code,…`` of a template as a set, None when it has no code filter."""
    query = template.split("?", 1)[1] if "?" in template else ""
    for part in query.split("&"):
        name, _, value = part.partition("=")
        if name == "code":
            return {tuple(t.split("|", 1)) if "|" in t else ("", t) for t in value.split(",")}  # type: ignore[misc]
    return None


def _matches(res: Resource, codes: set[tuple[str, str]]) -> bool:
    concept = res.get("code") or res.get("medicationCodeableConcept") or {}
    return any((c.get("system", ""), c.get("code", "")) in codes or ("", c.get("code", "")) in codes
               for c in concept.get("coding") or ())  # fmt: skip


def prefetch_for(patient: SyntheticPatient, templates: Mapping[str, str]) -> Resource:
    """What a CDS client sends for the service's prefetch templates: the Patient for the
    read, a searchset Bundle (possibly empty) for each search, code filters applied."""
    by_type = patient.by_type()
    out: Resource = {}
    for key, template in templates.items():
        rtype = template_type(template)
        if rtype == "Patient":
            out[key] = by_type["Patient"][0]
            continue
        found = by_type.get(rtype, [])
        codes = _code_filter(template)
        if codes is not None:
            found = [r for r in found if _matches(r, codes)]
        out[key] = searchset(found)
    return out


def hook_request(
    patient: SyntheticPatient,
    hook: str,
    templates: Mapping[str, str] | None,
    *,
    fhir_server: str | None = None,
) -> Resource:
    """The CDS Hooks request an EHR sends (``templates`` None: no prefetch at all)."""
    context: Resource = {
        "userId": "Practitioner/dr-haem-01",
        "patientId": patient.pid,
        "encounterId": patient.encounter_id,
    }
    if hook == "order-select":
        context["selections"] = [patient.selection]
    context["draftOrders"] = {
        "resourceType": "Bundle", "type": "collection", "entry": [{"resource": o} for o in patient.draft_orders],
    }  # fmt: skip
    body: Resource = {"hook": hook, "hookInstance": str(uuid.uuid4())}
    if fhir_server:
        body["fhirServer"] = fhir_server
    body["context"] = context
    if templates is not None:
        body["prefetch"] = prefetch_for(patient, templates)
    return body


def irrelevant_request(patient: SyntheticPatient, templates: Mapping[str, str] | None) -> Resource:
    """An order-select for an order no rule is about, on the same record: the session drafts
    only the premedication (no inotuzumab) and the prescriber picks paracetamol. In an EHR,
    order-select fires for every medication picked; most are like this one."""
    body = hook_request(patient, "order-select", templates)
    keep = [o for o in patient.draft_orders if o["id"] in ("draft-paracetamol", "draft-loratadine")]
    body["context"]["draftOrders"]["entry"] = [{"resource": o} for o in keep]
    body["context"]["selections"] = ["MedicationRequest/draft-paracetamol"]
    return body
