"""Feedback (CDS Hooks 2.0 §feedback, cds-hooks.md §1.5): accepted / overridden items are
validated and stored, linked to the card by uuid; duplicates are tolerated."""

from __future__ import annotations

import copy
import io
from typing import Any

import pytest
from _fakes import app_with, call, calls, hook_request
from sqlalchemy.exc import OperationalError

from cds_service.store import AuditStore

SELECT = "/cds-services/SactOrderSelect"
FEEDBACK = SELECT + "/feedback"
OVERRIDE_SYSTEM = "https://sact-cds.org/fhir/CodeSystem/override-reason"


def accepted(card: str = "card-1") -> dict[str, Any]:
    return {
        "card": card,
        "outcome": "accepted",
        "outcomeTimestamp": "2026-11-23T10:15:00Z",
        "acceptedSuggestions": [{"id": "sugg-1"}],
    }


def overridden(card: str = "card-2") -> dict[str, Any]:
    return {
        "card": card,
        "outcome": "overridden",
        "outcomeTimestamp": "2026-11-23T10:16:00.123+00:00",
        "overrideReason": {
            "reason": {"code": "patient-aware", "system": OVERRIDE_SYSTEM, "display": "Patient aware"},
            "userComment": "discussed at MDT",
        },
    }


def test_accepted_and_overridden_feedback_is_stored_and_linked_to_the_card() -> None:
    app, _, store = app_with()
    card = call(app, "POST", SELECT, json=hook_request()).json()["cards"][0]
    r = call(app, "POST", FEEDBACK, json={"feedback": [accepted(card["uuid"]), overridden(card["uuid"])]})
    assert r.status_code == 200
    _, items = store.recent()
    by_outcome = {i["outcome"]: i for i in items}
    assert by_outcome["accepted"]["accepted_suggestions"] == ["sugg-1"]
    assert by_outcome["overridden"]["override_code"] == "patient-aware"
    assert by_outcome["overridden"]["override_display"] == "Patient aware"
    assert by_outcome["overridden"]["user_comment"] == "discussed at MDT"
    assert {i["card_uuid"] for i in items} == {card["uuid"]}
    out = io.StringIO()
    store.export_csv(out)
    rows = out.getvalue().splitlines()
    assert any(card["uuid"] in row and "accepted" in row and "sugg-1" in row for row in rows)
    assert any(card["uuid"] in row and "Patient aware" in row for row in rows)


def test_the_sandbox_shape_without_display_or_comment_is_stored() -> None:
    app, _, store = app_with()
    item = overridden()
    item["overrideReason"] = {"reason": {"code": "patient-aware", "system": OVERRIDE_SYSTEM}}
    assert call(app, "POST", FEEDBACK, json={"feedback": [item]}).status_code == 200
    assert store.recent()[1][0]["override_code"] == "patient-aware"


def test_duplicate_feedback_is_tolerated_and_stored_once() -> None:
    app, _, store = app_with()
    body = {"feedback": [accepted(), accepted()]}
    first, second = calls(app, ("POST", FEEDBACK, {"json": body}), ("POST", FEEDBACK, {"json": body}))
    assert first.status_code == second.status_code == 200
    assert len(store.recent()[1]) == 1


def test_feedback_on_an_unknown_card_is_still_kept() -> None:
    app, _, store = app_with()
    assert call(app, "POST", FEEDBACK, json={"feedback": [overridden("never-seen")]}).status_code == 200
    assert store.recent()[1][0]["card_uuid"] == "never-seen"


def _set(item: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    item = copy.deepcopy(item)
    *parents, last = dotted.split(".")
    target = item
    for p in parents:
        target = target[p]
    if value is KeyError:
        del target[last]
    else:
        target[last] = value
    return item


@pytest.mark.parametrize(
    ("item", "named"),
    [
        (_set(accepted(), "card", KeyError), "feedback[0].card"),
        (_set(accepted(), "card", 5), "feedback[0].card"),
        (_set(accepted(), "outcome", "ignored"), "feedback[0].outcome"),
        (_set(accepted(), "outcomeTimestamp", KeyError), "feedback[0].outcomeTimestamp"),
        (_set(accepted(), "outcomeTimestamp", "yesterday"), "feedback[0].outcomeTimestamp"),
        (_set(accepted(), "acceptedSuggestions", KeyError), "feedback[0].acceptedSuggestions"),
        (_set(accepted(), "acceptedSuggestions", [{"uuid": "x"}]), "feedback[0].acceptedSuggestions[0].id"),
        (_set(accepted(), "overrideReason", {"userComment": "x"}), "feedback[0].overrideReason"),
        (_set(overridden(), "acceptedSuggestions", [{"id": "s"}]), "feedback[0].acceptedSuggestions"),
        (_set(overridden(), "overrideReason", "because"), "feedback[0].overrideReason"),
        (
            _set(overridden(), "overrideReason.reason", {"code": "x"}),
            "feedback[0].overrideReason.reason.system",
        ),
        (_set(overridden(), "overrideReason.userComment", 3), "feedback[0].overrideReason.userComment"),
        ("not an object", "feedback[0]"),
    ],
)
def test_an_invalid_item_is_a_400_naming_the_field(item: Any, named: str) -> None:
    app, _, store = app_with()
    r = call(app, "POST", FEEDBACK, json={"feedback": [item]})
    assert r.status_code == 400
    assert r.json()["issue"][0]["expression"] == [named]
    assert store.recent()[1] == []


@pytest.mark.parametrize("body", [{}, {"feedback": []}, {"feedback": {"card": "x"}}, [accepted()]])
def test_a_body_without_a_feedback_array_is_a_400(body: Any) -> None:
    app, _, _ = app_with()
    assert call(app, "POST", FEEDBACK, json=body).status_code == 400


def test_feedback_for_an_unknown_service_is_a_404() -> None:
    app, _, _ = app_with()
    assert (
        call(app, "POST", "/cds-services/Nope/feedback", json={"feedback": [accepted()]}).status_code == 404
    )


def test_when_the_store_is_down_feedback_answers_503_so_the_client_may_retry() -> None:
    class Down(AuditStore):
        def record_feedback(self, *a: Any, **kw: Any) -> int:
            raise OperationalError("INSERT", {}, Exception("database is down"))

    app, _, _ = app_with(store=Down("sqlite://"))
    r = call(app, "POST", FEEDBACK, json={"feedback": [accepted()]})
    assert r.status_code == 503 and r.json()["issue"][0]["code"] == "transient"
