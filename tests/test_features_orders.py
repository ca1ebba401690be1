"""What the session drafts: the selected inotuzumab dose and its premedication."""

from __future__ import annotations

from _rules_harness import ctx, draft, record

from cds_service.features import default_registry
from cds_service.features._orders import ino_drafted, premedication_missing


def test_inotuzumab_selected_on_order_select_only_when_picked():
    drafts = [draft("ino", mg=0.8), draft("lor", "loratadine")]
    assert ino_drafted(record(drafts=drafts, selections=["MedicationRequest/lor"]), ctx()).value["selected"] is False
    fv = ino_drafted(record(drafts=drafts, selections=["MedicationRequest/ino"]), ctx())
    assert fv.status == "met" and fv.value["focus"] == "MedicationRequest/ino"
    assert fv.value["orders"][0]["dose_mg"] == 0.8


def test_nothing_drafted_is_not_met():
    fv = ino_drafted(record(), ctx())
    assert fv.status == "not_met" and fv.value["drafted"] is False


def test_premedication_missing_lists_what_the_session_lacks():
    fv = premedication_missing(record(drafts=[draft("ino", mg=0.8), draft("lor", "loratadine")]), ctx())
    assert fv.value["missing"] == ["paracetamol", "dexamethasone"]
    assert fv.value["loratadine_missing"] is False and fv.value["dexamethasone_missing"] is True


def test_premedication_complete():
    drafts = [draft("ino", mg=0.8), draft("lor", "loratadine"), draft("par", "paracetamol"), draft("dex", "dexamethasone")]
    fv = premedication_missing(record(drafts=drafts), ctx())
    assert fv.status == "not_met" and fv.value["missing"] == []


def test_topical_dexamethasone_is_not_premedication():
    drafts = [draft("ino", mg=0.8), draft("dex", "dexamethasone", route="ophthalmic")]
    assert "dexamethasone" in premedication_missing(record(drafts=drafts), ctx()).value["missing"]


def test_every_feature_is_registered_and_returns_json():
    import orjson
    from _rules_harness import ALL_ATTESTED, b_all, bsa, cycle_history, form, height, normal_liver_tests, weight

    rec = record(b_all(), *cycle_history(2, -28), *normal_liver_tests(), bsa(), height(), weight(),
                 form({**ALL_ATTESTED, "response-status": "CR"}), drafts=[draft("ino", mg=0.5)])
    registry = default_registry()
    assert {"bsa_m2", "cycle", "ino2_criteria", "ino_drafted", "liver_function"} <= registry.names()
    for name in registry.names():
        value = registry.get(name)(rec, ctx())
        orjson.dumps(value.as_json())
