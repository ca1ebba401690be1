"""Regimens are read from their PlanDefinitions: cycle lengths and mg/m² are knowledge.

The expected numbers are the sources': NZ regimen entry "Cycle 1 - 21 days" (extendable "to
28 days"), "Cycles 2 to 3 - 28 days", inotuzumab "0.8 mg/m²" day 1 and "0.5 mg/m²" days 8
and 15; clinical.md §1.5: later cycles "28 days", in CR/CRi 0.5 mg/m² on days 1, 8 and 15.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from _rules_harness import (
    bsa,
    ctx,
    cycle_history,
    draft,
    form,
    given,
    height,
    record,
    regimen_resources,
    regimens_from,
    shipped_regimens,
    weight,
)
from fixtures.engine import kit

from cds_service.engine import Engine, iter_rule_problems
from cds_service.errors import KnowledgeError
from cds_service.features._body import bsa_dose
from cds_service.features._course import cycle
from cds_service.knowledge import KnowledgeBase, RegimenSchedule, load_knowledge, regimen_schedule

NOT_IN_CR = "https://sact-cds.org/fhir/PlanDefinition/InotuzumabPaedRrBallNotInCr"
CR_CRI = "https://sact-cds.org/fhir/PlanDefinition/InotuzumabPaedRrBallCrCri"
AD_08 = "https://sact-cds.org/fhir/ActivityDefinition/InotuzumabOzogamicin08MgM2"
MEASURED = (bsa(value=1.0), height(), weight())


def shipped(url: str) -> RegimenSchedule:
    return shipped_regimens()[url]


def edited(change: Callable[[dict[str, dict[str, Any]]], Any]) -> dict[str, RegimenSchedule]:
    resources = regimen_resources()
    change(resources)
    return regimens_from(resources)


def cycle_action(resources: dict[str, dict[str, Any]], action_id: str, url: str = NOT_IN_CR) -> dict[str, Any]:
    return next(a for a in resources[url]["action"] if a.get("id") == action_id)


# -- the shipped regimens --------------------------------------------------------------------


def test_cycle_1_lasts_21_days_extendable_to_28_and_cycles_2_to_3_last_28() -> None:
    r = shipped(NOT_IN_CR)
    assert [(c.first, c.last) for c in r.cycles] == [(1, 1), (2, 3)]
    assert (r.length_days(1), r.max_length_days(1)) == (21, 28)
    assert r.length_days(2) == r.length_days(3) == 28 and r.max_length_days(2) is None


def test_cycles_past_the_last_definition_take_it_so_cycle_5_is_28_days() -> None:
    r = shipped(NOT_IN_CR)
    assert r.cycle(5) is r.cycles[-1] and r.length_days(5) == 28 and r.length_days(6) == 28
    with pytest.raises(ValueError):
        r.cycle(0)


def test_not_in_cr_doses_are_0_8_on_day_1_and_0_5_on_days_8_and_15_in_every_cycle() -> None:
    r = shipped(NOT_IN_CR)
    for number in (1, 2, 3, 5):
        assert dict(r.cycle(number).dose_days) == {1: 0.8, 8: 0.5, 15: 0.5}
        assert r.doses_per_cycle(number) == 3


def test_the_cr_cri_regimen_is_0_5_on_days_1_8_15_in_open_ended_28_day_cycles() -> None:
    r = shipped(CR_CRI)
    assert len(r.cycles) == 1 and r.cycles[0].last is None
    assert dict(r.cycle(2).dose_days) == {1: 0.5, 8: 0.5, 15: 0.5}
    assert r.length_days(2) == r.length_days(6) == 28


@pytest.mark.parametrize(
    ("day", "mg_m2"),
    [(1, 0.8), (6, None), (7, 0.5), (8, 0.5), (10, 0.5), (11, None), (12, None), (13, 0.5), (15, 0.5),
     (17, 0.5), (18, None)],
)
def test_a_dose_moved_inside_its_window_counts_as_that_dose_day_and_other_days_are_none(day, mg_m2) -> None:
    # NZ: days 8 and 15 "can be moved +/- 2 days (maintain a minimum of 6 days between doses)",
    # encoded as 6-9 and 12-16 days after day 1 (relatedAction offsetRange).
    assert shipped(NOT_IN_CR).mg_per_m2(1, day) == mg_m2


def test_the_engine_builds_every_regimen_once_from_the_knowledge() -> None:
    engine = Engine(load_knowledge())
    assert set(engine.regimens) == {NOT_IN_CR, CR_CRI}
    assert engine.regimens[NOT_IN_CR] == shipped(NOT_IN_CR)


# -- knowledge drives the features -----------------------------------------------------------


def test_a_regimen_with_a_24_day_cycle_1_changes_the_course() -> None:
    def longer(resources: dict[str, dict[str, Any]]) -> None:
        cycle_action(resources, "cycle-1")["timingTiming"]["repeat"]["duration"] = 24

    regimens = edited(longer)
    first = record(drafts=[draft("ino", mg=0.8)])
    assert cycle(first, ctx()).value["expected_length"] == 21
    assert cycle(first, ctx(regimens=regimens)).value["expected_length"] == 24
    # days 1 and 8 given, the next dose 21 days after day 1: cycle 2 day 1 with a 21-day
    # cycle 1, still cycle 1 (day 22) with a 24-day one
    two_doses = record(given("d1", -21), given("d8", -14), drafts=[draft("ino", mg=0.8)])
    shipped_value = cycle(two_doses, ctx()).value
    longer_value = cycle(two_doses, ctx(regimens=regimens)).value
    assert (shipped_value["number"], shipped_value["day_of_cycle"]) == (2, 1)
    assert (longer_value["number"], longer_value["day_of_cycle"]) == (1, 22)


def test_a_regimen_with_another_day_1_dose_changes_the_dose_checked_against() -> None:
    def day_1_dose(resources: dict[str, dict[str, Any]]) -> None:
        resources[AD_08]["dosage"][0]["doseAndRate"][0]["doseQuantity"]["value"] = 0.9

    rec = record(*MEASURED, drafts=[draft("ino", mg=0.8, mg_m2=0.8)])
    assert bsa_dose(rec, ctx()).value["doses"][0]["regimen_mg_m2"] == 0.8
    assert bsa_dose(rec, ctx(regimens=edited(day_1_dose))).value["doses"][0]["regimen_mg_m2"] == 0.9


def test_without_the_regimen_the_cycle_is_unknown_and_says_why() -> None:
    rec = record(given("d1", -7), drafts=[draft("ino", mg=0.5)])
    fv = cycle(rec, ctx(regimens={}))
    assert fv.status == "unknown" and "InotuzumabPaedRrBallNotInCr is not loaded" in fv.note
    dose = bsa_dose(record(*MEASURED, given("d1", -7), drafts=[draft("ino", mg=0.5)]), ctx(regimens={}))
    assert dose.value["doses"][0]["regimen_mg_m2"] is None
    assert any("not loaded" in p for p in dose.value["problems"])


# -- the regimen dose of each drafted dose (bsa_dose) ----------------------------------------


def regimen_dose(*resources, response: str | None = None, mg: float = 0.8) -> dict[str, Any]:
    extra = (form({"response-status": response}),) if response else ()
    fv = bsa_dose(record(*MEASURED, *resources, *extra, drafts=[draft("ino", mg=mg)]), ctx())
    (dose,) = fv.value["doses"]
    return {**dose, "problems": fv.value["problems"]}


def test_cycle_1_follows_the_not_in_cr_regimen_whatever_the_response() -> None:
    dose = regimen_dose(response="CR")
    assert (dose["regimen_mg_m2"], dose["not_in_cr_mg_m2"], dose["regimen"]) == (0.8, 0.8, "InotuzumabPaedRrBallNotInCr")


@pytest.mark.parametrize(("response", "expected"), [("CR", 0.5), ("CRi", 0.5), ("not-in-CR", 0.8)])
def test_day_1_of_a_later_cycle_follows_the_regimen_for_the_response(response: str, expected: float) -> None:
    dose = regimen_dose(*cycle_history(1, -21), response=response)
    assert (dose["cycle_number"], dose["day_of_cycle"]) == (2, 1)
    assert dose["regimen_mg_m2"] == expected and dose["not_in_cr_mg_m2"] == 0.8


def test_day_1_of_a_later_cycle_without_a_response_is_unknown_and_asks_for_it() -> None:
    dose = regimen_dose(*cycle_history(1, -21))
    assert dose["regimen_mg_m2"] is None
    assert any("document the response" in p for p in dose["problems"])


def test_day_8_of_a_later_cycle_without_a_response_is_0_5_in_either_regimen() -> None:
    dose = regimen_dose(*cycle_history(1, -28), given("c2d1", -7), mg=0.5)
    assert (dose["cycle_number"], dose["day_of_cycle"], dose["regimen_mg_m2"]) == (2, 8, 0.5)
    assert dose["regimen"] is None and dose["problems"] == []


def test_a_dose_on_no_dose_day_has_no_regimen_dose_and_says_so() -> None:
    dose = regimen_dose(given("d1", -11), response="CR", mg=0.5)
    assert (dose["day_of_cycle"], dose["regimen_mg_m2"]) == (12, None)
    assert any("day 12 of cycle 1 is not a dose day" in p for p in dose["problems"])


# -- malformed or unknown regimens are knowledge errors naming artifact and action -----------


def kb_with(resources: dict[str, dict[str, Any]]) -> KnowledgeBase:
    return KnowledgeBase("0.1.0", resources)


@pytest.mark.parametrize(
    ("edit", "action", "words"),
    [
        (lambda r: cycle_action(r, "cycle-1")["timingTiming"]["repeat"].update(durationUnit="wk"), "cycle-1", "unit"),
        (lambda r: cycle_action(r, "cycles-2-3")["timingTiming"]["repeat"].update(duration=27.5), "cycles-2-3",
         "whole number"),
        (lambda r: cycle_action(r, "cycle-1")["timingTiming"]["repeat"].update(durationMax=14), "cycle-1",
         "durationMax"),
        (lambda r: cycle_action(r, "cycles-2-3")["timingTiming"]["repeat"].update(countMax=0), "cycles-2-3", "count"),
        (lambda r: cycle_action(r, "cycle-1")["action"][3].update(definitionCanonical=AD_08 + "Missing|0.1.0"),
         "cycle-1.c1-d1-ino", "does not resolve"),
    ],
)
def test_a_malformed_cycle_is_a_knowledge_error_naming_the_artifact_and_action(edit, action, words) -> None:
    resources = regimen_resources()
    edit(resources)
    with pytest.raises(KnowledgeError) as err:
        regimen_schedule(kb_with(resources), NOT_IN_CR)
    text = str(err.value)
    assert NOT_IN_CR in text and f"action {action}" in text and words in text


def test_an_unknown_or_non_protocol_plan_definition_is_a_knowledge_error() -> None:
    kb = kb_with(regimen_resources())
    with pytest.raises(KnowledgeError, match="no regimen PlanDefinition"):
        regimen_schedule(kb, "https://sact-cds.org/fhir/PlanDefinition/Nothing")
    with pytest.raises(KnowledgeError, match="not a clinical-protocol"):
        regimen_schedule(kb_with(kit.fixture_resources()), kit.SIGN_PD)


def test_the_engine_refuses_and_validate_reports_a_regimen_it_cannot_read() -> None:
    broken = copy.deepcopy(regimen_resources()[CR_CRI])
    broken["action"][0]["timingTiming"]["repeat"]["durationUnit"] = "h"
    resources = {**kit.fixture_resources(), CR_CRI: broken}
    with pytest.raises(KnowledgeError, match="InotuzumabPaedRrBallCrCri"):
        Engine(kit.knowledge(resources), kit.registry())
    problems = list(iter_rule_problems(kit.knowledge(resources), kit.registry()))
    assert any("InotuzumabPaedRrBallCrCri" in p and "cycles-in-cr" in p for p in problems)


def test_no_rule_condition_or_dynamic_value_writes_a_dose_per_m2_of_its_own() -> None:
    """The mg/m² come from the regimens (``regimen_mg_m2``, ``not_in_cr_mg_m2``); card
    descriptions may still quote the source's wording."""
    rules = Path(__file__).resolve().parents[1] / "plan_definitions" / "rules"
    for path in rules.glob("PlanDefinition-*.json"):
        for action in json.loads(path.read_text(encoding="utf-8"))["action"]:
            for part in ("condition", "dynamicValue"):
                for item in action.get(part) or ():
                    expression = item["expression"]["expression"]
                    assert not re.search(r"(?<![\d.])0\.[58](?!\d)", expression), (path.name, action["id"], part)
