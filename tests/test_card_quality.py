"""Cards a clinician trusts at a glance (issue 13), over the whole scenario corpus, through
prefetch and through the FHIR-server fallback: severity order, one data-unavailable card,
plain words, facts once, override reasons that fit, source links to readable passages, and
the alert burden of whole records."""

from __future__ import annotations

import copy
import dataclasses
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from _card_text import problems

from cds_service.engine import Engine
from cds_service.errors import KnowledgeError
from cds_service.features import default_registry
from cds_service.knowledge import load_knowledge
from cds_service.replay import fhir_server, stats
from cds_service.replay.scenario import Scenario, load_scenario, scenario_from_json

SCENARIOS = Path(__file__).parent / "scenarios"
CORPUS = sorted(p for p in SCENARIOS.glob("*.json") if not p.name.startswith("_"))
SEVERITY = {"critical": 0, "warning": 1, "info": 2}
WHOLE_SIGN = "whole-record-ph-negative-cycle-1-day-1.json"


def _code(card: dict[str, Any]) -> str:
    return card["source"]["topic"]["code"]


def _evidence(card: dict[str, Any]) -> list[str]:
    detail = card.get("detail", "")
    if "**Patient data**" not in detail:
        return []
    block = detail.split("**Patient data**", 1)[1].split("\n\n**", 1)[0]
    return [line for line in block.splitlines() if line.startswith("- ") and "also the data on the card" not in line]


@pytest.fixture(scope="module")
def corpus_prefetch(replay_session: Any) -> dict[str, list[dict[str, Any]]]:
    now = datetime.now(UTC)
    out = {}
    for path in CORPUS:
        result = replay_session.replay(load_scenario(path), now)
        assert result.status != "error", (path.name, result.error)
        out[path.name] = result.cards
    return out


@pytest.fixture(scope="module")
def corpus_fallback(replay_session: Any) -> dict[str, list[dict[str, Any]]]:
    """Every scenario with no prefetch: the service fetches it all from the scenario served
    as a FHIR endpoint (``replay --serve-fhir``)."""
    now = datetime.now(UTC)
    out = {}
    for path in CORPUS:
        scenario = load_scenario(path)
        with fhir_server.serve(scenario.resolved(now)) as server:
            result = replay_session.replay(scenario, now, fhir_server=server.url, send_prefetch=False)
        assert result.status != "error", (path.name, result.error)
        out[path.name] = result.cards
    return out


@pytest.fixture(params=["prefetch", "fallback"])
def corpus(request: pytest.FixtureRequest) -> dict[str, list[dict[str, Any]]]:
    return request.getfixturevalue(f"corpus_{request.param}")


# ---------------------------------------------------------------- 1. one card per problem, in order


def test_cards_come_most_urgent_first_then_in_rule_order(corpus: dict[str, list[dict[str, Any]]]) -> None:
    assert any(len({c["indicator"] for c in cards}) > 1 for cards in corpus.values())  # the test can fail
    for name, cards in corpus.items():
        ranks = [SEVERITY[c["indicator"]] for c in cards]
        assert ranks == sorted(ranks), (name, [(c["indicator"], _code(c)) for c in cards])


def test_at_most_one_data_unavailable_card_per_hook_call(corpus: dict[str, list[dict[str, Any]]]) -> None:
    assert any(_code(c) == "data-unavailable" for cards in corpus.values() for c in cards)
    for name, cards in corpus.items():
        assert sum(_code(c) == "data-unavailable" for c in cards) <= 1, name


def test_a_datum_is_shown_on_one_card_only_and_referred_to_elsewhere(corpus: dict[str, list[dict[str, Any]]]) -> None:
    referred = 0
    for name, cards in corpus.items():
        seen: dict[str, str] = {}
        for card in cards:
            for line in _evidence(card):
                assert line not in seen, (name, line, seen.get(line), _code(card))
                seen[line] = _code(card)
            referred += "also the data on the card “" in card.get("detail", "")
    assert referred  # the liver results of the hold card are referred to from the VOD card


def _malformed(path: Path) -> Scenario:
    """``path`` with the inotuzumab draft's ``dosageInstruction`` an object, not an array."""
    data = json.loads(path.read_text(encoding="utf-8"))
    data = copy.deepcopy(data)
    data["scenario"]["hook"] = "order-sign"
    data["scenario"].pop("selections", None)
    data["scenario"].pop("expect", None)
    for entry in data["bundle"]["entry"]:
        res = entry["resource"]
        if res["resourceType"] == "MedicationRequest" and res.get("status") == "draft" and "inotuzumab" in json.dumps(
            res.get("medicationCodeableConcept")
        ):
            res["dosageInstruction"] = res["dosageInstruction"][0]
    return scenario_from_json(data, path)


@pytest.mark.parametrize("via", ["prefetch", "fallback"])
def test_a_malformed_dosage_gives_one_data_unavailable_card_in_clinical_words(replay_session: Any, via: str) -> None:
    # before: 11-17 data-unavailable cards quoting "AttributeError: 'str' object has no attribute 'get'"
    scenario = _malformed(SCENARIOS / WHOLE_SIGN)
    now = datetime.now(UTC)
    if via == "prefetch":
        result = replay_session.replay(scenario, now)
    else:
        with fhir_server.serve(scenario.resolved(now)) as server:
            result = replay_session.replay(scenario, now, fhir_server=server.url, send_prefetch=False)
    assert result.status != "error", result.error
    (card,) = result.cards
    assert _code(card) == "data-unavailable" and card["indicator"] == "warning"
    detail = card["detail"]
    assert "**Not checked**" in detail and "- INO2 funding criteria" in detail and "- Cycle limit" in detail
    assert "could not be read" in detail
    assert not problems(card), problems(card)
    assert "Error" not in detail and "attribute" not in detail


# ---------------------------------------------------------------- 2. true, specific summaries


def test_summaries_name_the_finding_with_the_patients_numbers(corpus_prefetch: dict[str, list[dict[str, Any]]]) -> None:
    cards = corpus_prefetch["whole-record-ph-positive-imatinib-only.json"]
    (ino2,) = [c for c in cards if _code(c) == "ino2-eligibility"]
    # the summary counts what the detail lists
    assert ino2["summary"] == "Inotuzumab: 3 INO2 criteria not met; 1 not documented"
    assert ino2["detail"].count(": not met. ") == 3 and ino2["detail"].count(": not documented. ") == 1
    (du,) = [c for cards in corpus_prefetch.values() for c in cards
             if _code(c) == "data-unavailable" and c["summary"].endswith("Hepatotoxicity and VOD/SOS risk")][:1]
    assert "- Hepatotoxicity and VOD/SOS risk" in du["detail"]


def test_the_data_unavailable_summary_names_only_checks_its_detail_lists(
    corpus: dict[str, list[dict[str, Any]]],
) -> None:
    for name, cards in corpus.items():
        for card in cards:
            if _code(card) != "data-unavailable" or ": " not in card["summary"]:
                continue
            tail = card["summary"].split(": ", 1)[1]
            if re.fullmatch(r"\d+ checks", tail):
                listed = card["detail"].split("**Not checked**", 1)[1].split("\n\n**", 1)[0]
                assert listed.count("\n- ") == int(tail.split()[0]), name
            elif tail != "patient data incomplete":
                for check in tail.split(", "):
                    assert f"- {check}" in card["detail"], (name, check)


def test_detail_puts_the_reason_and_what_to_do_before_the_data(corpus_prefetch: dict[str, list[dict[str, Any]]]) -> None:
    for name, cards in corpus_prefetch.items():
        for card in cards:
            detail = card.get("detail", "")
            if "**What to do:**" in detail and "**Patient data**" in detail:
                assert detail.index("**What to do:**") < detail.index("**Patient data**"), (name, _code(card))
            assert "Source:" not in detail and "Sources:" not in detail, (name, _code(card))  # the source link says it


# ---------------------------------------------------------------- 3. plain words


def test_no_internal_ids_codes_references_escapes_or_exception_text_in_any_card(
    corpus: dict[str, list[dict[str, Any]]],
) -> None:
    found = [f"{name} [{_code(c)}] {p}" for name, cards in corpus.items() for c in cards for p in problems(c)]
    assert not found, "\n".join(found[:20])


def test_the_checker_finds_what_the_old_cards_showed() -> None:
    old = {
        "summary": "Some inotuzumab checks could not be run: azole-antifungal",
        "detail": "- `condition[1]` gave no result\n- response\\_status: not known (could not be computed "
                  "(AttributeError: 'str' object has no attribute 'get'))\n- **ph-status-tki** (unmet)\n"
                  "- MedicationRequest/draft-ino on 2026-12-02 (regimen InotuzumabPaedRrBallNotInCr)",
        "source": {"label": "sact-cds"},
    }
    kinds = {p.split(" '", 1)[0].split(": ", 1)[1] for p in problems(old)}
    assert kinds >= {"a FHIR reference", "a backslash escape", "exception text", "FHIRPath or a condition path",
                     "a code span", "a feature name", "a code used as a label", "an artifact id"}


def test_record_and_form_disagreeing_is_said_with_which_was_used(corpus: dict[str, list[dict[str, Any]]]) -> None:
    (ino2,) = [c for c in corpus["whole-record-ph-positive-imatinib-only.json"] if _code(c) == "ino2-eligibility"]
    line = next(x for x in ino2["detail"].splitlines() if x.startswith("- **Performance status 0-2**"))
    assert "ECOG 3" in line
    assert "The record and the INO2 form of" in line and "disagree: the form attests this criterion; the record was used." in line
    assert "attests it.)" not in ino2["detail"]


def test_a_criterion_with_its_own_card_is_referred_to(corpus_prefetch: dict[str, list[dict[str, Any]]]) -> None:
    cards = corpus_prefetch["whole-record-ph-positive-imatinib-only.json"]
    (ino2,) = [c for c in cards if _code(c) == "ino2-eligibility"]
    (mono,) = [c for c in cards if _code(c) == "monotherapy"]
    assert "see the monotherapy card" in ino2["detail"]
    assert "imatinib active" in mono["detail"] and "imatinib active" not in ino2["detail"]


def test_ino2_criterion_displays_equal_the_code_system() -> None:
    from cds_service.features._eligibility import DISPLAYS

    cs = json.loads((Path(__file__).resolve().parents[1] / "fhir_profiles" / "CodeSystem-ino2-criterion.json").read_text())
    assert DISPLAYS == {c["code"]: c["display"] for c in cs["concept"]}


# ---------------------------------------------------------------- 4. override reasons per rule


def test_hold_and_azole_cards_do_not_offer_the_criterion_is_met(corpus: dict[str, list[dict[str, Any]]]) -> None:
    seen = set()
    for cards in corpus.values():
        for card in cards:
            code = _code(card)
            offered = [r["code"] for r in card["overrideReasons"]]
            assert offered and all(r["display"] for r in card["overrideReasons"])
            if code in ("azole-antifungal", "liver-function-hold"):
                seen.add(code)
                assert "record-incomplete" not in offered, code
            if code == "ino2-eligibility":
                assert "record-incomplete" in offered
    assert seen == {"azole-antifungal", "liver-function-hold"}


def test_every_rule_action_declares_its_override_reasons_from_the_single_code_system() -> None:
    root = Path(__file__).resolve().parents[1]
    cs = json.loads((root / "fhir_profiles" / "CodeSystem-override-reason.json").read_text())
    known = {c["code"] for c in cs["concept"]}
    for path in sorted((root / "plan_definitions" / "rules").glob("PlanDefinition-*.json")):
        for action in json.loads(path.read_text())["action"]:
            declared = [e["valueCoding"] for e in action.get("extension", ())
                        if e["url"].endswith("/card-override-reason")]
            assert declared, (path.name, action["id"])
            assert {d["code"] for d in declared} <= known
            assert {d["system"] for d in declared} == {cs["url"]}


def test_an_override_reason_not_in_the_code_system_stops_the_engine() -> None:
    kb = load_knowledge()
    resources = {url: copy.deepcopy(r) for url, r in kb.resources.items()}
    plan = next(r for r in resources.values() if r.get("id") == "SactOrderSelect")
    plan["action"][1]["extension"].append({
        "url": "https://sact-cds.org/fhir/StructureDefinition/card-override-reason",
        "valueCoding": {"system": "https://sact-cds.org/fhir/CodeSystem/override-reason", "code": "because-i-said-so"},
    })
    with pytest.raises(KnowledgeError, match="because-i-said-so"):
        Engine(dataclasses.replace(kb, resources=resources), default_registry())


# ---------------------------------------------------------------- 5. source links a clinician can open


class _Client:
    """GET against the in-process service of the replay session (no JWT: none is needed)."""

    def __init__(self, session: Any) -> None:
        self.session = session
        self.replayer = session.replayer()

    def get(self, path: str) -> Any:
        return self.session.run(self.replayer.client.get(self.replayer.base_url + path))


@pytest.fixture(scope="module")
def client(replay_session: Any) -> _Client:
    return _Client(replay_session)


def test_source_pages_are_served_as_readable_html_without_auth(client: _Client) -> None:
    index = client.get("/sources")
    assert index.status_code == 200 and "text/html" in index.headers["content-type"]
    page = client.get("/sources/ino2")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert 'id="L14"' in page.text and "Inotuzumab ozogamicin will be used as monotherapy" in page.text
    for name in ("nz-regimen", "clinical-reference"):
        assert client.get(f"/sources/{name}").status_code == 200
    assert client.get("/sources/nope").status_code == 404


def test_each_card_links_the_quoted_passage_on_the_served_page(
    corpus_prefetch: dict[str, list[dict[str, Any]]], client: _Client
) -> None:
    linked = 0
    for cards in corpus_prefetch.values():
        for card in cards:
            url = card["source"].get("url")
            if _code(card) == "data-unavailable":
                assert url is None  # no canonical URL a clinician cannot open
                continue
            assert url and re.fullmatch(r"http://[^/]+/sources/(ino2|nz-regimen|clinical-reference)#L\d+", url), url
            path, anchor = url.split("/", 3)[3].split("#")
            page = client.get("/" + path).text
            assert f'id="{anchor}"' in page
            label = card["source"]["label"]
            expected = "ino2" if "INO2" in label else "nz-regimen" if "NZ" in label else "clinical-reference"
            assert path == f"sources/{expected}", (label, url)  # the link opens the document the label names
            linked += 1
    assert linked > 50


def test_the_monotherapy_card_links_the_monotherapy_line_of_ino2(corpus_prefetch: dict[str, list[dict[str, Any]]],
                                                                 client: _Client) -> None:
    (mono,) = [c for c in corpus_prefetch["whole-record-ph-positive-imatinib-only.json"] if _code(c) == "monotherapy"]
    anchor = mono["source"]["url"].split("#")[1]
    page = client.get("/sources/ino2").text
    line = page.split(f'id="{anchor}"', 1)[1].split("</p>", 1)[0]
    assert "Inotuzumab ozogamicin will be used as monotherapy" in line


# ---------------------------------------------------------------- 6. alert burden


def test_alert_burden_of_whole_records_meets_the_targets(corpus_prefetch: dict[str, list[dict[str, Any]]]) -> None:
    clean = [corpus_prefetch[n] for n in ("whole-record-burden-clean-cycle-1-day-1-sign.json",
                                          "whole-record-burden-clean-cycle-1-day-8-sign.json")]
    for cards in clean:
        assert not [c for c in cards if c["indicator"] in ("critical", "warning")]
        assert len(cards) <= 1
    sign = [(load_scenario(SCENARIOS / n).hook, cards) for n, cards in corpus_prefetch.items()
            if n.startswith("whole-record") and load_scenario(SCENARIOS / n).hook == "order-sign"]
    assert len(sign) >= 6
    (row,) = stats.burden(sign)
    assert row.per_call <= 3, row


def test_stats_count_cards_per_hook_call_by_indicator() -> None:
    w, i, c = {"indicator": "warning"}, {"indicator": "info"}, {"indicator": "critical"}
    du = {"indicator": "warning", "source": {"topic": {"code": "data-unavailable"}}}
    rows = stats.burden([("order-sign", [c, w, i]), ("order-sign", []), ("order-select", [du])])
    sign, select, every = rows
    assert (sign.hook, sign.calls, sign.cards, sign.per_call, sign.critical, sign.warning, sign.info) == (
        "order-sign", 2, 3, 1.5, 0.5, 0.5, 0.5)
    assert (sign.max_cards, sign.no_card, sign.with_data_unavailable) == (3, 1, 0)
    assert (select.calls, select.with_data_unavailable) == (1, 1)
    assert (every.hook, every.calls, every.cards) == ("all", 3, 4)


def test_replay_stats_reports_the_burden_as_json() -> None:
    from click.testing import CliRunner

    from cds_service.cli import main

    result = CliRunner().invoke(main, ["replay", "--stats", "--json",
                                      str(SCENARIOS / "whole-record-burden-clean-cycle-1-day-1-sign.json"),
                                      str(SCENARIOS / "whole-record-liver-toxicity-day-15.json")])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output[result.output.index("{"):])
    (row,) = doc["stats"]
    assert (row["hook"], row["calls"], row["cards"], row["critical"], row["info"]) == ("order-sign", 2, 3, 0.5, 0.5)


# ---------------------------------------------------------------- 7. the reference sandbox


@pytest.mark.parametrize(("hook", "screen"), [("order-select", "rx-view"), ("order-sign", "rx-sign")])
def test_the_printed_sandbox_link_opens_the_screen_that_fires_the_hook(hook: str, screen: str) -> None:
    from urllib.parse import parse_qs, urlsplit

    from cds_service.commands.replay import sandbox_link

    link = sandbox_link("http://127.0.0.1:8765", "wr-1", "http://127.0.0.1:8080/cds-services", hook)
    query = {k: v[0] for k, v in parse_qs(urlsplit(link).query).items()}
    # the five parameters the sandbox reads (cds-hooks/sandbox src/components/MainView/main-view.jsx)
    assert query == {"fhirServiceUrl": "http://127.0.0.1:8765", "patientId": "wr-1",
                     "serviceDiscoveryURL": "http://127.0.0.1:8080/cds-services", "hook": hook, "screen": screen}
