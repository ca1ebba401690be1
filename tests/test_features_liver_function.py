"""Liver tests as multiples of their own ULN; counts against the pre-treatment counts."""

from __future__ import annotations

from datetime import timedelta

import pytest
from _rules_harness import (
    TODAY,
    alp,
    alt,
    anc,
    ast,
    bilirubin,
    condition,
    ctx,
    draft,
    given,
    normal_liver_tests,
    obs,
    platelets,
    record,
)

from cds_service.features import _labs as labs
from cds_service.features import _valuesets as vs
from cds_service.features._labs import blood_counts, liver_function, liver_tests_missing_since
from cds_service.record import DataNote

INO = draft("ino", mg=0.8)


def lft(*resources, **kw):
    return liver_function(record(*resources, drafts=[INO], **kw), ctx())


@pytest.mark.parametrize(("value", "ratio"), [(31.5, 1.5), (31.71, 1.51), (21, 1.0), (10.5, 0.5)])
def test_bilirubin_is_divided_by_its_own_upper_limit(value, ratio):
    fv = lft(bilirubin("b", value, uln=21), ast("a", 40), alt("l", 40))
    assert fv.value["bilirubin_x_uln"] == ratio


def test_mass_and_molar_bilirubin_each_use_their_own_range():
    mass = lft(bilirubin("b", 1.8, uln=1.2, unit="mg/dL"), ast("a", 40), alt("l", 40))
    molar = lft(bilirubin("b", 30, uln=20), ast("a", 40), alt("l", 40))
    assert mass.value["bilirubin_x_uln"] == molar.value["bilirubin_x_uln"] == 1.5


def test_the_latest_result_of_either_unit_is_used():
    fv = lft(bilirubin("old", 60, offset=-5), bilirubin("new", 1.0, uln=1.2, unit="mg/dL", offset=-1),
             ast("a", 40), alt("l", 40))
    assert fv.value["results"]["bilirubin"]["reference"] == "Observation/new"


def test_all_four_ratios_and_status_met_when_bilirubin_ast_alt_are_known():
    fv = lft(*normal_liver_tests())
    assert fv.status == "met"
    assert fv.value["ast_x_uln"] == 0.75 and fv.value["alt_x_uln"] == 0.625
    assert fv.value["alp_x_uln"] == pytest.approx(0.666667)


def test_no_reference_range_gives_no_ratio_and_says_so():
    fv = lft(bilirubin("b", 40, uln=None), ast("a", 40), alt("l", 40))
    assert fv.status == "met"  # AST and ALT are known; the missing ratio is None, not a guess
    assert fv.value["bilirubin_x_uln"] is None
    assert "ULN" in fv.note
    assert any("ULN" in e.display for e in fv.evidence)
    assert lft(bilirubin("b", 40, uln=None)).status == "unknown"  # nothing usable at all


def test_a_range_in_another_unit_than_the_value_gives_no_ratio():
    fv = lft(obs("b", "14631-6", 40, "umol/L", high=1.2, high_unit="mg/dL"), ast("a", 40), alt("l", 40))
    assert fv.value["bilirubin_x_uln"] is None
    assert any("differs" in p for p in fv.value["problems"])


def test_missing_tests_are_unknown_never_normal():
    fv = lft()
    assert fv.status == "unknown"
    assert fv.value["bilirubin_x_uln"] is None and fv.value["ast_x_uln"] is None


def test_cancelled_future_and_erroneous_results_are_ignored():
    cancelled = bilirubin("c", 99)
    cancelled["status"] = "entered-in-error"
    future = bilirubin("f", 99, offset=2)
    fv = lft(cancelled, future, bilirubin("b", 10), ast("a", 40), alt("l", 40))
    assert fv.value["results"]["bilirubin"]["reference"] == "Observation/b"


def test_unreadable_laboratory_data_is_reported():
    fv = lft(*normal_liver_tests(), notes=[DataNote("missing", "observations", "prefetch 'observations' was not provided")])
    assert any("could not be read" in p for p in fv.value["problems"])


def test_gilbert_syndrome_is_reported_with_the_results():
    fv = lft(*normal_liver_tests(), condition("gil", "Gilbert syndrome"))
    assert fv.value["gilbert_or_haemolysis"] is True
    assert any("Gilbert" in e.display for e in fv.evidence)
    resolved = condition("hae", "Haemolysis", clinical="resolved")
    assert lft(*normal_liver_tests(), resolved).value["gilbert_or_haemolysis"] is False


def test_liver_tests_since_the_previous_dose():
    rec = record(*normal_liver_tests(offset=-8), given("ino", -7), drafts=[INO])
    assert liver_tests_missing_since(rec, ctx(), None) == []
    previous = TODAY - timedelta(days=7)
    assert liver_tests_missing_since(rec, ctx(), previous) == ["Total bilirubin", "AST", "ALT", "ALP"]


# -- blood counts --------------------------------------------------------------------------------


def counts(*resources):
    return blood_counts(record(*resources, drafts=[INO]), ctx())


def test_baseline_is_the_latest_count_on_or_before_the_first_dose():
    fv = counts(anc("a0", 0.6, -40), anc("a1", 2.0, -22), given("ino1", -22), given("ino2", -15), given("ino3", -8),
                anc("a2", 0.7, -1), platelets("p1", 120, -22), platelets("p2", 40, -1))
    assert fv.status == "met"
    assert fv.value["anc_baseline"] == 2.0 and fv.value["anc"] == 0.7
    assert fv.value["platelets_baseline"] == 120 and fv.value["platelets"] == 40


def test_before_any_dose_baseline_and_current_are_the_same_count():
    fv = counts(anc("a", 1.2, -1), platelets("p", 80, -1))
    assert fv.value["anc"] == fv.value["anc_baseline"] == 1.2


def test_a_count_from_before_the_last_dose_is_not_a_current_count():
    fv = counts(anc("a", 2.0, -10), platelets("p", 100, -10), given("ino", -9))
    assert fv.status == "unknown"
    assert fv.value["anc"] is None
    assert "after the last dose" in fv.note


def test_counts_per_microlitre_are_converted_to_10e9_per_litre():
    fv = counts(obs("a", "751-8", 800, "/uL", -1), obs("p", "777-3", 45000, "/uL", -1))
    assert fv.value["anc"] == 0.8 and fv.value["platelets"] == 45


def test_an_unknown_count_unit_is_not_read():
    fv = counts(obs("a", "751-8", 800, "cells", -1), platelets("p", 100, -1))
    assert fv.value["anc"] is None and fv.value["platelets"] == 100
    assert "cannot be read" in fv.note
    assert counts(obs("a", "751-8", 800, "cells", -1)).status == "unknown"


def test_alp_and_ast_builders_are_coded_as_the_valuesets_expect():
    fv = lft(bilirubin("b", 10), ast("a", 100), alt("l", 101), alp("p", 600))
    assert (fv.value["ast_x_uln"], fv.value["alt_x_uln"], fv.value["alp_x_uln"]) == (2.5, 2.525, 2.0)


def test_a_negative_result_is_implausible_and_never_below_the_limit():
    # issue 10 d: before, -4/21 = -0.19 x ULN read as "not above 1.5 x ULN"
    fv = lft(bilirubin("b", -4, uln=21), ast("a", 200), alt("l", 40))
    assert fv.value["bilirubin_x_uln"] is None
    assert any("Total bilirubin -4 umol/L" in p and "implausible" in p for p in fv.value["problems"])


def test_a_negative_count_is_implausible_and_not_used():
    fv = counts(anc("n", -1.2), platelets("p", 120))
    assert fv.value["anc"] is None
    assert any("Neutrophils (ANC) -1.2" in p and "implausible" in p for p in fv.value["problems"])


def test_one_lab_code_written_in_two_shapes_gives_one_newest_first_series():
    """Lab results are grouped by code before ValueSets are asked (features/_labs.py): the
    common shape (one coding) by a flat key, any other by its concept key. A bilirubin written
    as a CodeableConcept and another written as a bare Coding (system and code on the concept)
    are the same test: both count, newest first, whichever shape each result has."""
    coded = [bilirubin(f"c{n}", 10 + n, offset=-2 * n - 1) for n in range(3)]           # days -1, -3, -5
    bare = [bilirubin(f"b{n}", 20 + n, offset=-2 * n - 2) for n in range(3)]            # days -2, -4, -6
    for b in bare:
        b["code"] = dict(b["code"]["coding"][0])  # {"system": ..., "code": ...}: no "coding" list
    rec = record(*[r for pair in zip(coded, bare, strict=True) for r in pair])
    found = [o["id"] for _, o in labs.observations(rec, ctx(), vs.TOTAL_BILIRUBIN)]
    assert found == ["c0", "b0", "c1", "b1", "c2", "b2"]
