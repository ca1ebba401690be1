"""Shared helper results are kept per record and context, and dropped with the record."""

from __future__ import annotations

import gc
from datetime import timedelta

from _rules_harness import NOW, ctx, draft, given, record

from cds_service.features import _memo
from cds_service.features._course import course


def test_a_helper_runs_once_per_record_and_context():
    rec = record(given("d1", -7), drafts=[draft("ino", mg=0.5)])
    c = ctx()
    assert course(rec, c) is course(rec, c)


def test_another_time_or_policy_or_record_is_computed_afresh():
    rec = record(given("d1", -7), drafts=[draft("ino", on=None, mg=0.5)])  # no date: taken as the day of `now`
    first = course(rec, ctx())
    later = course(rec, ctx(now=NOW + timedelta(days=1)))
    assert later is not first and later.selected[0].day_of_cycle == 9
    assert course(rec, ctx(azole_window_days=10)) is not first
    other = record(given("d1", -8), drafts=[draft("ino", mg=0.5)])
    assert course(other, ctx()).selected[0].day_of_cycle == 9


def test_the_cache_goes_with_its_record():
    rec = record(drafts=[draft("ino", mg=0.5)])
    course(rec, ctx())
    key = id(rec)
    assert key in _memo._STORES
    del rec
    gc.collect()
    assert key not in _memo._STORES


def test_the_last_pair_shortcut_keeps_no_record_alive():
    # _memo._LAST answers repeated asks for one (record, context) pair; it must not keep
    # a record (patient data) alive after the evaluation lets go of it
    rec = record(drafts=[draft("ino", mg=0.5)])
    course(rec, ctx())
    assert _memo._LAST[0]() is rec
    del rec
    gc.collect()
    assert _memo._LAST is _memo._NOTHING


def test_alternating_records_and_contexts_never_share_results():
    early, late = ctx(), ctx(now=NOW + timedelta(days=1))
    a = record(given("d1", -7), drafts=[draft("ino", on=None, mg=0.5)])
    b = record(given("d1", -8), drafts=[draft("ino", on=None, mg=0.5)])
    for _ in range(2):  # each ask follows an ask about another pair
        assert course(a, early).selected[0].day_of_cycle == 8
        assert course(b, early).selected[0].day_of_cycle == 9
        assert course(a, late).selected[0].day_of_cycle == 9
