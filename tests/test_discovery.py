"""Discovery: every hook of every rule plan, prefetch keyed by content, root-level tokens."""

from __future__ import annotations

import re

import pytest
from fixtures.engine import kit

from cds_service.engine import Engine
from cds_service.errors import KnowledgeError

TOKEN = re.compile(r"\{\{(.*?)\}\}")
ALLOWED_TOKEN = re.compile(
    r"^(context\.[A-Za-z]+|userPractitionerId|userPractitionerRoleId|userPatientId|userRelatedPersonId)$"
)


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine(kit.knowledge(), kit.registry())


def test_every_named_event_trigger_is_a_service_entry_with_the_plan_id(engine: Engine) -> None:
    assert [(s.id, s.hook) for s in engine.services] == [
        ("TestOrderSelect", "order-select"),
        ("TestOrderSign", "order-sign"),
        ("TestOrderSign", "order-select"),
    ]


def test_entries_carry_title_description_and_usage_requirements(engine: Engine) -> None:
    entry = engine.service("TestOrderSelect").as_json()
    assert entry["title"] == "Test rules at order-select"
    assert entry["description"].startswith("Fixture rules for the engine tests")
    assert entry["usageRequirements"] == "Fires when inotuzumab or a supportive-care drug is selected."
    assert "usageRequirements" not in engine.service("TestOrderSign").as_json()
    assert engine.service("TestOrderSign", "order-select").hook == "order-select"
    with pytest.raises(KeyError):
        engine.service("Nope")


def test_prefetch_keys_are_named_for_their_content(engine: Engine) -> None:
    assert engine.service("TestOrderSign").prefetch == {
        "patient": "Patient/{{context.patientId}}",
        "medicationAdministrations": "MedicationAdministration?patient={{context.patientId}}",
        "procedures": "Procedure?patient={{context.patientId}}",
        "observations": "Observation?patient={{context.patientId}}&code=http://loinc.org|1975-2,http://loinc.org|42719-5",
        "conditions": "Condition?patient={{context.patientId}}",
    }
    assert not any(re.fullmatch(r"item\d+", key) for s in engine.services for key in s.prefetch)


def test_code_filters_come_from_enumerable_value_sets_and_merge_per_type(engine: Engine) -> None:
    prefetch = engine.service("TestOrderSelect").prefetch
    assert prefetch["observations"] == (
        "Observation?patient={{context.patientId}}&code="
        "http://loinc.org|8277-6,http://loinc.org|8302-2,http://loinc.org|29463-7,"
        "http://loinc.org|1975-2,http://loinc.org|42719-5"
    )


def test_a_value_set_that_matches_names_gives_no_code_filter(engine: Engine) -> None:
    prefetch = engine.service("TestOrderSelect").prefetch
    assert prefetch["medicationRequests"] == "MedicationRequest?patient={{context.patientId}}"
    assert prefetch["questionnaireResponses"] == "QuestionnaireResponse?patient={{context.patientId}}"


def test_an_unfiltered_requirement_makes_the_whole_type_unfiltered() -> None:
    resources = kit.fixture_resources()
    resources[kit.SELECT_PD]["action"][1]["input"] = [{"type": "Observation"}]
    engine = Engine(kit.knowledge(resources), kit.registry())
    assert engine.service("TestOrderSelect").prefetch["observations"] == "Observation?patient={{context.patientId}}"


def test_prefetch_tokens_are_root_level_context_fields_only(engine: Engine) -> None:
    for service in engine.services:
        for key, template in service.prefetch.items():
            tokens = TOKEN.findall(template)
            assert tokens, key
            for token in tokens:
                assert ALLOWED_TOKEN.match(token), f"{service.id} {key}: {{{{{token}}}}}"


def test_medication_resources_get_no_patient_search(engine: Engine) -> None:
    assert "medications" not in engine.service("TestOrderSign").prefetch


def test_a_rule_plan_without_a_hook_is_refused() -> None:
    resources = kit.fixture_resources()
    for action in resources[kit.SIGN_PD]["action"]:
        action.pop("trigger", None)
    with pytest.raises(KnowledgeError, match="no named-event trigger"):
        Engine(kit.knowledge(resources), kit.registry())


def test_an_action_limited_to_one_hook_runs_only_on_that_hook(engine: Engine) -> None:
    rec = kit.record([kit.draft("d1", "inotuzumab ozogamicin")])
    assert engine.evaluate("TestOrderSign", rec, kit.NOW, hook="order-sign").rule_codes == ["monotherapy", "cycle-limit"]
    assert engine.evaluate("TestOrderSign", rec, kit.NOW, hook="order-select").rule_codes == ["monotherapy"]
    with pytest.raises(ValueError):
        engine.evaluate("TestOrderSelect", rec, kit.NOW, hook="order-sign")
