"""The reference CDS Hooks sandbox can call the service from a browser (cds-hooks.md §3.1):
the CORS preflight passes and a request signed the way the sandbox signs is served."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import jwt
import pytest
from _fakes import Signer, app_with, call, calls, hook_request

SANDBOX = "https://sandbox.cds-hooks.org"
SANDBOX_JWKS = f"{SANDBOX}/.well-known/jwks.json"
SANDBOX_KID = "44823f3d-0b01-4a6c-a2f7-b6c4a3f6b3c1"
PREFLIGHT = {
    "Origin": SANDBOX,
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "authorization,content-type",
}


@pytest.mark.parametrize(
    ("path", "method"),
    [
        ("/cds-services", "GET"),
        ("/cds-services/SactOrderSelect", "POST"),
        ("/cds-services/SactOrderSelect/feedback", "POST"),
    ],
)
def test_the_sandbox_preflight_passes_on_every_cds_endpoint(path: str, method: str) -> None:
    app, _, _ = app_with()
    r = call(app, "OPTIONS", path, headers=PREFLIGHT | {"Access-Control-Request-Method": method})
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == SANDBOX
    allowed = {h.strip().lower() for h in r.headers["access-control-allow-headers"].split(",")}
    assert {"authorization", "content-type"} <= allowed
    assert method in r.headers["access-control-allow-methods"]
    assert "access-control-allow-credentials" not in r.headers


def test_a_preflight_from_an_origin_not_configured_is_refused() -> None:
    app, _, _ = app_with()
    r = call(app, "OPTIONS", "/cds-services", headers=PREFLIGHT | {"Origin": "https://evil.example"})
    assert r.status_code == 400 and "access-control-allow-origin" not in r.headers


def test_configured_origins_replace_the_default() -> None:
    app, _, _ = app_with(cors_origins=("*",))
    r = call(app, "OPTIONS", "/cds-services", headers=PREFLIGHT | {"Origin": "https://ehr.example"})
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "*"


def sandbox_token(private_key: Any, aud: str) -> str:
    """Exactly the sandbox's JWT: ES384, kid + jku header, iss/aud/exp(now+300)/iat/jti(uuid)."""
    now = int(time.time())
    claims = {"iss": SANDBOX, "aud": aud, "exp": now + 300, "iat": now, "jti": str(uuid.uuid4())}
    return jwt.encode(
        claims,
        private_key,
        algorithm="ES384",
        headers={"typ": "JWT", "kid": SANDBOX_KID, "jku": SANDBOX_JWKS},
    )


def test_the_sandbox_calls_discovery_and_a_hook_from_the_browser() -> None:
    sandbox = Signer("ES384", iss=SANDBOX, kid=SANDBOX_KID)
    jwks_fetches: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        jwks_fetches.append(str(request.url))
        return (
            httpx.Response(200, json=sandbox.jwks)
            if str(request.url) == SANDBOX_JWKS
            else httpx.Response(404)
        )

    issuer = sandbox.issuer(jwks_url=SANDBOX_JWKS, jku=(SANDBOX_JWKS,), algorithms=("ES384",))
    app, _, _ = app_with(
        trusted_issuers=(issuer,),
        transport=httpx.MockTransport(handler),
        public_base_url="https://cds.example.org",
    )
    url = "https://cds.example.org/cds-services/SactOrderSelect"
    discovery_url = "https://cds.example.org/cds-services"
    body = hook_request()
    del body["prefetch"]["observations"]  # the sandbox drops keys it could not fill...
    body["prefetch"]["observations"] = {"resourceType": "Bundle", "type": "searchset", "total": 0}
    del body["context"]["draftOrders"]["type"]  # ...and sends draftOrders without Bundle.type
    preflight, discovery, hook = calls(
        app,
        ("OPTIONS", "/cds-services/SactOrderSelect", {"headers": PREFLIGHT}),
        (
            "GET",
            "/cds-services",
            {
                "headers": {
                    "Origin": SANDBOX,
                    "Accept": "application/json",
                    "Authorization": f"Bearer {sandbox_token(sandbox.private, discovery_url)}",
                }
            },
        ),
        (
            "POST",
            "/cds-services/SactOrderSelect",
            {
                "json": body,
                "headers": {
                    "Origin": SANDBOX,
                    "Accept": "application/json",
                    "Content-Type": "application/json",
                    "Authorization": f"Bearer {sandbox_token(sandbox.private, url)}",
                },
            },
        ),
    )
    assert preflight.status_code == 200
    assert discovery.status_code == 200 and discovery.json()["services"]
    assert hook.status_code == 200 and hook.json()["cards"]
    for r in (discovery, hook):
        assert r.headers["access-control-allow-origin"] == SANDBOX
    assert jwks_fetches == [SANDBOX_JWKS]  # fetched once, then cached


def test_errors_carry_cors_headers_so_the_browser_can_show_them() -> None:
    sandbox = Signer("ES384", iss=SANDBOX)
    app, _, _ = app_with(trusted_issuers=(sandbox.issuer(),), transport=sandbox.transport())
    unauthorized = call(
        app, "POST", "/cds-services/SactOrderSelect", json=hook_request(), headers={"Origin": SANDBOX}
    )
    assert unauthorized.status_code == 401 and unauthorized.headers["access-control-allow-origin"] == SANDBOX


def test_a_rejected_preflight_is_logged_once_per_origin_with_the_setting_to_change(
    caplog: pytest.LogCaptureFixture,
) -> None:
    import logging

    app, _, _ = app_with()
    evil = PREFLIGHT | {"Origin": "http://127.0.0.1:5173"}
    with caplog.at_level(logging.WARNING, logger="sact_cds.api"):
        for _ in range(3):
            assert call(app, "OPTIONS", "/cds-services", headers=evil).status_code == 400
        call(app, "OPTIONS", "/cds-services", headers=PREFLIGHT | {"Origin": "http://localhost:8000"})
        call(app, "OPTIONS", "/cds-services", headers=PREFLIGHT)  # allowed: no line
    lines = [r.getMessage() for r in caplog.records if "CORS preflight" in r.getMessage()]
    assert len(lines) == 2
    assert "http://127.0.0.1:5173 rejected" in lines[0] and "cors_origins" in lines[0] and "CDS_CORS_ORIGINS" in lines[0]
    assert "http://localhost:8000" in lines[1]
