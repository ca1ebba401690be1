"""JWT edges of issue 12: `aud` never from request headers, string `exp`/`iat`, token size,
single-use `jti` kept in the store (shared by processes, surviving restarts)."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from _fakes import Signer, app_with, call, hook_request

from cds_service.api.security import check_startup
from cds_service.settings import Settings, SettingsError
from cds_service.store import AuditStore

SELECT = "/cds-services/SactOrderSelect"
SIGNER = Signer("ES384")


def secured(store: AuditStore | None = None, **changes: Any) -> Any:
    changes.setdefault("trusted_issuers", (SIGNER.issuer(),))
    app, _, _ = app_with(store=store, transport=SIGNER.transport(), **changes)
    return app


def post(app: Any, token: str, headers: dict[str, str] | None = None) -> httpx.Response:
    return call(
        app, "POST", SELECT, json=hook_request(), headers={"Authorization": f"Bearer {token}", **(headers or {})}
    )


def raw_token(**claims: Any) -> str:
    now = int(time.time())
    body = {"iss": SIGNER.iss, "iat": now, "exp": now + 300, "jti": str(uuid.uuid4()), **claims}
    return jwt.encode(body, SIGNER.private, algorithm="ES384", headers={"kid": SIGNER.kid})


def test_aud_is_never_taken_from_the_host_header() -> None:
    """On loopback without public_base_url the audience is the bind address; a token minted
    for another service of the same issuer is refused even when the Host header names it."""
    app = secured(public_base_url="", host="127.0.0.1", port=8080)
    other = "https://other-service.example.org" + SELECT
    assert post(app, SIGNER.token(other), {"Host": "other-service.example.org"}).status_code == 401
    assert post(app, SIGNER.token("http://testserver" + SELECT)).status_code == 401
    assert post(app, SIGNER.token("http://127.0.0.1:8080" + SELECT)).status_code == 200
    assert post(app, SIGNER.token("http://localhost:8080" + SELECT)).status_code == 200


def test_a_token_for_another_service_of_the_same_issuer_is_refused_behind_a_proxy() -> None:
    app = secured(public_base_url="https://cds.example.org")
    forwarded = {"Host": "pharmacy-cds.example.org", "X-Forwarded-Host": "pharmacy-cds.example.org"}
    assert post(app, SIGNER.token("https://pharmacy-cds.example.org" + SELECT), forwarded).status_code == 401
    assert post(app, SIGNER.token("https://cds.example.org" + SELECT), forwarded).status_code == 200


def test_issuers_on_a_non_loopback_bind_need_a_public_base_url() -> None:
    with pytest.raises(SettingsError, match="public_base_url"):
        check_startup(Settings(host="0.0.0.0", trusted_issuers=(SIGNER.issuer(),), database_url="sqlite://"))
    check_startup(
        Settings(
            host="0.0.0.0",
            trusted_issuers=(SIGNER.issuer(),),
            public_base_url="https://cds.example.org",
            database_url="sqlite://",
        )
    )


def test_serve_refuses_issuers_on_a_network_address_without_a_public_base_url(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from cds_service.cli import main

    jwks = tmp_path / "jwks.json"
    jwks.write_text('{"keys": []}')
    config = tmp_path / "sact.toml"
    config.write_text(f'[service]\nhost = "0.0.0.0"\n[[security.issuers]]\niss = "{SIGNER.iss}"\njwks_file = "{jwks}"\n')
    result = CliRunner().invoke(main, ["serve", "--config", str(config)])
    assert result.exit_code != 0
    assert "public_base_url" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize(
    "claims",
    [
        {"exp": str(int(time.time()) + 300)},
        {"iat": str(int(time.time()))},
        {"exp": True},
    ],
    ids=["string-exp", "string-iat", "boolean-exp"],
)
def test_exp_and_iat_that_are_not_numbers_are_401(claims: dict[str, Any]) -> None:
    app = secured()
    response = post(app, raw_token(aud="http://testserver" + SELECT, **claims))
    assert response.status_code == 401 and response.content == b""
    assert 'cds_errors_total{kind="internal"}' not in app.state.cds.metrics.render().body.decode()


def test_a_token_over_the_size_limit_is_401_before_decoding() -> None:
    app = secured(jwt_max_bytes=2048)
    padded = raw_token(aud="http://testserver" + SELECT, pad="x" * 4000)
    assert post(app, padded).status_code == 401
    assert post(app, raw_token(aud="http://testserver" + SELECT)).status_code == 200


def test_a_used_jti_is_refused_by_another_app_on_the_same_store(tmp_path: Path) -> None:
    """Two apps (as two processes would) on one SQLite file: the second refuses the token."""
    url = f"sqlite:///{tmp_path / 'audit.sqlite'}"
    token = SIGNER.token("http://testserver" + SELECT)
    first, second = AuditStore(url), AuditStore(url)
    assert post(secured(first), token).status_code == 200
    assert post(secured(second), token).status_code == 401
    restarted = AuditStore(url)  # a restarted process: memory gone, the store remembers
    assert post(secured(restarted), token).status_code == 401


def test_the_store_takes_over_an_expired_jti_and_prunes_expired_rows(tmp_path: Path) -> None:
    store = AuditStore(f"sqlite:///{tmp_path / 'a.sqlite'}")
    assert store.claim_token("iss", "j1", 100.0, now=50.0)
    assert not store.claim_token("iss", "j1", 200.0, now=99.0)  # still current: a replay
    assert store.claim_token("iss", "j1", 300.0, now=150.0)  # expired row taken over
    assert store.claim_token("iss", "j2", 120.0, now=50.0)
    assert store._prune_tokens(now=250.0) == 1  # j2 gone, j1 (until 300) kept
    assert not store.claim_token("iss", "j1", 400.0, now=260.0)


def test_an_unreachable_jti_store_fails_closed(tmp_path: Path) -> None:
    class Down(AuditStore):
        def claim_token(self, *args: Any, **kw: Any) -> bool:
            from sqlalchemy.exc import OperationalError

            raise OperationalError("INSERT", {}, Exception("down"))

    app = secured(Down("sqlite://"))
    assert post(app, SIGNER.token("http://testserver" + SELECT)).status_code == 401
