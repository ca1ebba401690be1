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
