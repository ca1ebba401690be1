"""The relevance gate (engine/relevance.py): drafted orders no rule can fire on are answered
without building the record or computing features, with exactly the cards the full
evaluation gives.

The proof is the whole scenario corpus, each record replayed as the service sees it
(HTTP, in-process app, prefetch) through two apps, one with the gate and one without, in
several order sessions per record: the scenario's own, each draft selected alone on
order-select, every draft signed, and the inotuzumab drafts taken out (the common case:
an order no rule is about on a record full of history). Cards must be byte-identical
apart from their uuids; the same holds through the FHIR-server fallback. A deliberately
wrong gate must make the comparison fail (so it can).
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from cds_service.api import create_app
from cds_service.engine import Engine
from cds_service.engine.relevance import OrderGate, derive_gate
from cds_service.features import _valuesets as vs
from cds_service.features import default_registry
from cds_service.knowledge import KnowledgeBase, load_knowledge
from cds_service.replay import fhir_server, run
from cds_service.replay.request import build_request
from cds_service.replay.scenario import ResolvedScenario, load_scenario

SCENARIOS = sorted(p for p in (Path(__file__).parent / "scenarios").glob("*.json") if not p.name.startswith("_"))
NOW = datetime.now(UTC)
SERVICE = {"order-select": "SactOrderSelect", "order-sign": "SactOrderSign"}


def _strip_uuids(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_uuids(v) for k, v in value.items() if k != "uuid"}
    if isinstance(value, list):
        return [_strip_uuids(v) for v in value]
    return value


class Counting:
    """The real engine, counting the hooks its gate answered."""

    def __init__(self, engine: Engine) -> None:
        self.engine, self.screened = engine, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.engine, name)

    def screen(self, *args: Any, **kw: Any) -> Any:
        out = self.engine.screen(*args, **kw)
        self.screened += out is not None
        return out


@pytest.fixture(scope="module")
def engines() -> tuple[Engine, Engine]:
    kb = load_knowledge()
    return Engine(kb), Engine(kb, relevance_gate=False)


def _is_ino(order: dict[str, Any], engine: Engine) -> bool:
    return engine.kb.terminology.matches_medication(vs.INOTUZUMAB, order, None)


def variants(resolved: ResolvedScenario, engine: Engine) -> Iterator[tuple[str, ResolvedScenario]]:
    """Order sessions for one record (see the module docstring)."""
    yield "as given", resolved
    sc = resolved.scenario
    drafts = resolved.draft_orders
    for order in drafts:
        ref = f"{order.get('resourceType')}/{order.get('id')}"
        yield f"select {ref}", dataclasses.replace(
            resolved, scenario=dataclasses.replace(sc, hook="order-select"), selections=(ref,))
    yield "sign all", dataclasses.replace(resolved, scenario=dataclasses.replace(sc, hook="order-sign"))
    others = [o for o in drafts if not _is_ino(o, engine)]
    if len(others) < len(drafts):
        for hook in ("order-select", "order-sign") if others else ("order-sign",):
            yield f"{hook} without inotuzumab", dataclasses.replace(
                resolved, scenario=dataclasses.replace(sc, hook=hook), draft_orders=others,
                selections=tuple(f"{o.get('resourceType')}/{o.get('id')}" for o in others))


async def _cards(client: httpx.AsyncClient, service: str, body: dict[str, Any], now: datetime) -> list[Any]:
    token = run._EVALUATION_TIME.set(now)
    try:
        resp = await client.post(f"http://gate.test/cds-services/{service}", json=body)
    finally:
        run._EVALUATION_TIME.reset(token)
    assert resp.status_code == 200, resp.text[:300]
    return _strip_uuids(resp.json()["cards"])


async def compare(gated: Engine, plain: Engine, paths: list[Path], *, fallback: bool = False) -> tuple[list[str], int, int]:
    """(differences, requests compared, requests the gate answered)."""
    settings = run.replay_settings()
    counting = Counting(gated)
    apps = [create_app(settings, engine=run.ClockedEngine(e)) for e in (counting, plain)]
    templates = {s.id: dict(s.prefetch) for s in plain.services}
    diffs: list[str] = []
    compared = 0
    async with apps[0].router.lifespan_context(apps[0]), apps[1].router.lifespan_context(apps[1]):
        clients = [httpx.AsyncClient(transport=httpx.ASGITransport(app=a), timeout=60) for a in apps]
        try:
            for path in paths:
                resolved = load_scenario(path).resolved(NOW)
                for label, variant in variants(resolved, plain):
                    service = SERVICE[variant.scenario.hook]
                    if fallback:
                        with fhir_server.serve(variant) as server:
                            body = build_request(variant, None, fhir_server=server.url).body
                            got = [await _cards(c, service, body, variant.now) for c in clients]
                    else:
                        body = build_request(variant, templates[service]).body
                        got = [await _cards(c, service, copy.deepcopy(body), variant.now) for c in clients]
                    compared += 1
                    if got[0] != got[1]:
                        diffs.append(f"{path.name} [{label}]: gated {len(got[0])} card(s), full {len(got[1])}")
        finally:
            for c in clients:
                await c.aclose()
    return diffs, compared, counting.screened


def test_cards_are_identical_with_and_without_the_gate_over_the_whole_corpus(engines) -> None:
    gated, plain = engines
    diffs, compared, screened = asyncio.run(compare(gated, plain, SCENARIOS))
    assert diffs == []
    assert len(SCENARIOS) >= 100 and compared > 3 * len(SCENARIOS)
    assert screened > len(SCENARIOS) // 2  # the gate did answer many of them


def test_cards_are_identical_through_the_fhir_server_fallback(engines) -> None:
    gated, plain = engines
    paths = [p for p in SCENARIOS if p.name.startswith(("azole", "monotherapy", "premedication", "data-unavailable"))]
    diffs, compared, screened = asyncio.run(compare(gated, plain, paths, fallback=True))
    assert diffs == []
    assert compared > len(paths) and screened > 0


def test_the_comparison_fails_when_the_gate_wrongly_skips(engines, monkeypatch) -> None:
    """A gate that calls every order irrelevant must be caught by the corpus comparison."""
    gated, plain = engines
    monkeypatch.setattr(OrderGate, "irrelevant", lambda self, drafts, terminology: True)
    paths = [p for p in SCENARIOS if p.name.startswith(("azole", "monotherapy"))]
    diffs, _, _ = asyncio.run(compare(gated, plain, paths))
    assert len(diffs) > 5


def test_the_gate_is_derived_from_the_rules_opening_guards(engines) -> None:
    gated, _ = engines
    for service, hook in (("SactOrderSelect", "order-select"), ("SactOrderSign", "order-sign")):
        gate = gated.gate(service, hook)
        assert gate is not None
        # inotuzumab (12 rules' guard), azoles (azole-antifungal), other SACT and TKIs (monotherapy)
        assert set(gate.valuesets) == {vs.INOTUZUMAB, vs.SYSTEMIC_AZOLES, vs.OTHER_SACT, *vs.TKI_GENERATIONS.values()}
        assert vs.PARACETAMOL not in gate.valuesets


def _with_rule(kb: KnowledgeBase, plan_id: str, condition: str | None) -> KnowledgeBase:
    """The shipped knowledge with one more rule on ``plan_id`` (first condition ``condition``)."""
    resources = copy.deepcopy(dict(kb.resources))
    plan = next(r for r in resources.values() if r.get("resourceType") == "PlanDefinition" and r.get("id") == plan_id)
    rule = copy.deepcopy(next(a for a in plan["action"] if a["code"][0]["coding"][0]["code"] == "supportive-care"))
    rule["id"] = "any-order-rule"
    rule["condition"] = [] if condition is None else [
        {"kind": "applicability", "expression": {"language": "text/fhirpath", "expression": condition}}]
    plan["action"].insert(0, rule)
    return dataclasses.replace(kb, resources=resources)


@pytest.mark.parametrize("condition", [
    None,  # fires on every order
    "%features.bsa_m2.value > 1.0",  # not an order-membership test
    "%features.premedication_missing.value.missing = true",  # a guard shape, but no promise
    "%features.ino_drafted.value.drafted = true",  # a field the promise is not about
])
def test_a_rule_that_may_fire_on_any_order_leaves_its_hook_without_a_gate(engines, condition) -> None:
    kb = engines[0].kb
    engine = Engine(_with_rule(kb, "SactOrderSelect", condition))
    assert engine.gate("SactOrderSelect", "order-select") is None  # every order is relevant there
    assert engine.gate("SactOrderSign", "order-sign") is not None  # the other plan keeps its gate


def test_derive_gate_unions_the_promised_valuesets(engines) -> None:
    gated, _ = engines
    rules = gated._plans["SactOrderSign"].for_hook("order-sign")[0]
    gate = derive_gate(rules, default_registry())
    assert gate is not None and gate.valuesets[0] == vs.INOTUZUMAB
    assert derive_gate((), default_registry()) == OrderGate(())  # no rule: nothing can fire


def _draft(rid: str, medication: Any, key: str = "medicationCodeableConcept") -> dict[str, Any]:
    return {"resourceType": "MedicationRequest", "id": rid, "status": "draft", "intent": "order",
            "subject": {"reference": "Patient/p1"}, key: medication}


PARACETAMOL = {"coding": [{"system": "http://www.whocc.no/atc", "code": "N02BE01"}], "text": "paracetamol"}


@pytest.mark.parametrize(("drafts", "irrelevant"), [
    ([_draft("a", PARACETAMOL)], True),
    ([], True),
    ([_draft("a", PARACETAMOL), _draft("b", {"text": "inotuzumab ozogamicin"})], False),  # by name, unselected
    ([_draft("a", {"text": "Fluconazole 50 mg capsule"})], False),
    ([_draft("a", {"text": "blinatumomab"})], False),
    # fail visible: a medication that cannot be read is never irrelevant
    ([_draft("a", {"coding": "N02BE01"})], False),
    ([_draft("a", "paracetamol")], False),
    ([_draft("a", {"text": " "})], False),
    ([{"resourceType": "MedicationRequest", "id": "a", "status": "draft", "intent": "order"}], False),
    ([_draft("a", {"reference": "#med"}, "medicationReference")], False),  # contained Medication missing
    ([dict(_draft("a", {"reference": "#med"}, "medicationReference"),
           contained=[{"resourceType": "Medication", "id": "med", "code": PARACETAMOL}])], True),
    ([_draft("a", {"display": "paracetamol 500 mg tablets"}, "medicationReference")], True),
    ([_draft("a", {"reference": "Medication/m1"}, "medicationReference")], False),  # needs the record
    ([{"resourceType": "ServiceRequest", "id": "s"}], True),  # no guard reads other order types
])
def test_which_drafts_are_irrelevant(engines, drafts, irrelevant) -> None:
    gate = engines[0].gate("SactOrderSelect", "order-select")
    assert gate is not None
    assert gate.irrelevant(drafts, engines[0].kb.terminology) is irrelevant


_OUTCOME = {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "timeout", "diagnostics": "x"}]}
_ODD_VALUES = [
    _OUTCOME, "junk", None, [{"resourceType": "Patient", "id": "x"}],
    {"resourceType": "Bundle", "entry": [{"resource": _OUTCOME}]},
    {"resourceType": "Bundle", "entry": [{"resource": {"resourceType": "MedicationOrder", "id": "m"}}]},
    {"resourceType": "Bundle", "entry": ["junk", {"resource": None}, {"resource": {"resourceType": "Bundle"}}]},
    {"resourceType": "MedicationOrder", "id": "m2", "medicationCodeableConcept": PARACETAMOL},
]


@pytest.mark.parametrize("odd", [*range(len(_ODD_VALUES)), "missing"])
def test_the_gate_finds_the_notes_build_record_would(engines, odd) -> None:
    """record_notes (what the gate shows without building the record) == build_record's notes,
    on a whole scenario record with one prefetch value replaced by an odd one, or left out."""
    from cds_service.record import build_record, record_notes

    plain = engines[1]
    templates = plain.service("SactOrderSign").prefetch
    resolved = load_scenario(SCENARIOS[0]).resolved(NOW)
    resolved = dataclasses.replace(resolved, scenario=dataclasses.replace(resolved.scenario, hook="order-sign"))
    body = build_request(resolved, templates).body
    assert record_notes(body, templates) == build_record(copy.deepcopy(body), templates).notes == ()
    key = sorted(body["prefetch"])[0]
    if odd == "missing":
        del body["prefetch"][key]
    else:
        body["prefetch"][key] = _ODD_VALUES[odd]
    notes = record_notes(body, templates)
    assert notes == build_record(copy.deepcopy(body), templates).notes
    # an error, junk, a DSTU2 MedicationOrder or a missing key is noted (null, a bare list of
    # resources and empty or unreadable Bundle entries are read without a note, as before)
    # and a Patient of another id is another patient's data, left out and noted (HAZ-001)
    assert bool(notes) is (odd in (0, 1, 3, 4, 5, 7, "missing"))
