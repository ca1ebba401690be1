"""Card links that are true, necessary and safe (knowledge 0.2.1).

1. The eligibility card offers "Complete the INO2 form" only while a gap is one the form
   can close: a criterion that is not documented, that the latest completed INO2 form
   leaves unanswered, and that a yes or no there would settle. A criterion not met, or
   unknown because the record or a site policy decides it (Lansky 60, asciminib, an
   impossible birth date), answered on the form or not, is not settled by completing the
   form, and the card then neither links to the form nor tells the clinician to use it
   (HAZ-031). The rule is the link's ``cds-link-condition`` in the PlanDefinition, over
   the ``form_can_settle`` of each criterion, not Python.
2. The link's ``appContext`` names only the inotuzumab drafts (the link's
   ``cds-link-orders``, read with the knowledge's InotuzumabOzogamicin ValueSet), never the
   premedication or another medicine drafted in the same session.
3. The engine mechanism itself: a link condition false / true / undecidable, link orders,
   the private keys never reaching a card, bad declarations refused at load.
4. The short response words on cards ("not in CR/CRi") are CodeSystem designations.

Through prefetch and through the FHIR-server fallback, on whole records and the rule
scenarios; the expected link is worked out here by behaviour, not copied from the
service: each unknown criterion the scenario's latest completed INO2 form leaves
unanswered is answered yes, then no, on that form (or on a new one), the scenario is
replayed, and the criterion counts as one the form settles when the card no longer lists
it as not documented.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from _rules_harness import ctx, form, given, record
from fixtures.engine import kit
from test_ino2_app import launch_through_ehr, rig  # noqa: F401 - the service + SMART EHR of the app tests

from cds_service.engine import Engine
from cds_service.errors import KnowledgeError
from cds_service.features._response import response_status
from cds_service.knowledge import Terminology
from cds_service.knowledge.terms import (
    CARD_EXT_CRITERIA,
    CRITERION_CODES,
    DESIGNATION_CARD_SHORT,
    EXT_CDS_LINK_CONDITION,
    EXT_CDS_LINK_ORDERS,
    EXT_CDS_LINK_TYPE,
    INO2_QUESTIONNAIRE,
    RESPONSE_STATUS_SYSTEM,
)
from cds_service.replay import fhir_server
from cds_service.replay.request import build_request
from cds_service.replay.scenario import load_scenario

REPO = Path(__file__).resolve().parents[1]
SCENARIOS = REPO / "tests" / "scenarios"
CORPUS = sorted(p for p in SCENARIOS.glob("*.json") if not p.name.startswith("_"))
FORM_LINK = "Complete the INO2 form"
LINK_SENTENCE = "on the INO2 form (link on this card)"
FORM_ANSWERS_IT = "the INO2 form already answers it"
WOULD_NOT_SETTLE = "an answer on the INO2 form would not settle it"
GAP = "whole-record-ph-negative-form-item-unanswered-sign.json"  # form leaves one item unanswered
NO_GAP = "safety-d-birth-date-in-the-future-unknown.json"  # unknown, but the form answers it
IMATINIB = "whole-record-ph-positive-imatinib-only.json"  # 3 unmet + 1 unanswered, loratadine drafted
POLICY_ONLY = "whole-record-ph-positive-asciminib-policy-unanswered-sign.json"  # asciminib, Ph item unanswered
POLICY_AND_GAP = "whole-record-ph-positive-asciminib-policy-and-mdt-unanswered-sign.json"  # ... and the MDT item


def _eligibility(cards: list[dict[str, Any]]) -> dict[str, Any] | None:
    return next((c for c in cards if c["source"]["topic"]["code"] == "ino2-eligibility"), None)


def _form_link(card: Mapping[str, Any]) -> dict[str, Any] | None:
    return next((lk for lk in card.get("links") or () if lk.get("label") == FORM_LINK), None)


def _answered_on_latest_form(path: Path) -> set[str]:
    """The criterion codes the scenario's latest completed INO2 form answers yes or no,
    read straight from the scenario's record (not through the service)."""
    resources = load_scenario(path).resolved(datetime.now(UTC)).record
    forms = [r for r in resources
             if r["resourceType"] == "QuestionnaireResponse"
             and str(r.get("questionnaire", "")).split("|")[0] == INO2_QUESTIONNAIRE
             and r.get("status") in ("completed", "amended")]
    if not forms:
        return set()
    latest = max(forms, key=lambda q: datetime.fromisoformat(q["authored"].replace("Z", "+00:00")))
    return {i["linkId"] for i in latest.get("item") or ()
            if i["linkId"] in CRITERION_CODES and any("valueBoolean" in a for a in i.get("answer") or ())}


@pytest.fixture(scope="module")
def eligibility_prefetch(replay_session: Any) -> dict[str, list[dict[str, Any]]]:
    now = datetime.now(UTC)
    return {p.name: replay_session.replay(load_scenario(p), now).cards for p in CORPUS}


@pytest.fixture(scope="module")
def eligibility_fallback(replay_session: Any, eligibility_prefetch: dict[str, list[dict[str, Any]]]
                         ) -> dict[str, list[dict[str, Any]]]:
    """The scenarios with an eligibility card, replayed with no prefetch: the service reads
    the record from the scenario served as a FHIR endpoint."""
    now = datetime.now(UTC)
    out = {}
    for name, cards in eligibility_prefetch.items():
        if _eligibility(cards) is None:
            continue
        scenario = load_scenario(SCENARIOS / name)
        with fhir_server.serve(scenario.resolved(now)) as server:
            result = replay_session.replay(scenario, now, fhir_server=server.url, send_prefetch=False)
        assert result.status != "error", (name, result.error)
        assert _eligibility(result.cards) is not None, name  # the same card as through prefetch
        out[name] = result.cards
    return out


def _answering(scenario: Any, code: str, answer: bool, now: datetime) -> Any:
    """The scenario with ``code`` answered ``answer`` on its latest completed INO2 form (or
    on a new completed form of today when it has none); no expectations."""
    bundle = copy.deepcopy(scenario.bundle)
    forms = [r for r in scenario.resolved(now).record
             if r["resourceType"] == "QuestionnaireResponse" and r.get("status") in ("completed", "amended")
             and str(r.get("questionnaire", "")).split("|")[0] == INO2_QUESTIONNAIRE]
    item = {"linkId": code, "answer": [{"valueBoolean": answer}]}
    if forms:
        latest = max(forms, key=lambda q: datetime.fromisoformat(q["authored"].replace("Z", "+00:00")))["id"]
        qr = next(e["resource"] for e in bundle["entry"]
                  if e["resource"]["resourceType"] == "QuestionnaireResponse" and e["resource"]["id"] == latest)
        qr["item"] = [i for i in qr.get("item") or () if i["linkId"] != code] + [item]
    else:
        pid = next(e["resource"]["id"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")
        bundle["entry"].append({"resource": {
            "resourceType": "QuestionnaireResponse", "id": "answered-by-the-test", "status": "completed",
            "questionnaire": INO2_QUESTIONNAIRE, "subject": {"reference": f"Patient/{pid}"}, "authored": "now",
            "item": [item]}})
    return dataclasses.replace(scenario, bundle=bundle, expect=None)


@pytest.fixture(scope="module")
def settled_by_the_form(replay_session: Any, eligibility_prefetch: dict[str, list[dict[str, Any]]]
                        ) -> dict[str, set[str]]:
    """For each scenario with an eligibility card: the unknown criteria its latest form
    leaves unanswered that a yes or a no on the form takes off the card's not-documented
    list (replayed, not reasoned)."""
    now = datetime.now(UTC)
    out: dict[str, set[str]] = {}
    for name, cards in eligibility_prefetch.items():
        card = _eligibility(cards)
        if card is None:
            continue
        scenario = load_scenario(SCENARIOS / name)
        unknown = {c["code"] for c in card["extension"][CARD_EXT_CRITERIA] if c["status"] == "unknown"}
        out[name] = set()
        for code in sorted(unknown - _answered_on_latest_form(SCENARIOS / name)):
            for answer in (True, False):
                after = _eligibility(replay_session.replay(_answering(scenario, code, answer, now), now).cards)
                still = after is not None and {"code": code, "status": "unknown"} in after["extension"][CARD_EXT_CRITERIA]
                if not still:
                    out[name].add(code)
                    break
    return out


@pytest.fixture(params=["prefetch", "fallback"])
def eligibility_cards(request: pytest.FixtureRequest) -> dict[str, list[dict[str, Any]]]:
    return request.getfixturevalue(f"eligibility_{request.param}")


# ------------------------------------------------------------- 1. the link only where it helps


def test_the_form_link_is_offered_exactly_when_the_form_can_close_a_gap(
        eligibility_cards: dict[str, list[dict[str, Any]]], settled_by_the_form: dict[str, set[str]]) -> None:
    offered = withheld = unanswered_but_not_settled = 0
    for name, cards in eligibility_cards.items():
        card = _eligibility(cards)
        if card is None:
            continue
        unknown = {c["code"] for c in card["extension"][CARD_EXT_CRITERIA] if c["status"] == "unknown"}
        answered = _answered_on_latest_form(SCENARIOS / name)
        resolvable = bool(settled_by_the_form[name])
        link = _form_link(card)
        assert (link is not None) == resolvable, (name, unknown, card.get("links"))
        # the card text agrees with the link: it points to the form only when it links to it
        assert (LINK_SENTENCE in card["detail"]) == resolvable, name
        if unknown and not resolvable:
            assert (FORM_ANSWERS_IT if unknown <= answered else WOULD_NOT_SETTLE) in card["detail"], name
        if not unknown:
            assert "not documented" not in card["detail"].split("**What to do:**")[1].split("\n\n")[0], name
        offered += resolvable
        withheld += not resolvable
        unanswered_but_not_settled += bool(unknown - answered - settled_by_the_form[name])
    # every side occurs: an unmet-only card, an unknown the form answers, a policy question the
    # form leaves unanswered, and a real gap
    assert offered >= 5 and withheld >= 11 and unanswered_but_not_settled >= 2, (offered, withheld)
    print(f"eligibility cards: {offered} with the INO2 form link, {withheld} without")


def test_a_policy_question_the_form_leaves_unanswered_gets_no_link_and_no_pointer_to_the_form(
        eligibility_cards: dict[str, list[dict[str, Any]]]) -> None:
    """HAZ-031 residual closed: asciminib the only later TKI (a site-policy question) and the
    INO2 form silent on the Ph item, nothing else open: answering the item would not settle
    it, so no link and no pointer to the form."""
    assert "ph-status-tki" not in _answered_on_latest_form(SCENARIOS / POLICY_ONLY)
    card = _eligibility(eligibility_cards[POLICY_ONLY])
    assert card is not None and card["indicator"] == "info"
    assert {c["code"]: c["status"] for c in card["extension"][CARD_EXT_CRITERIA]} == {"ph-status-tki": "unknown"}
    assert "links" not in card
    assert "policy decision" in card["detail"]
    assert "link on this card" not in card["detail"] and FORM_ANSWERS_IT not in card["detail"]
    assert card["detail"].split("**What to do:** ")[1].startswith(
        "for each criterion that is not documented, do what its line says: an answer on the INO2 form would not "
        "settle it; the record or a site policy decides.")


def test_a_policy_question_beside_an_unanswered_form_item_links_to_the_form(
        eligibility_cards: dict[str, list[dict[str, Any]]]) -> None:
    """The same record with the MDT item unanswered too: that one the form settles, so the
    card links to the form, and "What to do" names the Ph criterion as one it would not settle."""
    assert not {"ph-status-tki", "mdt-discussion"} & _answered_on_latest_form(SCENARIOS / POLICY_AND_GAP)
    card = _eligibility(eligibility_cards[POLICY_AND_GAP])
    assert card is not None and card["indicator"] == "info"
    assert {c["code"]: c["status"] for c in card["extension"][CARD_EXT_CRITERIA]} == {
        "ph-status-tki": "unknown", "mdt-discussion": "unknown"}
    link = _form_link(card)
    assert link is not None and link["type"] == "smart" and link["url"].endswith("/apps/ino2/launch")
    assert card["detail"].split("**What to do:** ")[1].startswith(
        "document each criterion that is not documented, in the record or on the INO2 form (link on this card); "
        "for **Ph-negative, or Ph-positive after a failed 2nd/3rd-generation TKI**, do what its line says: an "
        "answer on the INO2 form would not settle it.")


@pytest.mark.parametrize(("name", "linked"), [(POLICY_ONLY, False), (POLICY_AND_GAP, True)])
def test_the_policy_question_gets_the_same_link_on_order_select(replay_session: Any, name: str, linked: bool) -> None:
    scenario = load_scenario(SCENARIOS / name)
    scenario = dataclasses.replace(scenario, hook="order-select", expect=None,
                                   selections=("MedicationRequest/draft-ino-c1d1",))
    card = _eligibility(replay_session.replay(scenario, datetime.now(UTC)).cards)
    assert card is not None
    assert (_form_link(card) is not None) is linked
    assert (LINK_SENTENCE in card["detail"]) is linked and WOULD_NOT_SETTLE in card["detail"]


def test_a_whole_record_whose_form_leaves_an_item_unanswered_links_to_the_form(
        eligibility_cards: dict[str, list[dict[str, Any]]]) -> None:
    card = _eligibility(eligibility_cards[GAP])
    assert card is not None and card["indicator"] == "info"
    assert {c["code"]: c["status"] for c in card["extension"][CARD_EXT_CRITERIA]} == {"unlicensed-policy": "unknown"}
    link = _form_link(card)
    assert link is not None and link["type"] == "smart" and link["url"].endswith("/apps/ino2/launch")
    assert "**What to do:** document each criterion that is not documented, in the record or on the INO2 form " \
           "(link on this card)." in card["detail"]


def test_an_unknown_the_form_already_answers_gets_no_link_and_no_pointer_to_the_form(
        eligibility_cards: dict[str, list[dict[str, Any]]]) -> None:
    card = _eligibility(eligibility_cards[NO_GAP])
    assert card is not None
    assert {c["code"]: c["status"] for c in card["extension"][CARD_EXT_CRITERIA]} == {"child": "unknown"}
    assert "links" not in card
    assert "**What to do:** for each criterion that is not documented, do what its line says: the INO2 form " \
           "already answers it, and the record or a site policy decides." in card["detail"]


def test_criteria_not_met_and_nothing_undocumented_get_no_link(
        eligibility_cards: dict[str, list[dict[str, Any]]]) -> None:
    name = "ino2-eligibility-age-18-unmet.json"
    card = _eligibility(eligibility_cards[name])
    assert card is not None and {c["status"] for c in card["extension"][CARD_EXT_CRITERIA]} == {"unmet"}
    assert "links" not in card
    assert card["detail"].split("**What to do:** ")[1].startswith(
        "resolve each criterion that is not met before going on under INO2 (adults: the separate form INO1).\n")


# ------------------------------------------------------------- 2. appContext: the inotuzumab drafts only


@pytest.mark.parametrize("name", [GAP, IMATINIB])
def test_app_context_names_only_the_inotuzumab_drafts_on_order_sign(
        eligibility_cards: dict[str, list[dict[str, Any]]], name: str) -> None:
    scenario = load_scenario(SCENARIOS / name)
    drafts = [e["resource"] for e in scenario.bundle["entry"]
              if e["resource"]["resourceType"] == "MedicationRequest" and e["resource"]["status"] == "draft"]
    assert len(drafts) >= 2  # premedication drafted with inotuzumab in the same session
    ino = [f"MedicationRequest/{d['id']}" for d in drafts
           if "inotuzumab" in json.dumps(d["medicationCodeableConcept"]).lower()]
    link = _form_link(_eligibility(eligibility_cards[name]) or {})
    assert link is not None
    context = json.loads(link["appContext"])
    assert context["draftOrders"] == ino == ["MedicationRequest/draft-ino-c1d1"]
    assert context["hookInstance"]


def test_app_context_on_order_select_names_the_selected_inotuzumab_order_not_other_selections(
        replay_session: Any) -> None:
    scenario = load_scenario(SCENARIOS / "ino2-eligibility-select-adult-unmet.json")
    # the no-form variant of the adult: a gap the form can close, selected with loratadine
    bundle = copy.deepcopy(scenario.bundle)
    bundle["entry"] = [e for e in bundle["entry"] if e["resource"]["resourceType"] != "QuestionnaireResponse"]
    scenario = dataclasses.replace(scenario, bundle=bundle, expect=None,
                                   selections=("MedicationRequest/draft-ino", "MedicationRequest/draft-loratadine"))
    result = replay_session.replay(scenario, datetime.now(UTC))
    link = _form_link(_eligibility(result.cards) or {})
    assert link is not None
    assert json.loads(link["appContext"])["draftOrders"] == ["MedicationRequest/draft-ino"]


# ------------------------------------------------------------- 3. the engine mechanism


def _rule(condition: str | None = None, orders: str | None = None, **doc: Any) -> dict[str, Any]:
    ext: list[dict[str, Any]] = [{"url": EXT_CDS_LINK_TYPE, "valueCode": "smart"}]
    if condition is not None:
        ext.append({"url": EXT_CDS_LINK_CONDITION, "valueExpression": {"language": "text/fhirpath",
                                                                      "expression": condition}})
    if orders is not None:
        ext.append({"url": EXT_CDS_LINK_ORDERS, "valueExpression": {"language": "text/fhirpath", "expression": orders}})
    return {
        "id": "bsa-app", "title": "Body surface area above 1.0 m2", "priority": "routine",
        "code": [{"coding": [{"system": "https://sact-cds.org/fhir/CodeSystem/sact-cds-rule", "code": "bsa-app"}]}],
        "documentation": [{"type": "documentation", "label": "Local policy", "url": "https://example.org/policy"},
                          {"type": "documentation", "label": "Open the dose app", "url": "apps/dose/launch",
                           "extension": ext, **doc}],
        "condition": [{"kind": "applicability", "expression": {"language": "text/fhirpath",
                                                                "expression": "%features.bsa_m2.value > 1.0"}}],
    }


def _card(rule: dict[str, Any], rec: Any = None) -> dict[str, Any]:
    resources = kit.fixture_resources()
    resources[kit.SIGN_PD]["action"].append(rule)
    engine = Engine(kit.knowledge(resources), kit.registry())
    cards = engine.evaluate("TestOrderSign", rec or kit.record([]), kit.NOW).cards
    return next(c for c in cards if c["source"]["topic"]["code"] == "bsa-app")


def test_a_link_condition_false_on_known_data_leaves_the_link_off_and_true_keeps_it() -> None:
    assert "links" not in _card(_rule("%features.bsa_m2.value > 1.5"))  # BSA 1.2
    (link,) = _card(_rule("%features.bsa_m2.value > 1.1"))["links"]
    assert link == {"label": "Open the dose app", "url": "apps/dose/launch", "type": "smart"}


def test_a_link_condition_that_cannot_be_answered_keeps_the_link_and_says_so() -> None:
    card = _card(_rule("(%features.bsa_m2.value | 2.0) > 1"))  # a comparison of two values raises
    assert [lk["label"] for lk in card["links"]] == ["Open the dose app"]
    assert "could not be checked" in card["detail"]


def test_link_orders_become_the_app_context_and_no_private_key_reaches_the_card() -> None:
    drafts = [kit.draft("d-ino", "inotuzumab ozogamicin 1 mg"), kit.draft("d-lor", "loratadine 10 mg")]
    card = _card(_rule(orders="%draftOrders.where(id = 'd-ino').select('MedicationRequest/' + id)"),
                 kit.record(drafts))
    (link,) = card["links"]
    assert json.loads(link["appContext"]) == {"draftOrders": ["MedicationRequest/d-ino"]}
    assert not [k for k in card["extension"] if k.startswith("org.sact-cds.link.")]
    # orders that come out empty name no order (never the session's other drafts)
    (link,) = _card(_rule(orders="%draftOrders.where(id = 'none').id"), kit.record(drafts))["links"]
    assert json.loads(link["appContext"]) == {"draftOrders": []}


def test_bad_link_declarations_are_refused_at_load() -> None:
    bad_first = _rule()
    bad_first["documentation"][0]["extension"] = [{"url": EXT_CDS_LINK_CONDITION, "valueExpression": {
        "language": "text/fhirpath", "expression": "true"}}]
    no_expression = _rule()
    no_expression["documentation"][1]["extension"].append({"url": EXT_CDS_LINK_ORDERS, "valueString": "x"})
    private = _rule()
    private["dynamicValue"] = [{"path": "card.extension.org.sact-cds.link.1.offered",
                                "expression": {"language": "text/fhirpath", "expression": "true"}}]
    for rule, words in ((bad_first, "documentation[0] is the card's source"), (no_expression, "valueExpression"),
                        (private, "is not supported")):
        resources = kit.fixture_resources()
        resources[kit.SIGN_PD]["action"].append(rule)
        with pytest.raises(KnowledgeError, match=words.replace("[", r"\[").replace("]", r"\]")):
            Engine(kit.knowledge(resources), kit.registry())


def test_the_api_adds_the_hook_instance_and_never_lists_undeclared_orders() -> None:
    from cds_service.apps.links import complete_smart_links

    request = {"hookInstance": "h-1", "context": {"draftOrders": {"resourceType": "Bundle", "entry": [
        {"resource": {"resourceType": "MedicationRequest", "id": "other"}}]}}}
    declared = {"links": [{"label": "a", "url": "apps/x", "type": "smart", "appContext": '{"draftOrders":["MR/1"]}'}]}
    undeclared = {"links": [{"label": "b", "url": "apps/y", "type": "smart"}]}
    complete_smart_links([declared, undeclared], "https://cds.example.org/base/", request)
    assert declared["links"][0]["url"] == "https://cds.example.org/base/apps/x"
    assert json.loads(declared["links"][0]["appContext"]) == {"hookInstance": "h-1", "draftOrders": ["MR/1"]}
    assert json.loads(undeclared["links"][0]["appContext"]) == {"hookInstance": "h-1"}


# ------------------------------------------------------------- 4. response words from the CodeSystem


def _terminology_with(short: str) -> Terminology:
    files = [*(REPO / "plan_definitions" / "terminology").glob("*.json"), *(REPO / "fhir_profiles").glob("CodeSystem-*.json")]
    resources = [json.loads(f.read_text(encoding="utf-8")) for f in files]
    for res in resources:
        if res.get("url") == RESPONSE_STATUS_SYSTEM:
            for concept in res["concept"]:
                if concept["code"] == "not-in-CR":
                    concept["designation"][0]["value"] = short
    return Terminology.from_resources(resources)


def test_response_words_on_cards_are_the_code_systems_card_short_designations() -> None:
    shipped = ctx().terminology
    assert {c: shipped.designation(RESPONSE_STATUS_SYSTEM, c, DESIGNATION_CARD_SHORT)
            for c in ("CR", "CRi", "not-in-CR")} == {"CR": "CR", "CRi": "CRi", "not-in-CR": "not in CR/CRi"}
    rec = record(given("d1", -25), form({"response-status": "not-in-CR"}))
    assert response_status(rec, ctx()).evidence[0].display.startswith("Response to treatment not in CR/CRi, from")
    renamed = dataclasses.replace(ctx(), terminology=_terminology_with("without remission"))
    assert response_status(rec, renamed).evidence[0].display.startswith("Response to treatment without remission, from")


def test_a_status_that_is_no_concept_of_the_code_system_is_shown_as_it_is() -> None:
    assert ctx().terminology.designation(RESPONSE_STATUS_SYSTEM, "CR/CRi", DESIGNATION_CARD_SHORT) is None


# ------------------------------------------------------------- 2b. the app receives only that order


def test_the_form_app_opened_from_an_order_sign_card_names_only_the_inotuzumab_order(rig: Any) -> None:  # noqa: F811
    """The whole record without its INO2 form, signed with its three premedication drafts,
    record read through the FHIR-server fallback; the EHR launches the app from the card's
    link and the form says which order it was opened from: the inotuzumab order alone."""
    signed = dataclasses.replace(rig.resolved, scenario=dataclasses.replace(rig.resolved.scenario, hook="order-sign"),
                                 selections=tuple(f"MedicationRequest/{d['id']}" for d in rig.resolved.draft_orders))
    assert len(signed.draft_orders) == 4
    body = build_request(signed, None, fhir_server=rig.ehr.url).body
    response = httpx.post(f"{rig.service}/cds-services/SactOrderSign", json=body, timeout=30)
    assert response.status_code == 200, response.text
    card = _eligibility(response.json()["cards"])
    link = _form_link(card or {})
    assert link is not None
    assert json.loads(link["appContext"]) == {"hookInstance": body["hookInstance"],
                                              "draftOrders": ["MedicationRequest/draft-ino-c1d1"]}
    with httpx.Client(timeout=30) as client:
        launch_through_ehr(client, rig, link)
        page = client.get(f"{rig.service}/apps/ino2/form").text
    # one order (the inotuzumab draft), named in words: the EHR's FHIR server does not hold drafts
    assert "Opened from the order check of the inotuzumab order being checked." in page
    assert "draft-ino" not in page
    assert "premed" not in page.split("Opened from", 1)[1].split("</p>", 1)[0]
