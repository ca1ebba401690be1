"""Generate the per-rule replay scenarios ``tests/scenarios/<rule>-<case>.json`` (issue 3).

    python tests/scenarios/_make_rule_scenarios.py          # rewrite the files
    python tests/scenarios/_make_rule_scenarios.py --check  # exit 1 if a file is stale

Each rule gets scenarios that fire, that do not fire, and that lack the data the rule
needs, plus its thresholds at their boundaries. Every record is a child with relapsed
B-ALL built from one baseline (:class:`Case`): birth date, the B-ALL Condition, ECOG,
liver tests and counts with reference ranges, a recorded BSA with height and weight,
the INO2 attestation form, inotuzumab MedicationAdministrations and today's draft orders
(doses in mg, with the calculated mg/m²). Each scenario changes only what it tests.

Dates are relative tokens only (``now-21d``, ``today``; architecture.md §8), so the files
never go stale. Codes: the verified ones of shared/reference/clinical.md §2. The expected
cards are reasoned from the rule PlanDefinitions (plan_definitions/rules/), not copied from
the tool's output.
"""

from __future__ import annotations

import copy
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cds_service.knowledge.terms import ATC, LOINC, NCIT, SNOMED, UCUM
from cds_service.knowledge.terms import CRITERION_CODES as CRITERIA
from cds_service.knowledge.terms import INO2_QUESTIONNAIRE as FORM
from cds_service.knowledge.terms import RESPONSE_STATUS_SYSTEM as RESPONSE_SYSTEM

HERE = Path(__file__).resolve().parent
ATC_CODES = {
    "inotuzumab ozogamicin": "L01FB01", "fluconazole": "J02AC01", "posaconazole": "J02AC04",
    "miconazole": "J02AB01", "imatinib": "L01EA01", "dasatinib": "L01EA02", "asciminib": "L01EA06",
    "loratadine": "R06AX13", "paracetamol": "N02BE01", "dexamethasone": "H02AB02",
}
PT = "pt-1"


def med(name: str) -> dict[str, Any]:
    code = ATC_CODES.get(name)
    out: dict[str, Any] = {"text": name}
    if code:
        out["coding"] = [{"system": ATC, "code": code, "display": name}]
    return out


def lab(rid: str, loinc: str, display: str, value: float | None, unit: str, when: str,
        high: float | None = None, low: float | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "resourceType": "Observation", "id": rid, "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                  "code": "laboratory"}]}],
        "code": {"coding": [{"system": LOINC, "code": loinc, "display": display}], "text": display},
        "subject": {"reference": f"Patient/{PT}"}, "effectiveDateTime": when,
    }
    if value is not None:
        out["valueQuantity"] = {"value": value, "unit": unit, "system": UCUM, "code": unit}
    if high is not None:
        rng: dict[str, Any] = {"high": {"value": high, "unit": unit, "system": UCUM, "code": unit}}
        if low is not None:
            rng["low"] = {"value": low, "unit": unit, "system": UCUM, "code": unit}
        out["referenceRange"] = [rng]
    return out


def vital(rid: str, loinc: str, display: str, value: float, unit: str, when: str) -> dict[str, Any]:
    out = lab(rid, loinc, display, value, unit, when)
    out["category"][0]["coding"][0]["code"] = "vital-signs"
    return out


def condition(rid: str, text: str, snomed: str | None = None, clinical: str = "active",
              onset: str = "today-400d") -> dict[str, Any]:
    code: dict[str, Any] = {"text": text}
    if snomed:
        code["coding"] = [{"system": SNOMED, "code": snomed, "display": text}]
    return {"resourceType": "Condition", "id": rid,
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                           "code": clinical}]},
            "verificationStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                                               "code": "confirmed"}]},
            "code": code, "subject": {"reference": f"Patient/{PT}"}, "onsetDateTime": onset}


@dataclass
class Case:
    """One patient record with today's draft orders; every field has a quiet default."""

    birth: str | None = "today-3650d"
    ecog: int | None = 1
    ps_scale: str = "ECOG"
    form: dict[str, Any] | None = field(default_factory=lambda: {c: True for c in CRITERIA})
    response: str | None = "CR"
    mrd_negative: bool | None = True
    hsct_planned: bool | None = False
    #: administrations: list of days ago (one inotuzumab dose each)
    given: list[int] = field(default_factory=lambda: [28, 21, 14])
    undated_dose: bool = False
    liver: dict[str, Any] = field(default_factory=dict)
    liver_day: str = "now-1d"
    counts: dict[str, Any] = field(default_factory=dict)
    bsa: float | None = 1.0
    bsa_day: str = "now-1d"
    height_weight: bool = True
    ino: dict[str, Any] | None = field(default_factory=lambda: {"mg": 0.5, "mg_m2": 0.5, "on": "today"})
    premeds: tuple[str, ...] = ("loratadine", "paracetamol", "dexamethasone")
    extra_drafts: list[dict[str, Any]] = field(default_factory=list)
    extra: list[dict[str, Any]] = field(default_factory=list)

    def resources(self) -> list[dict[str, Any]]:
        pt: dict[str, Any] = {"resourceType": "Patient", "id": PT, "gender": "female",
                              "name": [{"family": "Testpatient", "given": ["Rule"]}]}
        if self.birth:
            pt["birthDate"] = self.birth
        out = [pt, condition("ball", "B-cell acute lymphoblastic leukemia", "277571004", "relapse", "today-900d")]
        if self.ecog is not None:
            code = {"ECOG": (LOINC, "89247-1", "ECOG Performance Status score"),
                    "Karnofsky": (LOINC, "89243-0", "Karnofsky Performance Status score"),
                    "Lansky": (NCIT, "C38144", "Lansky Performance Status")}[self.ps_scale]
            out.append({"resourceType": "Observation", "id": "ps", "status": "final",
                        "code": {"coding": [{"system": code[0], "code": code[1], "display": code[2]}], "text": code[2]},
                        "subject": {"reference": f"Patient/{PT}"}, "effectiveDateTime": "now-3d",
                        "valueInteger": self.ecog})
        liver = {"bilirubin": (8, 21, "umol/L"), "ast": (30, 40, "U/L"), "alt": (25, 40, "U/L"), "alp": (200, 300, "U/L")}
        liver.update(self.liver)
        codes = {"bilirubin": ("14631-6", "Bilirubin.total [Moles/volume] in Serum or Plasma"),
                 "bilirubin-mass": ("1975-2", "Bilirubin.total [Mass/volume] in Serum or Plasma"),
                 "ast": ("1920-8", "Aspartate aminotransferase [Enzymatic activity/volume] in Serum or Plasma"),
                 "alt": ("1742-6", "Alanine aminotransferase [Enzymatic activity/volume] in Serum or Plasma"),
                 "alp": ("6768-6", "Alkaline phosphatase [Enzymatic activity/volume] in Serum or Plasma")}
        for name, spec in liver.items():
            if spec is None:
                continue
            value, high, unit = spec
            key = "bilirubin-mass" if name == "bilirubin" and unit == "mg/dL" else name
            out.append(lab(f"lab-{name}", *codes[key], value, unit, self.liver_day, high))
        counts = {"anc": (1.8, "now-1d"), "plt": (150, "now-1d"), "anc0": (2.0, "now-40d"), "plt0": (160, "now-40d")}
        counts.update(self.counts)
        for name, spec in counts.items():
            if spec is None:
                continue
            value, when = spec
            loinc, display = (("751-8", "Neutrophils [#/volume] in Blood by Automated count") if name.startswith("anc")
                              else ("777-3", "Platelets [#/volume] in Blood by Automated count"))
            out.append(lab(f"lab-{name}", loinc, display, value, "10*9/L", when))
        if self.bsa is not None:
            out.append(vital("bsa", "8277-6", "Body surface area", self.bsa, "m2", self.bsa_day))
        if self.height_weight:
            out.append(vital("height", "8302-2", "Body height", 110, "cm", self.bsa_day))
            out.append(vital("weight", "29463-7", "Body weight", 32.7, "kg", self.bsa_day))
        if self.form is not None:
            items = [{"linkId": k, "answer": [{"valueBoolean": v}]} for k, v in self.form.items()]
            if self.response:
                items.append({"linkId": "response-status",
                              "answer": [{"valueCoding": {"system": RESPONSE_SYSTEM, "code": self.response}}]})
            for link, value in (("mrd-negative", self.mrd_negative), ("hsct-planned", self.hsct_planned)):
                if value is not None:
                    items.append({"linkId": link, "answer": [{"valueBoolean": value}]})
            out.append({"resourceType": "QuestionnaireResponse", "id": "ino2-form", "status": "completed",
                        "questionnaire": f"{FORM}|0.2.0", "subject": {"reference": f"Patient/{PT}"},
                        "authored": "now-2d", "item": items})
        for i, days in enumerate(sorted(self.given, reverse=True), 1):
            out.append({"resourceType": "MedicationAdministration", "id": f"ino-given-{i}", "status": "completed",
                        "medicationCodeableConcept": med("inotuzumab ozogamicin"),
                        "subject": {"reference": f"Patient/{PT}"}, "effectiveDateTime": f"now-{days}d"})
        if self.undated_dose:
            out.append({"resourceType": "MedicationAdministration", "id": "ino-given-undated", "status": "completed",
                        "medicationCodeableConcept": med("inotuzumab ozogamicin"),
                        "subject": {"reference": f"Patient/{PT}"}})
        out += copy.deepcopy(self.extra)
        if self.ino is not None:
            out.append(ino_draft("draft-ino", **self.ino))
        for name in self.premeds:
            out.append(draft(f"draft-{name}", name))
        out += copy.deepcopy(self.extra_drafts)
        return out


def ino_draft(rid: str, mg: float | None = None, mg_m2: float | None = None, on: str | None = "today") -> dict:
    order = draft(rid, "inotuzumab ozogamicin")
    rates = []
    if mg_m2 is not None:
        rates.append({"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/dose-rate-type",
                                           "code": "calculated"}]},
                      "doseQuantity": {"value": mg_m2, "unit": "mg/m2", "system": UCUM, "code": "mg/m2"}})
    if mg is not None:
        rates.append({"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/dose-rate-type",
                                           "code": "ordered"}]},
                      "doseQuantity": {"value": mg, "unit": "mg", "system": UCUM, "code": "mg"}})
    dosage: dict[str, Any] = {"route": {"text": "intravenous"}}
    if on:
        dosage["timing"] = {"event": [on]}
    if rates:
        dosage["doseAndRate"] = rates
    order["dosageInstruction"] = [dosage]
    return order


def draft(rid: str, name: str, route: str | None = None, on: str | None = "today") -> dict[str, Any]:
    dosage: dict[str, Any] = {}
    if route:
        dosage["route"] = {"text": route}
    if on:
        dosage["timing"] = {"event": [on]}
    return {"resourceType": "MedicationRequest", "id": rid, "status": "draft", "intent": "order",
            "medicationCodeableConcept": med(name), "subject": {"reference": f"Patient/{PT}"},
            "authoredOn": "now", "dosageInstruction": [dosage]}


def active(rid: str, name: str, kind: str = "MedicationRequest", status: str = "active",
           when: str = "now-5d") -> dict[str, Any]:
    if kind == "MedicationRequest":
        return {"resourceType": kind, "id": rid, "status": status, "intent": "order", "medicationCodeableConcept": med(name),
                "subject": {"reference": f"Patient/{PT}"}, "authoredOn": when}
    return {"resourceType": kind, "id": rid, "status": status, "medicationCodeableConcept": med(name),
            "subject": {"reference": f"Patient/{PT}"}, "effectiveDateTime": when}


# --------------------------------------------------------------------------------------- scenarios

SCENARIOS: dict[str, dict[str, Any]] = {}


def scenario(name: str, title: str, case: Case, *, hook: str = "order-sign", cards=(), absent=(),
             only: bool = False, selections: list[str] | None = None, description: str | None = None) -> None:
    header: dict[str, Any] = {"title": title}
    if description:
        header["description"] = description
    header["hook"] = hook
    if selections:
        header["selections"] = selections
    expect: dict[str, Any] = {}
    if cards or only:
        expect["cards"] = list(cards)
    if absent:
        expect["absent"] = list(absent)
    if only:
        expect["only"] = True
    header["expect"] = expect
    bundle = {"resourceType": "Bundle", "type": "collection",
              "entry": [{"fullUrl": f"urn:uuid:{r['resourceType']}-{r['id']}", "resource": r} for r in case.resources()]}
    SCENARIOS[name] = {"scenario": header, "bundle": bundle}


def card(rule: str, indicator: str | None = None, contains=(), suggestions=(), criteria=None, links=None) -> dict:
    out: dict[str, Any] = {"rule": rule}
    if indicator:
        out["indicator"] = indicator
    if contains:
        out["contains"] = list(contains)
    if criteria:
        out["criteria"] = criteria
    if suggestions:
        out["suggestions"] = list(suggestions)
    if links is not None:
        out["links"] = list(links)
    return out


DU = "data-unavailable"
#: The eligibility card offers its link to the INO2 form only while a criterion is unknown
#: and the latest completed form leaves it unanswered (answering it can settle it); a
#: criterion not met, or unknown although the form answers it, is not settled by the form.
FORM_LINK = ["Complete the INO2 form"]
NO_FORM_LINK: list[str] = []
LINK_ON_CARD = "on the INO2 form (link on this card)"
FORM_ANSWERS_IT = "the INO2 form already answers it"
SELECT_INO = ["MedicationRequest/draft-ino"]
#: cycle 1 given 21, 14, 7 days ago: today is cycle 2 day 1 (liver tests and counts since).
C1_DONE = [21, 14, 7]


def cycles(n: int, last_start: int, days=(1, 8, 15)) -> list[int]:
    """Days-ago of the doses of ``n`` full cycles, the last starting ``last_start`` days ago
    (cycle 1 to 2: 21 days, later 28)."""
    starts = [last_start]
    for k in range(n - 1, 0, -1):
        starts.insert(0, starts[0] + (21 if k == 1 else 28))
    return [s - (d - 1) for s in starts for d in days if s - (d - 1) > 0]


def build() -> None:  # noqa: PLR0915 - one scenario per statement reads best
    quiet = dict(given=C1_DONE, response="CR")
    # ---------------------------------------------------------------- baseline
    scenario("ino2-eligibility-all-met-no-card",
             "A child with every INO2 criterion met and nothing wrong gets no card at all",
             Case(**quiet), cards=[], only=True)

    # ---------------------------------------------------------------- ino2-eligibility
    all_true = {c: True for c in CRITERIA}
    scenario("ino2-eligibility-age-18-unmet",
             "An 18-year-old: the child criterion is unmet and the card points to the adult form INO1",
             Case(**quiet, birth="today-6580d"),
             cards=[card("ino2-eligibility", "warning", ["INO1"], criteria={"child": "unmet"}, links=NO_FORM_LINK)])
    scenario("ino2-eligibility-age-17-met",
             "A 17-year-old meets the child criterion: no eligibility card",
             Case(**quiet, birth="today-6560d"), absent=["ino2-eligibility"])
    scenario("ino2-eligibility-ecog-2-met", "ECOG 2 meets performance status 0-2: no eligibility card",
             Case(**quiet, ecog=2), absent=["ino2-eligibility"])
    scenario("ino2-eligibility-ecog-3-unmet", "ECOG 3 does not meet performance status 0-2 even though attested",
             Case(**quiet, ecog=3),
             cards=[card("ino2-eligibility", "warning", criteria={"performance-status": "unmet"}, links=NO_FORM_LINK)])
    scenario("ino2-eligibility-lansky-70-met", "Lansky 70 counts as performance status 0-2: no eligibility card",
             Case(**quiet, ps_scale="Lansky", ecog=70), absent=["ino2-eligibility"])
    scenario("ino2-eligibility-lansky-60-unknown",
             "Lansky 60: scale mapping uncertain, so performance status is unknown and the card is info",
             Case(**quiet, ps_scale="Lansky", ecog=60),
             cards=[card("ino2-eligibility", "info", ["mapping uncertain", FORM_ANSWERS_IT],
                         criteria={"performance-status": "unknown"}, links=NO_FORM_LINK)])
    scenario("ino2-eligibility-lansky-40-unmet", "Lansky 40 is below performance status 0-2 under every mapping",
             Case(**quiet, ps_scale="Lansky", ecog=40),
             cards=[card("ino2-eligibility", "warning", criteria={"performance-status": "unmet"}, links=NO_FORM_LINK)])
    scenario("ino2-eligibility-imatinib-only-unmet",
             "Ph-positive after imatinib alone: a failed second or third generation TKI is required",
             Case(**quiet, extra=[active("tki-ima", "imatinib", "MedicationStatement", "completed", "now-500d")]),
             cards=[card("ino2-eligibility", "warning", ["second or third generation"],
                         criteria={"ph-status-tki": "unmet"}, links=NO_FORM_LINK)])
    scenario("ino2-eligibility-dasatinib-met", "A failed dasatinib (second generation TKI) meets the Ph criterion",
             Case(**quiet, extra=[active("tki-ima", "imatinib", "MedicationStatement", "completed", "now-700d"),
                                  active("tki-das", "dasatinib", "MedicationStatement", "completed", "now-300d")]),
             absent=["ino2-eligibility"])
    scenario("ino2-eligibility-asciminib-only-unknown",
             "Asciminib as the only TKI beyond imatinib is a policy decision: unknown, info card",
             Case(**quiet, extra=[active("tki-asc", "asciminib", "MedicationStatement", "completed", "now-300d")]),
             cards=[card("ino2-eligibility", "info", ["policy decision", FORM_ANSWERS_IT],
                         criteria={"ph-status-tki": "unknown"}, links=NO_FORM_LINK)])
    no_mdt = dict(all_true)
    del no_mdt["mdt-discussion"]
    scenario("ino2-eligibility-attestation-missing-unknown",
             "An INO2 form without the MDT item leaves that criterion unknown: info card",
             Case(**quiet, form=no_mdt), cards=[card("ino2-eligibility", "info", [LINK_ON_CARD], criteria={"mdt-discussion": "unknown"},
                                                  links=FORM_LINK)])
    scenario("ino2-eligibility-attested-not-met-unmet",
             "A criterion recorded as not met on the INO2 form is unmet",
             Case(**quiet, form={**all_true, "principal-treatment-centre": False}),
             cards=[card("ino2-eligibility", "warning", criteria={"principal-treatment-centre": "unmet"},
                         links=NO_FORM_LINK)])
    scenario("ino2-eligibility-no-form-no-birth-date-unknown",
             "No INO2 form and no birth date: the criteria are unknown, never met",
             Case(**quiet, form=None, birth=None),
             cards=[card("ino2-eligibility", "info", [LINK_ON_CARD],
                         criteria={"child": "unknown", "mdt-discussion": "unknown", "spc-use": "unknown",
                                   "rr-cd22-bcp-all": "unknown"}, links=FORM_LINK)])
    scenario("ino2-eligibility-loratadine-selected-no-card",
             "Selecting only the loratadine order does not show the inotuzumab eligibility card",
             Case(**quiet, birth="today-7000d"), hook="order-select", selections=["MedicationRequest/draft-loratadine"],
             absent=["ino2-eligibility"])
    scenario("ino2-eligibility-select-adult-unmet",
             "On order-select, selecting inotuzumab for an adult shows the eligibility warning",
             Case(**quiet, birth="today-7000d"), hook="order-select", selections=SELECT_INO,
             cards=[card("ino2-eligibility", "warning", criteria={"child": "unmet"}, links=NO_FORM_LINK)])

    # ---------------------------------------------------------------- azole-antifungal
    flu = draft("draft-fluconazole", "fluconazole")
    scenario("azole-inotuzumab-with-fluconazole-draft-warns",
             "Inotuzumab selected with fluconazole drafted: warning, SOS risk, and a suggestion to remove the azole",
             Case(**quiet, extra_drafts=[flu]), hook="order-select", selections=SELECT_INO,
             cards=[card("azole-antifungal", "warning", ["sinusoidal obstruction", "non-azole"], ["Remove"])])
    scenario("azole-inotuzumab-with-active-posaconazole-warns",
             "Inotuzumab signed while posaconazole prophylaxis is active: warning",
             Case(**quiet, extra=[active("rx-posa", "posaconazole")]),
             cards=[card("azole-antifungal", "warning", ["sinusoidal obstruction"])])
    scenario("azole-drafted-56-days-after-last-dose-warns",
             "Fluconazole drafted 56 days after the last inotuzumab dose still warns",
             Case(given=[70, 63, 56], response="CR", ino=None, premeds=(), extra_drafts=[flu]),
             hook="order-select", selections=["MedicationRequest/draft-fluconazole"],
             cards=[card("azole-antifungal", "warning", ["56 days"], ["Remove"])])
    scenario("azole-drafted-57-days-after-last-dose-no-card",
             "Fluconazole drafted 57 days after the last inotuzumab dose does not warn",
             Case(given=[71, 64, 57], response="CR", ino=None, premeds=(), extra_drafts=[flu]),
             hook="order-select", selections=["MedicationRequest/draft-fluconazole"], cards=[], only=True)
    scenario("azole-topical-miconazole-no-card", "A topical miconazole cream is not a systemic azole: no warning",
             Case(**quiet, extra_drafts=[draft("draft-miconazole", "miconazole", route="topical")]),
             absent=["azole-antifungal"])
    scenario("azole-undated-inotuzumab-dose-data-unavailable",
             "Fluconazole selected when an inotuzumab dose has no date: the azole check cannot run and says so",
             Case(given=[], undated_dose=True, response="CR", ino=None, premeds=(), extra_drafts=[flu]),
             hook="order-select", selections=["MedicationRequest/draft-fluconazole"],
             cards=[card(DU, contains=["azole"])], absent=["azole-antifungal"])

    # ---------------------------------------------------------------- hepatotoxicity-vod
    scenario("hepatotoxicity-prior-hsct-warns", "A previous stem cell transplant is a VOD risk factor: warning",
             Case(**quiet, extra=[{"resourceType": "Procedure", "id": "hsct", "status": "completed",
                                   "code": {"coding": [{"system": SNOMED, "code": "58390007",
                                                        "display": "Allogeneic bone marrow transplantation"}]},
                                   "subject": {"reference": f"Patient/{PT}"}, "performedDateTime": "now-600d"}]),
             cards=[card("hepatotoxicity-vod", "warning", ["stem cell transplant", "previous HSCT"])])
    scenario("hepatotoxicity-prior-vod-critical", "Previous hepatic VOD is critical (EU contraindication)",
             Case(**quiet, extra=[condition("vod", "Hepatic veno-occlusive disease", clinical="resolved",
                                            onset="today-600d")]),
             cards=[card("hepatotoxicity-vod", "critical", ["contraindicat"])])
    scenario("hepatotoxicity-active-hepatitis-critical", "Active hepatitis (serious ongoing liver disease) is critical",
             Case(**quiet, extra=[condition("hep", "Active viral hepatitis")]),
             cards=[card("hepatotoxicity-vod", "critical", ["serious ongoing liver disease"])])
    scenario("hepatotoxicity-planned-hsct-warns",
             "HSCT planned: warning with the 2-cycle advice and conditioning without two alkylating agents",
             Case(**quiet, hsct_planned=True),
             cards=[card("hepatotoxicity-vod", "warning", ["2 cycles", "two alkylating agents"])])
    scenario("hepatotoxicity-bilirubin-at-uln-warns", "Total bilirubin exactly at the ULN is a risk factor: warning",
             Case(**quiet, liver={"bilirubin": (21, 21, "umol/L")}),
             cards=[card("hepatotoxicity-vod", "warning", ["bilirubin 1 × ULN"])])
    scenario("hepatotoxicity-bilirubin-below-uln-no-card", "Total bilirubin just below the ULN is no risk factor",
             Case(**quiet, liver={"bilirubin": (20.9, 21, "umol/L")}), absent=["hepatotoxicity-vod"])
    scenario("hepatotoxicity-cycle-3-warns", "A third cycle is a VOD risk factor (risk rises with cycles)",
             Case(given=cycles(2, 28), response="not-in-CR", hsct_planned=False, ino={"mg": 0.8, "mg_m2": 0.8, "on": "today"}),
             cards=[card("hepatotoxicity-vod", "warning", ["Cycle 3"])])
    scenario("hepatotoxicity-no-liver-tests-since-last-dose-warns",
             "No liver tests since the previous dose: listed as a risk factor (tests due before each dose)",
             Case(**quiet, liver_day="now-8d"),
             cards=[card("hepatotoxicity-vod", "warning", ["No liver tests since the previous dose"])])
    scenario("hepatotoxicity-bilirubin-without-range-data-unavailable",
             "A bilirubin with no reference range cannot be judged: data-unavailable, never 'normal'",
             Case(**quiet, liver={"bilirubin": (30, None, "umol/L")}),
             cards=[card(DU, contains=["ULN"])], absent=["hepatotoxicity-vod", "liver-function-hold"])

    # ---------------------------------------------------------------- liver-function-hold
    def liver(bil, ast=(30, 40, "U/L"), alt=(25, 40, "U/L")):
        return Case(**quiet, liver={"bilirubin": bil, "ast": ast, "alt": alt})

    scenario("liver-function-hold-bilirubin-1.51-ast-2.6-critical",
             "Bilirubin 1.51 x ULN and AST 2.6 x ULN: hold the dose (critical)",
             liver((31.71, 21, "umol/L"), ast=(104, 40, "U/L")),
             cards=[card("liver-function-hold", "critical", ["hold", "Gilbert"])])
    scenario("liver-function-hold-bilirubin-1.5-exactly-no-card",
             "Bilirubin exactly 1.5 x ULN with AST 3 x ULN does not trigger the hold",
             liver((31.5, 21, "umol/L"), ast=(120, 40, "U/L")), absent=["liver-function-hold"])
    scenario("liver-function-hold-transaminases-2.5-exactly-no-card",
             "Bilirubin 2 x ULN with AST and ALT exactly 2.5 x ULN does not trigger the hold",
             liver((42, 21, "umol/L"), ast=(100, 40, "U/L"), alt=(100, 40, "U/L")), absent=["liver-function-hold"])
    scenario("liver-function-hold-mass-units-alt-critical",
             "Bilirubin in mg/dL (2 x its own ULN) and ALT 2.51 x ULN: hold (critical)",
             liver((2.4, 1.2, "mg/dL"), alt=(100.4, 40, "U/L")), cards=[card("liver-function-hold", "critical")])
    scenario("liver-function-hold-ast-alone-no-card",
             "AST 5 x ULN with normal bilirubin: the trigger needs both, so no hold card",
             liver((10, 21, "umol/L"), ast=(200, 40, "U/L")), absent=["liver-function-hold"])
    scenario("liver-function-hold-gilbert-still-critical",
             "Gilbert syndrome recorded: the hold still shows, with the exception named and the diagnosis shown",
             Case(**quiet, liver={"bilirubin": (40, 21, "umol/L"), "ast": (110, 40, "U/L")},
                  extra=[condition("gilbert", "Gilbert syndrome")]),
             cards=[card("liver-function-hold", "critical", ["Gilbert syndrome", "exception"])])
    scenario("liver-function-hold-ast-without-range-data-unavailable",
             "Bilirubin 2 x ULN but the AST has no reference range and ALT is normal: cannot decide, says so",
             liver((42, 21, "umol/L"), ast=(120, None, "U/L")),
             cards=[card(DU, contains=["ULN"])], absent=["liver-function-hold"])

    # ---------------------------------------------------------------- blood-counts
    def counts(**kw):
        return Case(**quiet, counts=kw)

    scenario("blood-counts-anc-0.9-new-cycle-warns",
             "Day 1 of cycle 2 with ANC 0.9 after a pre-treatment ANC of 2.0: delay the cycle",
             counts(anc=(0.9, "now-1d")), cards=[card("blood-counts", "warning", ["delay"])])
    scenario("blood-counts-anc-1.0-no-card", "ANC exactly 1.0 x 10^9/L at a new cycle does not warn",
             counts(anc=(1.0, "now-1d")), absent=["blood-counts"])
    scenario("blood-counts-platelets-49-warns", "Platelets 49 after a pre-treatment 160 at a new cycle: warning",
             counts(plt=(49, "now-1d")), cards=[card("blood-counts", "warning")])
    scenario("blood-counts-platelets-50-no-card", "Platelets exactly 50 at a new cycle do not warn",
             counts(plt=(50, "now-1d")), absent=["blood-counts"])
    scenario("blood-counts-low-before-treatment-no-card",
             "ANC already below 1 before treatment: this rule does not apply (no card)",
             counts(anc=(0.7, "now-1d"), anc0=(0.8, "now-40d")), absent=["blood-counts"])
    scenario("blood-counts-day-8-not-interrupted-no-card",
             "A day 8 dose with ANC 0.5 is not held for neutropenia: no blood-count card",
             Case(given=[7], response=None, form={c: True for c in CRITERIA}, counts={"anc": (0.5, "now-1d")}),
             absent=["blood-counts"])
    scenario("blood-counts-no-count-since-last-dose-data-unavailable",
             "No blood count since the last dose at the start of cycle 2: data-unavailable",
             counts(anc=(1.8, "now-8d"), plt=(150, "now-8d")),
             cards=[card(DU, contains=["blood count"])], absent=["blood-counts"])

    # ---------------------------------------------------------------- cycle-limit
    c3 = cycles(2, 28)        # cycles 1-2 given: today cycle 3 day 1
    c4 = cycles(3, 28)
    c7 = cycles(6, 28)
    c6 = cycles(5, 28)
    d1_08 = {"mg": 0.8, "mg_m2": 0.8, "on": "today"}
    scenario("cycle-limit-hsct-third-cycle-cr-mrd-negative-warns",
             "HSCT planned, CR with MRD negativity after 2 cycles: a 3rd cycle warns (2 recommended)",
             Case(given=c3, response="CR", mrd_negative=True, hsct_planned=True),
             cards=[card("cycle-limit", "warning", ["2 cycles"])])
    scenario("cycle-limit-hsct-third-cycle-not-in-cr-no-card",
             "HSCT planned, not in CR after 2 cycles: a 3rd cycle may be considered (no cycle-limit card)",
             Case(given=c3, response="not-in-CR", mrd_negative=False, hsct_planned=True, ino=d1_08),
             absent=["cycle-limit"])
    scenario("cycle-limit-hsct-fourth-cycle-critical", "HSCT planned: a 4th cycle is critical",
             Case(given=c4, response="CR", hsct_planned=True), cards=[card("cycle-limit", "critical")])
    scenario("cycle-limit-no-hsct-sixth-cycle-no-card", "No HSCT: a 6th cycle is within the maximum of 6",
             Case(given=c6, response="CR", hsct_planned=False), absent=["cycle-limit"])
    scenario("cycle-limit-no-hsct-seventh-cycle-critical", "No HSCT: a 7th cycle is beyond the maximum of 6",
             Case(given=c7, response="CR", hsct_planned=False), cards=[card("cycle-limit", "critical", ["6 cycles"])])
    scenario("cycle-limit-fourth-cycle-not-in-cr-critical",
             "Not in CR or CRi after 3 cycles: a 4th cycle is critical (discontinue)",
             Case(given=c4, response="not-in-CR", hsct_planned=False, ino=d1_08),
             cards=[card("cycle-limit", "critical", ["discontinue"])])
    scenario("cycle-limit-fourth-cycle-response-unknown-data-unavailable",
             "A 4th cycle with no response recorded cannot be judged: data-unavailable",
             Case(given=c4, response=None, hsct_planned=False), cards=[card(DU)], absent=["cycle-limit"])

    # ---------------------------------------------------------------- remission-dosing
    # With a BSA the mg can be checked, and 0.8 vs 0.5 mg/m2 (+60 %) is a gross error: the
    # critical bsa-dose card stands for the problem (one card per problem, issue 13). Without
    # a BSA, the stated 0.8 mg/m2 still tells remission-dosing the schedule is wrong.
    scenario("remission-dosing-cr-day1-0.8-warns",
             "In CR at cycle 2 day 1 but ordered 0.8 mg/m2 (not-in-CR schedule), no BSA to check the mg: warning pointing to the CR/CRi regimen",
             Case(given=C1_DONE, response="CR", bsa=None, height_weight=False, ino={"mg": 0.8, "mg_m2": 0.8, "on": "today"}),
             cards=[card("remission-dosing", "warning", ["regimen for CR/CRi achieved", "0.5 mg/m²"])])
    scenario("remission-dosing-cr-day1-0.5-no-card", "In CR at cycle 2 day 1 with 0.5 mg/m2: no remission-dosing card",
             Case(**quiet), absent=["remission-dosing"])
    scenario("remission-dosing-not-in-cr-0.8-no-card", "Not in CR at cycle 2 day 1 with 0.8 mg/m2 is the right schedule",
             Case(given=C1_DONE, response="not-in-CR", ino={"mg": 0.8, "mg_m2": 0.8, "on": "today"}),
             absent=["remission-dosing", "bsa-dose"])
    scenario("remission-dosing-cr-mg-only-0.8-gross-critical",
             "In CR, the order gives only 0.8 mg for a BSA of 1.0 m2 (= 0.8 mg/m2): the critical gross-dose card names the CR/CRi regimen and stands for the remission-dosing problem",
             Case(given=C1_DONE, response="CR", ino={"mg": 0.8, "on": "today"}),
             cards=[card("bsa-dose", "critical", ["for patients in CR/CRi; response CR", "0.5 mg/m² = 0.5 mg"])],
             absent=["remission-dosing"])
    scenario("remission-dosing-cycle-1-no-card", "Cycle 1 day 1 at 0.8 mg/m2 is the same for all patients",
             Case(given=[], response="CR", ino={"mg": 0.8, "mg_m2": 0.8, "on": "today"}),
             absent=["remission-dosing"])
    scenario("remission-dosing-response-unknown-data-unavailable",
             "Cycle 2 day 1 at 0.8 mg/m2 with no response recorded: cannot tell the schedule, data-unavailable",
             Case(given=C1_DONE, response=None, ino={"mg": 0.8, "mg_m2": 0.8, "on": "today"}),
             cards=[card(DU)], absent=["remission-dosing"])

    # ---------------------------------------------------------------- bsa-dose
    d8 = dict(given=[7], response="CR")
    scenario("bsa-dose-5-percent-no-card", "An ordered dose 5.0% above BSA x mg/m2 is within the tolerance",
             Case(**d8, ino={"mg": 0.525, "mg_m2": 0.5, "on": "today"}), absent=["bsa-dose"])
    scenario("bsa-dose-5.1-percent-warns", "An ordered dose 5.1% above BSA x mg/m2 warns with the computed dose",
             Case(**d8, ino={"mg": 0.5255, "mg_m2": 0.5, "on": "today"}),
             cards=[card("bsa-dose", "warning", ["computed dose", "0.5 mg"])])
    # Issue 10 a: beyond the site's gross-error band (bsa_dose_critical_percent, default
    # 15%) the card is critical, states ordered/calculated/ratio and offers the calculated dose.
    scenario("bsa-dose-15-percent-warns", "An ordered dose 15.0% above BSA x mg/m2 is still a warning (not gross)",
             Case(**d8, ino={"mg": 0.575, "mg_m2": 0.5, "on": "today"}),
             cards=[card("bsa-dose", "warning", ["computed dose", "0.5 mg"])])
    scenario("bsa-dose-15.1-percent-critical",
             "An ordered dose 15.1% above BSA x mg/m2 is a gross error: critical, with the calculated dose to sign",
             Case(**d8, ino={"mg": 0.5755, "mg_m2": 0.5, "on": "today"}),
             cards=[card("bsa-dose", "critical", ["0.5755 mg ordered", "1.15 × the calculated 0.5 mg"],
                         ["Replace the drafted inotuzumab dose"])])
    scenario("bsa-dose-schedule-dose-day-8-critical",
             "No mg/m2 on the order: day 8 is 0.5 mg/m2, so 0.6 mg for 1.0 m2 (+20%) is a gross error",
             Case(**d8, ino={"mg": 0.6, "on": "today"}),
             cards=[card("bsa-dose", "critical", ["0.5 mg/m²", "1.2 ×"], ["Replace the drafted inotuzumab dose"])])
    scenario("bsa-dose-schedule-dose-day-8-no-card", "No mg/m2 on the order: 0.5 mg for 1.0 m2 on day 8 is right",
             Case(**d8, ino={"mg": 0.5, "on": "today"}), absent=["bsa-dose"])
    scenario("bsa-dose-bsa-missing-warns", "No recorded BSA: the dose cannot be checked (BSA is never guessed)",
             Case(**d8, bsa=None),
             cards=[card("bsa-dose", "warning", ["BSA not recorded (height 110 cm and weight 32.7 kg are)"])])
    scenario("bsa-dose-bsa-7-days-old-no-card", "Measurements 7 days old are within the site limit",
             Case(**d8, bsa_day="now-7d", liver_day="now-1d"), absent=["bsa-dose"])
    scenario("bsa-dose-bsa-8-days-old-warns", "Measurements 8 days old are beyond the site limit: warning",
             Case(**d8, bsa_day="now-8d"), cards=[card("bsa-dose", "warning", ["8 days old"])])
    scenario("bsa-dose-no-mg-dose-warns", "An inotuzumab order without a dose in mg cannot be checked: warning",
             Case(**d8, ino={"mg_m2": 0.5, "on": "today"}), cards=[card("bsa-dose", "warning", ["no dose in mg"])])
    # The mg/m² a dose is checked against is the regimen's for that cycle and day (NZ entry:
    # cycle 1 and later cycles not in CR/CRi "0.8 mg/m²" day 1, "0.5 mg/m²" days 8 and 15;
    # clinical.md §1.5: later cycles in CR/CRi 0.5 mg/m² days 1, 8 and 15), never the order's own.
    scenario("bsa-dose-day-8-stated-0.8-critical",
             "Day 8 ordered as 0.8 mg/m2 x 1.0 m2 = 0.8 mg: the regimen's day-8 dose is 0.5 mg/m2, a gross error",
             Case(**d8, ino={"mg": 0.8, "mg_m2": 0.8, "on": "today"}),
             cards=[card("bsa-dose", "critical", ["0.5 mg/m²", "1.6 × the calculated 0.5 mg"],
                         ["Replace the drafted inotuzumab dose"])], absent=["remission-dosing"],
             description="Safety fix: the order's own mg/m² agreed with its mg, which used to pass silently; "
                         "NZ cycle 1 day 8 is 0.5 mg/m2, so 0.8 mg for 1.0 m2 is 60% above it.")
    scenario("bsa-dose-cr-cycle-2-day-1-0.5-no-card",
             "In CR at cycle 2 day 1, 0.5 mg/m2 x 1.2 m2 = 0.6 mg is the CR/CRi regimen's dose: no bsa-dose card",
             Case(given=C1_DONE, response="CR", bsa=1.2, ino={"mg": 0.6, "mg_m2": 0.5, "on": "today"}),
             absent=["bsa-dose", "remission-dosing"])
    scenario("bsa-dose-not-in-cr-cycle-2-day-1-0.5-critical",
             "Not in CR at cycle 2 day 1, ordered 0.5 mg/m2 x 1.0 m2: the not-in-CR day-1 dose is 0.8 mg/m2, critical",
             Case(given=C1_DONE, response="not-in-CR", ino={"mg": 0.5, "mg_m2": 0.5, "on": "today"}),
             cards=[card("bsa-dose", "critical", ["0.8 mg/m²", "0.62 × the calculated 0.8 mg"],
                         ["Replace the drafted inotuzumab dose"])], absent=["remission-dosing"])
    scenario("bsa-dose-day-10-moved-day-8-dose-no-card",
             "A day-8 dose moved to day 10 (+2 days) is checked as the day-8 dose: 0.5 mg/m2, no card",
             Case(given=[9], response="CR", ino={"mg": 0.5, "mg_m2": 0.5, "on": "today"}), absent=["bsa-dose"])
    scenario("bsa-dose-day-12-unknown",
             "Day 12 is in no dose window of the regimen: the dose per m2 cannot be checked, and says so",
             Case(given=[11], response="CR", ino={"mg": 0.5, "mg_m2": 0.5, "on": "today"}),
             cards=[card("bsa-dose", "warning", ["not a dose day"]), card("dose-schedule", "warning", ["window"])])
    scenario("bsa-dose-cycle-2-day-1-response-unknown-warns",
             "Cycle 2 day 1 with no response recorded: the regimen dose (0.8 or 0.5 mg/m2) is unknown, says so",
             Case(given=C1_DONE, response=None, ino={"mg": 0.8, "mg_m2": 0.8, "on": "today"}),
             cards=[card("bsa-dose", "warning", ["document the response"])])
    scenario("bsa-dose-cycle-2-day-8-response-unknown-no-card",
             "Cycle 2 day 8 with no response recorded: 0.5 mg/m2 in either regimen, so the dose is checked: no card",
             Case(given=[28, 21, 14, 7], response=None, ino={"mg": 0.5, "mg_m2": 0.5, "on": "today"}),
             absent=["bsa-dose"])

    # ---------------------------------------------------------------- dose-schedule
    def on_day(day: int, d8_day: int | None = None):
        """Cycle 2 started 'day-1' days ago; optional day-8 dose on ``d8_day``; the draft is today."""
        start = day - 1
        given = [start + 21, start + 14, start + 7, start]  # cycle 1, then cycle 2 day 1
        if d8_day is not None:
            given.append(day - d8_day)
        return Case(given=given, response="CR")

    scenario("dose-schedule-day-7-no-card", "A day 8 dose given on day 7 (6 days after day 1) is in the window",
             on_day(7), absent=["dose-schedule"])
    scenario("dose-schedule-day-5-warns", "A dose on day 5 is outside day 8 +/- 2: warning",
             on_day(5), cards=[card("dose-schedule", "warning", ["window"])])
    scenario("dose-schedule-day-6-interval-warns",
             "Day 6 is inside day 8 +/- 2 but only 5 days after day 1: the 6-day minimum warns",
             on_day(6), cards=[card("dose-schedule", "warning", ["less than 6 days"])])
    scenario("dose-schedule-day-10-no-card", "A dose on day 10 is inside day 8 +/- 2", on_day(10), absent=["dose-schedule"])
    scenario("dose-schedule-day-11-warns", "A dose on day 11 is outside day 8 +/- 2 and day 15 +/- 2",
             on_day(11), cards=[card("dose-schedule", "warning", ["window"])])
    scenario("dose-schedule-day-13-no-card", "Day 15 dose on day 13, 6 days after the day 8 dose on day 7",
             on_day(13, d8_day=7), absent=["dose-schedule"])
    scenario("dose-schedule-day-17-no-card", "Day 15 dose on day 17 is inside day 15 +/- 2",
             on_day(17, d8_day=8), absent=["dose-schedule"])
    scenario("dose-schedule-day-18-warns", "A dose on day 18 is outside day 15 +/- 2",
             on_day(18, d8_day=8), cards=[card("dose-schedule", "warning", ["window"])])
    scenario("dose-schedule-undated-dose-data-unavailable",
             "An inotuzumab administration without a date: the schedule cannot be checked, data-unavailable",
             Case(given=[7], undated_dose=True, response="CR"), cards=[card(DU)], absent=["dose-schedule"])

    # ---------------------------------------------------------------- premedication
    scenario("premedication-none-ordered-info",
             "Inotuzumab signed without premedication: info card with the three orders to create",
             Case(**quiet, premeds=()),
             cards=[card("premedication", "info", ["children"], ["loratadine", "paracetamol", "dexamethasone"])])
    scenario("premedication-dexamethasone-missing-info", "Only dexamethasone missing: only it is suggested",
             Case(**quiet, premeds=("loratadine", "paracetamol")),
             cards=[card("premedication", "info", ["dexamethasone"], ["dexamethasone"])])
    scenario("premedication-complete-no-card", "All three premedications drafted: no premedication card",
             Case(**quiet), absent=["premedication"])
    scenario("premedication-not-checked-on-order-select",
             "On order-select the session may still be incomplete: no premedication card",
             Case(**quiet, premeds=()), hook="order-select", selections=SELECT_INO, absent=["premedication"])

    # ---------------------------------------------------------------- monotherapy
    scenario("monotherapy-vincristine-drafted-warns", "Vincristine drafted with inotuzumab: monotherapy warning",
             Case(**quiet, extra_drafts=[draft("draft-vincristine", "vincristine")]),
             cards=[card("monotherapy", "warning", ["vincristine"])])
    scenario("monotherapy-active-dasatinib-warns", "An active dasatinib order with inotuzumab: monotherapy warning",
             Case(**quiet, extra=[active("rx-dasatinib", "dasatinib")]), cards=[card("monotherapy", "warning")])
    scenario("monotherapy-premedication-only-no-card", "Premedication is not another anti-cancer agent",
             Case(**quiet), absent=["monotherapy"])
    scenario("monotherapy-vincristine-selected-mid-cycle-warns",
             "Vincristine selected 3 days after an inotuzumab dose (cycle running): warning",
             Case(given=[3], response=None, ino=None, premeds=(),
                  extra_drafts=[draft("draft-vincristine", "vincristine")]),
             hook="order-select", selections=["MedicationRequest/draft-vincristine"],
             cards=[card("monotherapy", "warning")])
    scenario("monotherapy-undated-dose-data-unavailable",
             "Vincristine selected when an inotuzumab dose has no date: cannot tell, data-unavailable",
             Case(given=[], undated_dose=True, ino=None, premeds=(),
                  extra_drafts=[draft("draft-vincristine", "vincristine")]),
             hook="order-select", selections=["MedicationRequest/draft-vincristine"],
             cards=[card(DU)], absent=["monotherapy"])

    # ---------------------------------------------------------------- treatment-break
    scenario("treatment-break-42-days-beyond-no-card",
             "Cycle 2 starting 42 days beyond the 21-day cycle 1 is not more than 6 weeks",
             Case(given=[63, 56, 49], response="CR", liver_day="now-1d"), absent=["treatment-break"])
    scenario("treatment-break-43-days-beyond-warns",
             "Cycle 2 starting 43 days beyond the 21-day cycle 1: treatment break approval warning",
             Case(given=[64, 57, 50], response="CR"),
             cards=[card("treatment-break", "warning", ["treatment break approval"])])
    scenario("treatment-break-after-28-day-cycle-warns",
             "Cycle 3 starting 43 days beyond the 28-day cycle 2: warning",
             Case(given=[92, 85, 78, 71, 64, 57], response="CR"), cards=[card("treatment-break", "warning")])
    scenario("treatment-break-undated-dose-data-unavailable",
             "An undated inotuzumab administration: the break cannot be measured, data-unavailable",
             Case(given=[64, 57, 50], undated_dose=True, response="CR"), cards=[card(DU)], absent=["treatment-break"])

    # ---------------------------------------------------------------- supportive-care
    scenario("supportive-care-cycle-1-day-1-info",
             "Cycle 1 day 1: supportive care info (antiviral, PJP, tumour lysis, non-azole antifungal)",
             Case(given=[], response=None, ino={"mg": 0.8, "mg_m2": 0.8, "on": "today"}),
             cards=[card("supportive-care", "info", ["tumour lysis", "non-azole", "PJP"])])
    scenario("supportive-care-cycle-2-not-in-cr-info", "Cycle 2 day 1 not in CR: supportive care info again",
             Case(given=C1_DONE, response="not-in-CR", ino={"mg": 0.8, "mg_m2": 0.8, "on": "today"}),
             cards=[card("supportive-care", "info")])
    scenario("supportive-care-cycle-2-in-cr-no-card", "Cycle 2 day 1 in CR: no supportive-care card",
             Case(**quiet), absent=["supportive-care"])
    scenario("supportive-care-cycle-1-day-8-no-card", "The day 8 dose of cycle 1 does not repeat the card",
             Case(given=[7], response=None), absent=["supportive-care"])
    scenario("supportive-care-response-unknown-data-unavailable",
             "Cycle 2 day 1 with no response recorded: whether tumour lysis prophylaxis applies is unknown",
             Case(given=C1_DONE, response=None, ino={"mg": 0.8, "mg_m2": 0.8, "on": "today"}),
             cards=[card(DU)], absent=["supportive-care"])

    # ---------------------------------------------------------------- data-unavailable
    scenario("data-unavailable-no-liver-tests-first-dose",
             "First dose with no liver tests at all: VOD card lists it and the hold check reports missing data",
             Case(given=[], response=None, liver={"bilirubin": None, "ast": None, "alt": None, "alp": None},
                  ino={"mg": 0.8, "mg_m2": 0.8, "on": "today"}),
             cards=[card("hepatotoxicity-vod", "warning", ["No liver tests before the first dose"]),
                    card(DU, contains=["liver"])],
             absent=["liver-function-hold"])
    scenario("data-unavailable-undated-dose-names-the-checks",
             "An undated inotuzumab administration: the checks that need the cycle count are reported, not skipped",
             Case(given=[21, 14, 7], undated_dose=True, response="CR"),
             cards=[card(DU, contains=["no date"])])


def render(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    build()
    stale = []
    for name, data in SCENARIOS.items():
        path = HERE / f"{name}.json"
        text = render(data)
        if "--check" in argv:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(path.name)
        else:
            path.write_text(text, encoding="utf-8")
    if stale:
        print("stale scenario files:", ", ".join(stale))
        return 1
    print(f"{len(SCENARIOS)} scenarios {'checked' if '--check' in argv else 'written'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
