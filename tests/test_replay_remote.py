"""`replay --url`: a running service (uvicorn on loopback) called with a signed JWT."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest
from _replay_support import HARMLESS, IMPOSSIBLE, loopback_socket, uvicorn_thread, write_scenario
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from cds_service.cli import main
from cds_service.replay.run import JwtSigner, make_engine, replay_settings
from cds_service.settings import Issuer

ISS = "https://replay-tester.example.org"
KID = "replay-test-key-1"


def _pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP384R1())


@pytest.fixture
def service(ec_key: ec.EllipticCurvePrivateKey, tmp_path: Path) -> Iterator[str]:
    """The real service on 127.0.0.1:<free port>, trusting ISS with the test key's JWK Set."""
    from cds_service.api import create_app

    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(ec_key.public_key()))
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [jwk | {"kid": KID, "alg": "ES384", "use": "sig"}]}))
    sock = loopback_socket()
    settings = replay_settings(
        trusted_issuers=(Issuer(ISS, jwks_file=jwks, algorithms=("ES384",)),), port=sock.getsockname()[1]
    )
    app = create_app(settings, engine=make_engine(settings))
    with uvicorn_thread(app, sock) as url:
        yield url


@pytest.fixture
def cases(tmp_path: Path) -> Path:
    folder = tmp_path / "cases"
    folder.mkdir()
    write_scenario(folder, "one.json", title="A drafted dose replays against the running service", expect=HARMLESS)
    write_scenario(folder, "two.json", title="A second scenario with active fluconazole replays too",
                   expect=HARMLESS, with_azole=True)
    return folder


def test_a_folder_replays_against_a_running_service_with_a_signed_jwt(
    service: str, cases: Path, ec_key: ec.EllipticCurvePrivateKey, tmp_path: Path
) -> None:
    key = tmp_path / "client-key.pem"
    key.write_bytes(_pem(ec_key))
    junit = tmp_path / "junit.xml"
    result = CliRunner().invoke(
        main,
        ["replay", str(cases), "--url", service, "--jwt-key", str(key), "--jwt-iss", ISS, "--jwt-kid", KID,
         "--junit", str(junit)],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert "Replay summary" in result.output
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None and (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("2", "0", "0")


def test_a_failing_expectation_against_a_running_service_exits_1(
    service: str, cases: Path, ec_key: ec.EllipticCurvePrivateKey, tmp_path: Path
) -> None:
    write_scenario(cases, "three.json", title="An impossible expectation fails remotely", expect=IMPOSSIBLE)
    key = tmp_path / "client-key.pem"
    key.write_bytes(_pem(ec_key))
    result = CliRunner().invoke(
        main, ["replay", str(cases), "--url", service + "/cds-services", "--jwt-key", str(key),
               "--jwt-iss", ISS, "--jwt-kid", KID, "--json"],
        catch_exceptions=False,
    )
    assert result.exit_code == 1
    summary = json.loads(result.output)["summary"]
    assert (summary["passed"], summary["failed"], summary["error"]) == (2, 1, 0)


def test_without_a_jwt_the_service_refuses_and_replay_reports_errors(service: str, cases: Path) -> None:
    result = CliRunner().invoke(main, ["replay", str(cases), "--url", service, "--json"], catch_exceptions=False)
    assert result.exit_code == 1
    doc = json.loads(result.output)
    assert doc["summary"]["error"] == 2
    assert all("401" in (r["error"] or "") for r in doc["results"])


def test_the_signer_uses_es384_for_ec_and_rs384_for_rsa_keys(ec_key: ec.EllipticCurvePrivateKey) -> None:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    for key, alg in ((ec_key, "ES384"), (rsa_key, "RS384")):
        token = JwtSigner(_pem(key), iss=ISS, kid=KID).token("http://127.0.0.1:1/cds-services/x")
        header = jwt.get_unverified_header(token)
        assert (header["alg"], header["kid"], header["typ"]) == (alg, KID, "JWT")
        claims = jwt.decode(token, key.public_key(), algorithms=[alg], audience="http://127.0.0.1:1/cds-services/x")
        assert claims["iss"] == ISS and claims["exp"] - claims["iat"] == 300 and claims["jti"]
