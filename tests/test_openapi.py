"""/openapi.json describes discovery, each hook endpoint (request and response schemas, error
bodies), feedback and health; /docs shows it and a setting turns /docs off. The document is
checked against the OpenAPI 3.1 schema, and real traffic (the example requests, the cards the
service returns, a 400 OperationOutcome) is checked against the schemas it declares."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from _fakes import call, settings
from openapi_spec_validator import validate

from cds_service.api import build_engine, create_app
from cds_service.settings import load_settings
from cds_service.store import AuditStore

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture(scope="module")
def engine() -> Any:
    return build_engine(load_settings({}, env={}))  # the shipped knowledge


def _app(engine: Any, **changes: Any) -> Any:
    return create_app(settings(**changes), engine=engine, store=AuditStore("sqlite://"))


@pytest.fixture(scope="module")
def document(engine: Any) -> dict[str, Any]:
    response = call(_app(engine), "GET", "/openapi.json")
    assert response.status_code == 200 and response.headers["content-type"].startswith("application/json")
    return response.json()


def _check(document: dict[str, Any], schema: dict[str, Any], instance: Any) -> None:
    """Validate against a schema of the document, its #/components refs resolving."""
    jsonschema.validate(instance, {**schema, "components": document["components"]},
                        cls=jsonschema.Draft202012Validator)


def test_the_document_is_valid_openapi_3_1(document: dict[str, Any]) -> None:
    validate(document)
    assert document["openapi"] == "3.1.0"


def test_every_endpoint_is_described(document: dict[str, Any], engine: Any) -> None:
    ids = sorted({d.id for d in engine.services})
    assert ids == ["SactOrderSelect", "SactOrderSign"]
    expected = {"/cds-services", "/healthz", "/readyz", "/metrics"}
    expected |= {f"/cds-services/{i}" for i in ids} | {f"/cds-services/{i}/feedback" for i in ids}
    expected |= {"/fhir/Questionnaire/Ino2Attestation/$populate", "/fhir/Questionnaire/Ino2Attestation"}
    assert set(document["paths"]) == expected
    hook = document["paths"]["/cds-services/SactOrderSelect"]["post"]
    assert set(hook["responses"]) == {"200", "400", "401", "404", "408", "412", "413", "415", "500"}
    assert {"408", "415"} <= set(document["paths"]["/cds-services/SactOrderSign/feedback"]["post"]["responses"])
    assert "503" in document["paths"]["/cds-services/SactOrderSign/feedback"]["post"]["responses"]
    assert document["components"]["securitySchemes"]["cdsHooksJwt"]["bearerFormat"] == "JWT"


def test_each_hook_has_its_own_context(document: dict[str, Any]) -> None:
    def context(path: str) -> dict[str, Any]:
        body = document["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
        return body["properties"]["context"]

    assert "selections" in context("/cds-services/SactOrderSelect")["required"]
    assert "selections" not in context("/cds-services/SactOrderSign")["properties"]


@pytest.mark.parametrize(("name", "path"), [("order-select.json", "/cds-services/SactOrderSelect"),
                                            ("order-sign.json", "/cds-services/SactOrderSign")])
def test_real_requests_and_responses_match_the_schemas(document: dict[str, Any], engine: Any,
                                                       name: str, path: str) -> None:
    operation = document["paths"][path]["post"]
    body = json.loads((EXAMPLES / name).read_text(encoding="utf-8"))
    _check(document, operation["requestBody"]["content"]["application/json"]["schema"], body)
    response = call(_app(engine), "POST", path, json=body)
    assert response.status_code == 200 and response.json()["cards"]
    _check(document, operation["responses"]["200"]["content"]["application/json"]["schema"], response.json())
    wrong = {**body, "hook": "patient-view"}
    with pytest.raises(jsonschema.ValidationError):  # the schema refuses what the service refuses
        _check(document, operation["requestBody"]["content"]["application/json"]["schema"], wrong)
    error = call(_app(engine), "POST", path, json={"hook": body["hook"]})
    assert error.status_code == 400
    _check(document, operation["responses"]["400"]["content"]["application/json"]["schema"], error.json())


def test_discovery_and_readiness_match_the_schemas(document: dict[str, Any], engine: Any) -> None:
    app = _app(engine)
    for path, status in (("/cds-services", "200"), ("/healthz", "200"), ("/readyz", "200")):
        schema = document["paths"][path]["get"]["responses"][status]["content"]["application/json"]["schema"]
        _check(document, schema, call(app, "GET", path).json())


def test_docs_page_shows_the_document_and_a_setting_turns_it_off(engine: Any) -> None:
    page = call(_app(engine), "GET", "/docs")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "/openapi.json" in page.text and "swagger" in page.text.lower()
    off = _app(engine, docs=False)
    assert call(off, "GET", "/docs").status_code == 404
    assert call(off, "GET", "/openapi.json").status_code == 200


def test_the_document_names_the_public_base_url_as_its_server(engine: Any) -> None:
    doc = call(_app(engine, public_base_url="https://cds.example.org/"), "GET", "/openapi.json").json()
    assert doc["servers"] == [{"url": "https://cds.example.org"}]
