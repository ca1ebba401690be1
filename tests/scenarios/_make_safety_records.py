"""Generate the whole-record scenarios of the clinical safety fixes (issue 10 point 3):
``tests/scenarios/safety-*.json``.

    python tests/scenarios/_make_safety_records.py          # rewrite the files
    python tests/scenarios/_make_safety_records.py --check  # exit 1 if a file is stale

Each record is the realistic history of ``_make_whole_records.py`` (a child with relapsed
Ph-negative BCP-ALL: frontline chemotherapy, relapse, blinatumomab, years of labs with
reference ranges, growth, ECOG, the INO2 attestation) with the one datum a clinical reviewer
changed to provoke the unsafe behaviour. The expected cards are reasoned from the rule
PlanDefinitions and the site-policy defaults (each in a comment), never copied from the
tool's output. ``tests/test_safety_fixes.py`` replays every file through prefetch and
through the FHIR-server fallback and checks what the expectations cannot express
(suggestion resources, evidence lines, the non-default site policies).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable
from typing import Any

from _make_whole_records import SNOMED, Record, day, render, write_or_check

PREFIX = "safety-"


def child(pid: str, seed: int, *, birth_day: int = -3050, measured: int | None = -1, bsa_recorded: bool = True,
          height: float = 128.0, weight: float = 26.0, response: str = "not-in-CR",
          attested_on: int = -2, panel: bool = True) -> tuple[Record, float]:
    """Girl, 8, Ph-negative BCP-ALL diagnosed ~3 years ago, relapsed 3 months ago and
    refractory to blinatumomab; normal liver tests and counts, ECOG 1, INO2 attested (HSCT
    not planned, so no VOD risk factor from the form). Returns the record and the BSA
    (Mosteller, as the EHR records it: 128 cm, 26 kg -> 0.96 m2)."""
    r = Record(pid, seed=seed)
    r.patient(gender="female", birth_day=birth_day, given="Zoe", family="Testpatient")
    diagnosis = -1130
    r.condition(text="B-cell precursor acute lymphoblastic leukaemia, Philadelphia-negative, CD22-positive",
                onset=diagnosis, status="relapse", note="Bone marrow relapse; refractory to blinatumomab salvage.")
    r.finding(text="Bone marrow immunophenotype", on=diagnosis, value="CD19+ CD22+ CD10+ B-cell precursor blasts 85%")
    r.finding(text="Cytogenetics (BCR-ABL1)", on=diagnosis, value="BCR-ABL1 negative (Philadelphia negative)")
    ended = r.frontline(diagnosis + 2)
    relapse = -95
    r.finding(text="Bone marrow immunophenotype", on=relapse, value="CD22+ B-cell precursor blasts 40%")
    r.prescribed("blinatumomab", relapse + 5, relapse + 32, "Blinatumomab 15 micrograms/m2/day continuous IV infusion",
                 route="IV")
    r.given("blinatumomab", relapse + 5, 15, "ug/d", "IV", until=relapse + 32)
    r.prescribed("co-trimoxazole", diagnosis + 2, ended, "Co-trimoxazole 450 mg PO twice daily Sat/Sun (PJP prophylaxis)")
    r.prescribed("aciclovir", relapse, None, "Aciclovir 400 mg PO twice daily (HSV prophylaxis)", status="active")
    r.lab_history(diagnosis, relapse - 10, 28)
    r.lab_history(relapse, -3, 5, counts_scale=0.7)
    r.growth(diagnosis, -30, 45, height=(118.0, 127.5), weight=(21.5, 25.6))
    if panel:  # yesterday's liver tests and counts (a scenario may draw its own instead)
        r.panel(-1, bilirubin=7.0, alt=28.0, ast=36.0, alp=240.0, anc=1.6, plt=95.0)
    bsa = round((height * weight / 3600) ** 0.5, 2)
    if measured is not None:
        r.vital("height", measured, height)
        r.vital("weight", measured, weight)
        if bsa_recorded:
            r.vital("bsa", measured, bsa)
    r.performance(-3, ecog=1)
    r.attestation(attested_on, answers={}, response=response, mrd_negative=False, hsct_planned=False)
    return r, bsa


def ino_draft(r: Record, rid: str, mg: float, text: str) -> None:
    r.draft(rid, "inotuzumab ozogamicin", on=0, dose=mg, unit="mg", route="IV", text=text, authored_hours_ago=1)


QUIET_C1 = ["ino2-eligibility", "azole-antifungal", "hepatotoxicity-vod", "liver-function-hold", "blood-counts",
            "cycle-limit", "dose-schedule", "monotherapy", "treatment-break", "remission-dosing"]


# ====================================================================== a. dose error magnitude

def gross_overdose_ten_fold() -> tuple[dict[str, Any], Record]:
    """Cycle 1 day 1 signed at 7.68 mg: the decimal point slipped (0.8 mg/m2 x 0.96 m2 = 0.768 mg)."""
    r, bsa = child("sf-gross-10x", 1001)
    ino_draft(r, "draft-ino-c1d1", 7.68, "Inotuzumab ozogamicin 7.68 mg IV over 1 hour, cycle 1 day 1")
    r.premedication_drafts(0)
    header = {
        "title": "Safety: a ten-fold inotuzumab overdose (7.68 mg for 0.77 mg) is critical and offers the calculated dose",
        "description": "Issue 10 a. Realistic record; cycle 1 day 1 signed at 7.68 mg for a BSA of 0.96 m2 recorded yesterday.",
        "hook": "order-sign",
        # bsa-dose: stat -> critical: 7.68 / (0.96 x 0.8 = 0.768) = 10.0, +900 % > 15 % (site
        #   gross-error band); the summary names ordered 7.68 mg, calculated 0.96 x 0.8 = 0.77 mg
        #   and the ratio; the update suggestion replaces the dose (regimen dose and fresh BSA known).
        # supportive-care: info: cycle 1 day 1. Premedication drafted; no HSCT planned, normal
        #   liver tests -> no VOD factor; every INO2 criterion met (age 8, ECOG 1, Ph-negative).
        "expect": {
            "cards": [
                {"rule": "bsa-dose", "indicator": "critical",
                 "contains": ["7.68 mg ordered = 10.0 × the calculated 0.77 mg", "0.96 m² × 0.8 mg/m²"],
                 "suggestions": ["Replace the drafted inotuzumab dose"]},
                {"rule": "supportive-care", "indicator": "info"},
            ],
            "absent": [*QUIET_C1, "premedication", "data-unavailable"],
            "only": True,
        },
    }
    return header, r


def gross_overdose_stale_bsa() -> tuple[dict[str, Any], Record]:
    """The same ten-fold order, but height, weight and BSA were measured 10 days ago."""
    r, _ = child("sf-gross-stale", 1002, measured=-10)
    ino_draft(r, "draft-ino-c1d1", 7.68, "Inotuzumab ozogamicin 7.68 mg IV over 1 hour, cycle 1 day 1")
    r.premedication_drafts(0)
    header = {
        "title": "Safety: with a BSA 10 days old the dose cannot be checked and no replacement dose is offered",
        "description": "Issue 10 a: never propose a dose that cannot be computed safely (no fresh BSA).",
        "hook": "order-sign",
        # bsa-dose (data): warning: height, weight and BSA are 10 days old (site limit 7 days), so
        #   there is no BSA, no calculated dose and no suggestion. supportive-care: cycle 1 day 1.
        "expect": {
            "cards": [
                {"rule": "bsa-dose", "indicator": "warning", "contains": ["10 days old"]},
                {"rule": "supportive-care", "indicator": "info"},
            ],
            "absent": [*QUIET_C1, "premedication", "data-unavailable"],
            "only": True,
        },
    }
    return header, r


# ====================================================================== b. one-click orders for children

def child_without_premedication() -> tuple[dict[str, Any], Record]:
    r, bsa = child("sf-premed-child", 1003)
    ino_draft(r, "draft-ino-c1d1", round(0.8 * bsa, 2), "Inotuzumab ozogamicin 0.77 mg IV over 1 hour, cycle 1 day 1")
    header = {
        "title": "Safety: an 8-year-old signed without premedication is offered premedication orders without adult doses",
        "description": "Issue 10 b. The NZ premedication doses are flat adult doses; no paediatric dose is cited.",
        "hook": "order-sign",
        # premedication: info; aged 8 (< 18, site child limit): the three suggestions create orders
        #   from the dose-free ActivityDefinitions ("prescriber completes the dose").
        # bsa-dose: absent (0.77 mg = 0.96 x 0.8). supportive-care: cycle 1 day 1.
        "expect": {
            "cards": [
                {"rule": "premedication", "indicator": "info",
                 "suggestions": ["loratadine", "paracetamol", "dexamethasone", "prescriber completes the dose"]},
                {"rule": "supportive-care", "indicator": "info"},
            ],
            "absent": [*QUIET_C1, "bsa-dose", "data-unavailable"],
            "only": True,
        },
    }
    return header, r


def adult_without_premedication() -> tuple[dict[str, Any], Record]:
    r, bsa = child("sf-premed-adult", 1004, birth_day=-7000, height=170.0, weight=62.0)
    ino_draft(r, "draft-ino-c1d1", round(0.8 * bsa, 2), f"Inotuzumab ozogamicin {round(0.8 * bsa, 2)} mg IV, cycle 1 day 1")
    header = {
        "title": "Safety: a 19-year-old signed without premedication is offered the NZ flat doses",
        "description": "Issue 10 b, the other side: at or above the site's child age limit the NZ doses are offered.",
        "hook": "order-sign",
        # ino2-eligibility: warning: aged 19 >= 18 -> child unmet (use INO1); every other
        #   criterion is attested, so there is nothing the INO2 form could settle: no link to it.
        # premedication: info with the NZ flat-dose orders (loratadine 10 mg, paracetamol 1000 mg,
        #   dexamethasone 12 mg). bsa-dose: absent (170 cm, 62 kg -> 1.71 m2; 1.37 mg = 1.71 x 0.8).
        "expect": {
            "cards": [
                {"rule": "ino2-eligibility", "indicator": "warning", "criteria": {"child": "unmet"}, "links": []},
                {"rule": "premedication", "indicator": "info",
                 "suggestions": ["loratadine 10 mg", "paracetamol 1000 mg", "dexamethasone 12 mg"]},
                {"rule": "supportive-care", "indicator": "info"},
            ],
            "absent": ["bsa-dose", "liver-function-hold", "data-unavailable"],
            "only": True,
        },
    }
    return header, r


# ====================================================================== c. response status

def coded_remission_newer_form_unanswered() -> tuple[dict[str, Any], Record]:
    """Cycle 1 given 35, 28 and 21 days ago; the marrow 7 days ago shows complete remission
    (coded); the INO2 form was renewed 2 days ago with the response item left blank; cycle 2
    day 1 is signed at the not-in-CR dose 0.8 mg/m2."""
    r, bsa = child("sf-response", 1005, attested_on=-38)
    r.ino_cycle(-35, bsa)
    r.add({"resourceType": "Observation", "id": "marrow-response-c1", "status": "final",
           "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                     "code": "laboratory"}]}],
           "code": {"text": "Bone marrow response assessment"}, "subject": r.subject, "effectiveDateTime": day(-7),
           "valueCodeableConcept": {"coding": [{"system": SNOMED, "code": "103338009", "display": "In full remission"}],
                                    "text": "Complete remission, blasts < 5%"}})
    r.attestation(-2, answers={}, response="CR", mrd_negative=False, hsct_planned=False)
    r.entries[-1]["item"] = [i for i in r.entries[-1]["item"] if i["linkId"] != "response-status"]
    ino_draft(r, "draft-ino-c2d1", round(0.8 * bsa, 2), "Inotuzumab ozogamicin 0.77 mg IV over 1 hour, cycle 2 day 1")
    r.premedication_drafts(0)
    header = {
        "title": "Safety: a remission coded after cycle 1 is not hidden by a newer INO2 form that leaves the response blank",
        "description": "Issue 10 c. The newest form does not answer response-status; the coded remission (7 days ago) "
                       "is the latest answered evidence, so cycle 2 day 1 is checked as in CR.",
        "hook": "order-sign",
        # Response: CR/CRi from the coded remission of 7 days ago (the form of 38 days ago said
        #   not-in-CR, the form of 2 days ago says nothing) -> in CR the day-1 dose is 0.5 mg/m2.
        # bsa-dose: critical: 0.77 mg vs 0.96 x 0.5 = 0.48 mg: +60 % > 15 %; it names the
        #   regimen it followed (for patients in CR/CRi) and the response's source ("recorded
        #   remission"). remission-dosing (in CR, day-1 dose 0.77 / 0.96 = 0.8 mg/m2) is the
        #   same problem: the critical card stands for it (one card per problem, issue 13).
        # supportive-care: absent (later cycle in CR). treatment-break: 35 days after a 21-day
        #   cycle = 14 beyond (< 42). blood-counts: ANC 1.6, platelets 95 (>= 1 and >= 50).
        "expect": {
            "cards": [
                {"rule": "bsa-dose", "indicator": "critical",
                 "contains": ["0.48 mg", "for patients in CR/CRi; response CR/CRi, from a recorded remission"]},
            ],
            "absent": ["remission-dosing", "supportive-care", "treatment-break", "blood-counts", "cycle-limit", "premedication",
                       "liver-function-hold", "data-unavailable"],
        },
    }
    return header, r


# ====================================================================== d. implausible data

def birth_date_in_the_future() -> tuple[dict[str, Any], Record]:
    r, bsa = child("sf-birth-future", 1006, birth_day=3050)
    ino_draft(r, "draft-ino-c1d1", round(0.8 * bsa, 2), "Inotuzumab ozogamicin 0.77 mg IV over 1 hour, cycle 1 day 1")
    r.premedication_drafts(0)
    header = {
        "title": "Safety: a birth date in the future makes the INO2 'child' criterion unknown, not met",
        "description": "Issue 10 d. The birth date was entered 8 years in the future; the form attests 'child'.",
        "hook": "order-sign",
        # ino2-eligibility: info (routine: criteria unknown, none unmet): child unknown ("date of
        #   birth ... is implausible (it is in the future)"); the attestation alone never makes it met. Everything else as for a child of
        #   unknown age: premedication drafted, dose 0.77 = 0.96 x 0.8, supportive-care cycle 1 day 1.
        #   The form already answers 'child' (the record decides): no link to the form, and the
        #   card says the form already answers it.
        "expect": {
            "cards": [
                {"rule": "ino2-eligibility", "indicator": "info", "criteria": {"child": "unknown"},
                 "contains": ["is implausible (it is in the future)", "the INO2 form already answers it"], "links": []},
                {"rule": "supportive-care", "indicator": "info"},
            ],
            "absent": ["bsa-dose", "premedication", "liver-function-hold", "data-unavailable"],
            "only": True,
        },
    }
    return header, r


def negative_bilirubin() -> tuple[dict[str, Any], Record]:
    """Day 15 of cycle 1; yesterday's bilirubin was stored as -4 umol/L (a sign error) while ALT is 130 U/L."""
    r, bsa = child("sf-negative-bili", 1007, attested_on=-20, panel=False)
    r.ino_cycle(-14, bsa, days=(0, 7))
    r.panel(-1, bilirubin=-4.0, alt=130.0, ast=60.0, alp=260.0, anc=1.4, plt=80.0)
    ino_draft(r, "draft-ino-c1d15", round(0.5 * bsa, 2), "Inotuzumab ozogamicin 0.48 mg IV over 1 hour, cycle 1 day 15")
    r.premedication_drafts(0)
    header = {
        "title": "Safety: a negative bilirubin is implausible: the liver hold cannot be ruled out and the card says why",
        "description": "Issue 10 d. Before the fix, -4 umol/L read as 'below 1.5 x ULN' and the hold stayed silent.",
        "hook": "order-sign",
        # liver-function-hold: bilirubin x ULN unknown (implausible), ALT 130/40 = 3.25 > 2.5 ->
        #   the condition has no result -> data-unavailable (warning) naming the implausible datum.
        # hepatotoxicity-vod may fire or not on other factors: not asserted. bsa-dose: 0.48 = 0.96 x 0.5.
        "expect": {
            "cards": [{"rule": "data-unavailable", "indicator": "warning",
                       "contains": ["Total bilirubin -4 umol/L", "is implausible (a negative result)"]}],
            "absent": ["liver-function-hold", "bsa-dose", "premedication", "dose-schedule"],
        },
    }
    return header, r


def height_in_metres() -> tuple[dict[str, Any], Record]:
    """Yesterday's height was typed in metres (1.28) into a cm field; the EHR computed BSA 0.1 m2 from it."""
    r, bsa = child("sf-height-metres", 1008, measured=None)
    r.vital("height", -1, 1.28)
    r.vital("weight", -1, 26.0)
    r.vital("bsa", -1, 0.1)
    ino_draft(r, "draft-ino-c1d1", 0.77, "Inotuzumab ozogamicin 0.77 mg IV over 1 hour, cycle 1 day 1")
    r.premedication_drafts(0)
    header = {
        "title": "Safety: a height of 1.28 cm is implausible: the BSA beside it is not used and no dose is proposed",
        "description": "Issue 10 d. Before the fix the 0.1 m2 BSA was used: the 0.77 mg order looked like 7.7 mg/m2.",
        "hook": "order-sign",
        # bsa-dose (data): warning: "height 1.28 cm is implausible (outside 20-300 cm)"; the BSA of
        #   the same day is not used (it may have been calculated from it) -> no calculated dose,
        #   no critical card and no suggestion. supportive-care: cycle 1 day 1.
        "expect": {
            "cards": [
                {"rule": "bsa-dose", "indicator": "warning", "contains": ["implausible height 1.28 cm recorded", "height 1.28 cm is implausible"]},
                {"rule": "supportive-care", "indicator": "info"},
            ],
            "absent": [*QUIET_C1, "premedication", "data-unavailable"],
            "only": True,
        },
    }
    return header, r


def administration_in_the_future() -> tuple[dict[str, Any], Record]:
    """Cycle 1 day 1 and day 8 given; the day-8 dose was charted with next year's date."""
    r, bsa = child("sf-admin-future", 1009, attested_on=-12)
    r.ino_cycle(-7, bsa, days=(0,))
    r.given("inotuzumab ozogamicin", 365, round(0.5 * bsa, 2), "mg", "IV", note="charted with the wrong year")
    ino_draft(r, "draft-ino-c1d8", round(0.5 * bsa, 2), "Inotuzumab ozogamicin 0.48 mg IV over 1 hour, cycle 1 day 8")
    r.premedication_drafts(0)
    header = {
        "title": "Safety: an inotuzumab dose dated next year is not counted and the cycle is reported unknown",
        "description": "Issue 10 d. A future-dated administration is implausible: the cycle count is not guessed.",
        "hook": "order-sign",
        # The administration dated +365 days is not counted and makes the course unknown, so the
        #   cycle-based checks are data-unavailable, naming the dose "dated in the future".
        "expect": {
            "cards": [{"rule": "data-unavailable", "indicator": "warning", "contains": ["dated in the future"]}],
            "absent": ["cycle-limit", "liver-function-hold", "premedication"],
        },
    }
    return header, r


# ====================================================================== e. Gilbert's syndrome

def gilbert_with_raised_bilirubin() -> tuple[dict[str, Any], Record]:
    """Day 15 of cycle 1; Gilbert's syndrome known; bilirubin 40/21 and ALT 125/40 yesterday."""
    r, bsa = child("sf-gilbert", 1010, attested_on=-20, panel=False)
    r.add({"resourceType": "Condition", "id": "cond-gilbert",
           "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                          "code": "active"}]},
           "verificationStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                                              "code": "confirmed"}]},
           "code": {"text": "Gilbert's syndrome"}, "subject": r.subject, "onsetDateTime": day(-2000)})
    r.ino_cycle(-14, bsa, days=(0, 7))
    r.panel(-1, bilirubin=40.0, alt=125.0, ast=60.0, alp=250.0, anc=1.5, plt=90.0)
    ino_draft(r, "draft-ino-c1d15", round(0.5 * bsa, 2), "Inotuzumab ozogamicin 0.48 mg IV over 1 hour, cycle 1 day 15")
    r.premedication_drafts(0)
    header = {
        "title": "Safety: Gilbert's syndrome recorded: by default the liver hold stays critical and says why",
        "description": "Issue 10 e. Site policy gilbert_haemolysis_exception = hold (default).",
        "hook": "order-sign",
        # liver-function-hold: bilirubin 40/21 = 1.9 x ULN > 1.5 and ALT 125/40 = 3.13 > 2.5; Gilbert's
        #   syndrome active -> default policy 'hold': stays stat -> critical; the summary says
        #   Gilbert's/haemolysis is recorded and the detail that the site keeps the hold.
        # hepatotoxicity-vod: warning: bilirubin >= ULN before the dose.
        "expect": {
            "cards": [
                {"rule": "liver-function-hold", "indicator": "critical",
                 "contains": ["(Gilbert's/haemolysis recorded)", "this site keeps the hold"]},
                {"rule": "hepatotoxicity-vod", "indicator": "warning"},
            ],
            "absent": ["bsa-dose", "premedication", "dose-schedule", "data-unavailable"],
        },
    }
    return header, r


# ====================================================================== f. BSA from height and weight

def height_and_weight_without_bsa() -> tuple[dict[str, Any], Record]:
    """Height and weight measured yesterday, no BSA recorded; the order is the ten-fold slip."""
    r, _ = child("sf-no-bsa", 1011, bsa_recorded=False)
    ino_draft(r, "draft-ino-c1d1", 7.68, "Inotuzumab ozogamicin 7.68 mg IV over 1 hour, cycle 1 day 1")
    r.premedication_drafts(0)
    header = {
        "title": "Safety: BSA not recorded but height and weight are: the card says exactly that",
        "description": "Issue 10 f. Site policy bsa_formula = none (default): no BSA is derived, and the card names "
                       "the height and weight rather than 'measurements missing'.",
        "hook": "order-sign",
        # bsa-dose (data): warning, summary "BSA not recorded (height 128 cm and weight 26 kg are)";
        #   no calculated dose, no suggestion. supportive-care: cycle 1 day 1.
        "expect": {
            "cards": [
                {"rule": "bsa-dose", "indicator": "warning",
                 "contains": ["BSA not recorded (height 128 cm and weight 26 kg are)"]},
                {"rule": "supportive-care", "indicator": "info"},
            ],
            "absent": [*QUIET_C1, "premedication", "data-unavailable"],
            "only": True,
        },
    }
    return header, r


PATIENTS: dict[str, Callable[[], tuple[dict[str, Any], Record]]] = {
    "safety-a-gross-overdose-ten-fold-critical.json": gross_overdose_ten_fold,
    "safety-a-gross-overdose-stale-bsa-no-suggestion.json": gross_overdose_stale_bsa,
    "safety-b-child-premedication-without-dose.json": child_without_premedication,
    "safety-b-adult-premedication-flat-doses.json": adult_without_premedication,
    "safety-c-coded-remission-newer-form-unanswered.json": coded_remission_newer_form_unanswered,
    "safety-d-birth-date-in-the-future-unknown.json": birth_date_in_the_future,
    "safety-d-negative-bilirubin-unknown.json": negative_bilirubin,
    "safety-d-height-in-metres-unknown.json": height_in_metres,
    "safety-d-administration-in-the-future-unknown.json": administration_in_the_future,
    "safety-e-gilbert-hold-by-default.json": gilbert_with_raised_bilirubin,
    "safety-f-height-and-weight-without-bsa.json": height_and_weight_without_bsa,
}


def build() -> dict[str, str]:
    out = {}
    for name, make in PATIENTS.items():
        header, record = make()
        text = render(header, record)
        json.loads(text)
        out[name] = text
    return out


def main(argv: Iterable[str]) -> int:
    return write_or_check(build(), argv, "_make_safety_records.py")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
