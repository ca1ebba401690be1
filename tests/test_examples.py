"""The files in examples/ are real: the configuration loads to the settings it describes, and
each example hook request, sent to the service in-process with the shipped knowledge, gets
the cards examples/README.md documents."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from _fakes import call

from cds_service.api import build_engine, create_app
from cds_service.settings import load_settings
from cds_service.store import AuditStore

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def documented_cards() -> dict[str, list[tuple[str, str]]]:
    """`request` -> [(rule code, indicator)] from the table in examples/README.md."""
    text = (EXAMPLES / "README.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| `([\w-]+\.json)` \| ((?:`[\w-]+` \w+(?:, )?)+) \|$", text, flags=re.M)
    return {name: re.findall(r"`([\w-]+)` (\w+)", cards) for name, cards in rows}


@pytest.fixture(scope="module")
def app() -> object:
    settings = load_settings({}, env={})
    return create_app(settings, engine=build_engine(settings), store=AuditStore("sqlite://"))


def test_the_example_configuration_loads_as_documented() -> None:
    settings = load_settings({}, env={}, config_file=EXAMPLES / "sact.toml")
    assert settings.host == "0.0.0.0" and settings.public_base_url == "https://cds.example.org"
    assert settings.database_url.startswith("postgresql+psycopg://")
    assert [i.iss for i in settings.trusted_issuers] == ["https://ehr.example.org"]
    assert settings.docs is False and settings.allow_http_fhir_server is False
    assert settings.policy.azole_window_days == 56 and settings.policy.asciminib_counts_for_ino2 == "unknown"


def test_every_example_request_is_documented() -> None:
    requests = sorted(p.name for p in EXAMPLES.glob("*.json"))
    assert requests == sorted(documented_cards()) == ["order-select.json", "order-sign.json"]


@pytest.mark.parametrize("name", ["order-select.json", "order-sign.json"])
def test_an_example_request_gets_the_documented_cards(app: object, name: str) -> None:
    body = json.loads((EXAMPLES / name).read_text(encoding="utf-8"))
    services = call(app, "GET", "/cds-services").json()["services"]
    (service,) = [s["id"] for s in services if s["hook"] == body["hook"]]
    assert set(body["prefetch"]) == set(next(s for s in services if s["id"] == service)["prefetch"])
    response = call(app, "POST", f"/cds-services/{service}", json=body)
    assert response.status_code == 200, response.text
    cards = response.json()["cards"]
    got = [(c["source"]["topic"]["code"], c["indicator"]) for c in cards]
    assert got == documented_cards()[name]
    assert all(len(c["summary"]) < 140 and c["detail"] for c in cards)
