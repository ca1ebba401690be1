"""JWT bearer authentication (CDS Hooks 2.0 §trusting-cds-clients, cds-hooks.md §1.6):
every failure is a 401 with no detail; tokens never reach logs or the store."""

from __future__ import annotations

import json
import logging
import time
import uuid
from pathlib import Path
from typing import Any

import jwt
import pytest
from _fakes import Signer, app_with, call, calls, hook_request, settings
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from sqlalchemy import text

from cds_service.api import create_app
from cds_service.api.logging import JsonFormatter, RedactFilter
from cds_service.api.security import ReplayCache
from cds_service.cli import main
from cds_service.settings import Issuer, SettingsError

BASE = "http://testserver"
SELECT = "/cds-services/SactOrderSelect"
SIGNER = Signer("ES384")


def secured(*signers: Signer, **changes: Any) -> tuple[Any, Any, Any]:
    signers = signers or (SIGNER,)

    import httpx

    def handler(request: httpx.Request) -> httpx.Response:
        for s in signers:
            if str(request.url) == f"{s.iss}/.well-known/jwks.json":
                return httpx.Response(200, json=s.jwks)
        return httpx.Response(404)

    issuers = changes.pop("trusted_issuers", tuple(s.issuer() for s in signers))
    return app_with(trusted_issuers=issuers, transport=httpx.MockTransport(handler), **changes)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def post(app: Any, token: str | None, path: str = SELECT) -> Any:
    return call(app, "POST", path, json=hook_request(), headers=bearer(token) if token else {})


def assert_401(response: Any) -> None:
    assert response.status_code == 401
    assert response.content == b"" and response.headers["www-authenticate"] == "Bearer"


def test_a_valid_es384_token_is_accepted_on_discovery_and_hooks() -> None:
    app, _, _ = secured()
    assert (
        call(app, "GET", "/cds-services", headers=bearer(SIGNER.token(BASE + "/cds-services"))).status_code
        == 200
    )
    assert post(app, SIGNER.token(BASE + SELECT)).status_code == 200


def test_aud_may_be_an_array_and_a_trailing_slash_is_ignored() -> None:
    app, _, _ = secured()
    assert post(app, SIGNER.token(["https://other.example", BASE + SELECT])).status_code == 200
    assert post(app, SIGNER.token(BASE + SELECT + "/")).status_code == 200


def test_no_token_or_another_scheme_is_401() -> None:
    app, _, _ = secured()
    assert_401(post(app, None))
    assert_401(call(app, "GET", "/cds-services", headers={"Authorization": "Basic dXNlcjpwdw=="}))
    assert_401(call(app, "GET", "/cds-services", headers={"Authorization": "Bearer not.a.jwt"}))


def test_an_expired_token_is_401() -> None:
    app, _, _ = secured()
    assert_401(post(app, SIGNER.token(BASE + SELECT, iat=time.time() - 900, exp=time.time() - 600)))


def test_a_token_issued_in_the_future_is_401() -> None:
    app, _, _ = secured()
    assert_401(post(app, SIGNER.token(BASE + SELECT, iat=time.time() + 600, exp=time.time() + 900)))


def test_the_wrong_aud_is_401() -> None:
    app, _, _ = secured()
    assert_401(post(app, SIGNER.token(BASE + "/cds-services")))  # discovery's aud on a service
    assert_401(post(app, SIGNER.token("https://cds.example.org" + SELECT)))


def test_aud_follows_the_public_base_url_when_configured() -> None:
    app, _, _ = secured(public_base_url="https://cds.example.org/sact")
    assert post(app, SIGNER.token("https://cds.example.org/sact" + SELECT)).status_code == 200
    assert_401(post(app, SIGNER.token(BASE + SELECT)))


def test_an_unknown_issuer_is_401() -> None:
    app, _, _ = secured()
    assert_401(post(app, SIGNER.token(BASE + SELECT, iss="https://evil.example")))
    assert_401(post(app, Signer("ES384", iss="https://evil.example").token(BASE + SELECT)))


def test_a_replayed_jti_is_401() -> None:
    app, _, _ = secured()
    token = SIGNER.token(BASE + SELECT)
    first, second = calls(
        app,
        ("POST", SELECT, {"json": hook_request(), "headers": bearer(token)}),
        ("POST", SELECT, {"json": hook_request(), "headers": bearer(token)}),
    )
    assert first.status_code == 200
    assert_401(second)


@pytest.mark.parametrize("claim", ["jti", "exp", "iat", "aud", "iss"])
def test_a_missing_required_claim_is_401(claim: str) -> None:
    app, _, _ = secured()
    assert_401(post(app, SIGNER.token(BASE + SELECT, drop=[claim])))


def test_a_token_living_longer_than_allowed_is_401() -> None:
    app, _, _ = secured()
    assert_401(post(app, SIGNER.token(BASE + SELECT, exp=time.time() + 2 * 3600)))


def test_alg_none_is_401() -> None:
    app, _, _ = secured()
    token = jwt.encode(
        {
            "iss": SIGNER.iss,
            "aud": BASE + SELECT,
            "iat": int(time.time()),
            "exp": int(time.time()) + 300,
            "jti": str(uuid.uuid4()),
        },
        key=None,
        algorithm="none",
        headers={"kid": SIGNER.kid},
    )
    assert_401(post(app, token))


def test_an_hmac_token_signed_with_the_public_key_is_401() -> None:
    """The classic algorithm-confusion attack: HS256 keyed with the issuer's public key."""
    app, _, _ = secured()
    claims = {
        "iss": SIGNER.iss,
        "aud": BASE + SELECT,
        "iat": int(time.time()),
        "exp": int(time.time()) + 300,
        "jti": str(uuid.uuid4()),
    }
    pem = SIGNER.private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = {"alg": "HS256", "typ": "JWT", "kid": SIGNER.kid}
    signing_input = f"{_b64(header)}.{_b64(claims)}".encode()
    import hashlib
    import hmac

    token = (
        signing_input.decode()
        + "."
        + jwt.utils.base64url_encode(hmac.new(pem, signing_input, hashlib.sha256).digest()).decode()
    )
    assert_401(post(app, token))
    assert_401(
        post(
            app,
            jwt.encode(
                claims, "shared-secret-of-32-bytes-or-more!!", algorithm="HS256", headers={"kid": SIGNER.kid}
            ),
        )
    )


def _b64(obj: dict[str, Any]) -> str:
    return jwt.utils.base64url_encode(json.dumps(obj, separators=(",", ":")).encode()).decode()


def test_es256_is_refused_unless_the_issuer_allows_it() -> None:
    es256 = Signer("ES256", iss="https://ehr256.example")
    app, _, _ = secured(es256, trusted_issuers=(es256.issuer(algorithms=("ES384", "RS384")),))
    assert_401(post(app, es256.token(BASE + SELECT)))
    app, _, _ = secured(es256, trusted_issuers=(es256.issuer(algorithms=("ES256",)),))
    assert post(app, es256.token(BASE + SELECT)).status_code == 200


def test_a_jku_not_allow_listed_for_the_issuer_is_401() -> None:
    app, _, _ = secured()
    good = SIGNER.token(BASE + SELECT, headers={"jku": f"{SIGNER.iss}/.well-known/jwks.json"})
    bad = SIGNER.token(BASE + SELECT, headers={"jku": "https://evil.example/jwks.json"})
    assert post(app, good).status_code == 200
    assert_401(post(app, bad))


def test_an_unknown_kid_is_401_and_a_rotated_key_is_fetched() -> None:
    rotating = Signer("ES384", iss="https://rotating.example")
    app, _, _ = secured(rotating)
    assert post(app, rotating.token(BASE + SELECT)).status_code == 200
    other = Signer("ES384", iss="https://rotating.example")
    assert_401(post(app, other.token(BASE + SELECT)))  # kid unknown, refetch too soon
    rotating.jwks = other.jwks  # the issuer rotates its keys
    app.state.cds.auth.jwks[rotating.iss]._min_refresh = 0
    assert post(app, other.token(BASE + SELECT)).status_code == 200


def test_keys_can_come_from_a_jwks_file(tmp_path: Path) -> None:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(SIGNER.jwks))
    issuer = SIGNER.issuer(jwks_url=None, jwks_file=path, jku=())
    app, _, _ = app_with(trusted_issuers=(issuer,))
    assert post(app, SIGNER.token(BASE + SELECT)).status_code == 200
    assert_401(post(app, SIGNER.token(BASE + SELECT, headers={"jku": f"{SIGNER.iss}/.well-known/jwks.json"})))


def test_feedback_takes_its_own_url_as_aud_and_tolerates_the_service_url() -> None:
    app, _, _ = secured()
    body = {"feedback": [{"card": "c1", "outcome": "overridden", "outcomeTimestamp": "2026-11-23T10:00:00Z"}]}
    for aud in (BASE + SELECT + "/feedback", BASE + SELECT):
        assert (
            call(app, "POST", SELECT + "/feedback", json=body, headers=bearer(SIGNER.token(aud))).status_code
            == 200
        )
    assert_401(
        call(
            app, "POST", SELECT + "/feedback", json=body, headers=bearer(SIGNER.token(BASE + "/cds-services"))
        )
    )


def test_health_and_metrics_need_no_token() -> None:
    app, _, _ = secured()
    assert [
        r.status_code
        for r in calls(app, ("GET", "/healthz", {}), ("GET", "/readyz", {}), ("GET", "/metrics", {}))
    ] == [200] * 3


def test_auth_failures_are_counted() -> None:
    app, _, _ = secured()
    post(app, None)
    assert 'cds_errors_total{kind="auth"} 1.0' in call(app, "GET", "/metrics").text


def test_the_replay_cache_forgets_a_jti_only_after_it_expires() -> None:
    now = [1000.0]
    cache = ReplayCache(clock=lambda: now[0])
    assert cache.add("a", 1010) and not cache.add("a", 1010)
    now[0] = 1011
    assert cache.add("b", 1020) and len(cache) == 1 and cache.add("a", 1030)


def test_a_full_replay_cache_refuses_new_tokens_rather_than_forgetting() -> None:
    cache = ReplayCache(max_entries=2, clock=lambda: 0.0)
    assert cache.add("a", 10) and cache.add("b", 10) and not cache.add("c", 10)


# -- unauthenticated mode ------------------------------------------------------------------


def test_without_issuers_the_server_runs_unauthenticated_on_loopback_with_a_loud_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="cds_service.api.security"):
        app, _, _ = app_with()
    assert "WITHOUT authentication" in caplog.text
    assert post(app, None).status_code == 200


def test_without_issuers_a_non_loopback_bind_is_refused_unless_allowed() -> None:
    with pytest.raises(SettingsError, match="allow-unauthenticated"):
        create_app(settings(host="0.0.0.0"), engine=object())
    app, _, _ = app_with(host="0.0.0.0", allow_unauthenticated=True)
    assert post(app, None).status_code == 200


def test_serve_refuses_to_bind_a_non_loopback_address_without_auth(monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn

    import cds_service.api.logging

    monkeypatch.setattr(cds_service.api.logging, "configure_logging", lambda *a, **kw: None)
    monkeypatch.setattr(uvicorn, "run", lambda *a, **kw: pytest.fail("must not bind"))
    result = CliRunner().invoke(main, ["serve", "--host", "0.0.0.0"], env={"CDS_DATABASE_URL": "sqlite://"})
    assert result.exit_code != 0 and "allow-unauthenticated" in result.output


@pytest.mark.parametrize("alg", ["none", "HS256", "HS384", "HS512"])
def test_settings_refuse_none_and_hmac_algorithms(alg: str) -> None:
    with pytest.raises(SettingsError, match=alg):
        Issuer.parse({"iss": "x", "jwks_url": "https://x", "algorithms": [alg]}, "test")
    with pytest.raises(SettingsError, match=alg):
        settings(trusted_issuers=(SIGNER.issuer(algorithms=(alg,)),))


# -- secrets stay out of logs and the store ------------------------------------------------


def test_tokens_never_reach_logs_or_the_store(caplog: pytest.LogCaptureFixture) -> None:
    app, _, store = secured()
    access_token = "fhir-access-token-7f3a"
    jwts = [SIGNER.token(BASE + SELECT) for _ in range(2)]
    body = hook_request(
        fhirServer="https://fhir.example.org/r4",
        fhirAuthorization={"access_token": access_token, "token_type": "Bearer"},
    )
    with caplog.at_level(logging.DEBUG):
        calls(app, *[("POST", SELECT, {"json": body, "headers": bearer(t)}) for t in (*jwts, jwts[0])])
    assert caplog.records
    for secret in (access_token, *jwts, jwts[0].split(".")[2]):
        assert secret not in caplog.text
    with store.engine.connect() as conn:
        dump = repr(
            [conn.execute(text(f"SELECT * FROM {t}")).all() for t in ("invocation", "card", "feedback")]
        )
    assert access_token not in dump and not any(t in dump for t in jwts)


def test_the_json_log_formatter_masks_anything_that_looks_like_a_token() -> None:
    record = logging.LogRecord(
        "x", logging.INFO, __file__, 1, "header was Bearer abc.def and %s", (SIGNER.token("a"),), None
    )
    RedactFilter().filter(record)
    line = json.loads(JsonFormatter().format(record))
    assert "abc.def" not in line["message"] and "eyJ" not in line["message"]
    assert set(line) >= {"time", "level", "logger", "message"}


def test_the_source_pages_need_no_token_when_the_hooks_do() -> None:
    # the pages a card links to hold no patient data; a clinician's browser opens them
    # without the EHR's JWT (issue 13)
    app, _, _ = secured()
    assert_401(call(app, "GET", "/cds-services"))
    for path in ("/sources", "/sources/ino2", "/sources/nz-regimen", "/sources/clinical-reference"):
        r = call(app, "GET", path)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html"), path
