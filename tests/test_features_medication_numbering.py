"""Medications are matched to ValueSets once per distinct medication of a record
(features/_medications.py ``_Numbering``): the answers must be those of asking each
resource, an unreadable resource must fail only where it is asked, and the cache shared
across records must stay right when it is cleared."""

from __future__ import annotations

import pytest
from _rules_harness import ctx, given, record, statement

from cds_service.features import _medications as meds
from cds_service.features import _valuesets as vs
from cds_service.features._memo import shared


def test_history_matches_each_resource_by_its_own_medication():
    rec = record(
        statement("s1", "voriconazole"), statement("s2", "fluconazole"), statement("s3", "paracetamol"),
        given("g1", -3, name="voriconazole"), given("g2", -2, name="paracetamol"),
    )
    c = ctx()
    found = [r["id"] for r in meds.history(rec, c, vs.SYSTEMIC_AZOLES)]
    assert found == ["s1", "s2", "g1"]
    # the same answer as asking the terminology about each resource on its own
    every = [r for t in meds.MEDICATION_TYPES for r in rec.of_type(t)]
    assert found == [r["id"] for r in every if c.terminology.matches_medication(vs.SYSTEMIC_AZOLES, r, rec)]


def test_an_unreadable_medication_fails_where_it_is_asked_not_elsewhere():
    broken = statement("bad", "voriconazole")
    broken["medicationReference"] = "Medication/not-an-object"  # a string where an object belongs
    fine = statement("ok", "voriconazole")
    rec = record(fine, broken)
    c = ctx()
    assert meds.matches(c, vs.SYSTEMIC_AZOLES, fine, rec) is True
    with pytest.raises(AttributeError):
        meds.history(rec, c, vs.SYSTEMIC_AZOLES)  # the scan reaches the broken resource and says so


def test_answers_stay_right_when_the_shared_cache_is_cleared_between_records():
    c = ctx()
    first = record(statement("s1", "voriconazole"), statement("s2", "paracetamol"))
    assert [r["id"] for r in meds.history(first, c, vs.SYSTEMIC_AZOLES)] == ["s1"]
    shared(c.terminology).clear()  # what happens when the cache is full
    # the same medications in another order, in a new record: numbers differ, answers must not
    second = record(statement("t1", "paracetamol"), statement("t2", "voriconazole"))
    assert [r["id"] for r in meds.history(second, c, vs.SYSTEMIC_AZOLES)] == ["t2"]
    assert [r["id"] for r in meds.history(first, ctx(), vs.SYSTEMIC_AZOLES)] == ["s1"]


def _medication_resources(value):
    if isinstance(value, dict):
        if value.get("resourceType") in meds.MEDICATION_TYPES:
            yield value
        for v in value.values():
            yield from _medication_resources(v)
    elif isinstance(value, list):
        for v in value:
            yield from _medication_resources(v)


ODD_SHAPES = [
    {"medicationCodeableConcept": None}, {"medicationCodeableConcept": "x"},
    {"medicationCodeableConcept": {"coding": []}}, {"medicationCodeableConcept": {"coding": [1]}},
    {"medicationCodeableConcept": {"coding": "x", "text": "t"}},
    {"medicationCodeableConcept": {"coding": [{"code": "a"}, {"code": "b"}]}},
    {"dosageInstruction": [{"route": None}, 5, {"route": {"coding": [{"code": "x"}, {"code": "y"}]}}]},
    {"dosageInstruction": [{"route": "oral"}]}, {"dosage": "x"}, {"dosage": []},
    {"dosageInstruction": [], "dosage": {"route": {"text": "IV"}}},
    {"medicationCodeableConcept": {"text": "a"}, "dosageInstruction": {"route": {"coding": {"code": "x"}}}},
    {"medicationReference": {"reference": "#m1"}, "contained": [{"id": "m1", "code": {"text": "x"}}]}, {},
]


def test_the_inline_reading_of_common_medications_gives_the_general_readers_key():
    """``_plain_key`` reads the common shape inline (issue 11); wherever it answers, its
    key must be ``_medication_key``'s, or two resources could be numbered alike although
    their ValueSet membership differs. Every medication resource of the scenario corpus
    and of the bench's generated records, and odd shapes, are compared."""
    import json
    from datetime import UTC, datetime
    from pathlib import Path

    from bench.synth import make_patient

    corpus = [r for f in sorted(Path(__file__).parent.joinpath("scenarios").glob("*.json"))
              for r in _medication_resources(json.loads(f.read_text(encoding="utf-8")))]
    generated = [r for seed in (1, 2) for p in [make_patient(2000, now=datetime(2026, 12, 2, tzinfo=UTC), seed=seed)]
                 for r in (*p.resources, *p.draft_orders) if r["resourceType"] in meds.MEDICATION_TYPES]
    read_inline = 0
    for res in (*corpus, *generated, *ODD_SHAPES):
        key = meds._plain_key(res)
        if key is not None:
            read_inline += 1
            assert key == meds._medication_key(res), res
    assert len(corpus) > 100 and read_inline > 0.9 * (len(corpus) + len(generated))  # the inline path is the common one
