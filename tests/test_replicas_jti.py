"""Two `cds-service serve` processes on one database refuse a token the other accepted
(issue 12 point 3): the single-use `jti` check lives in the store, not in a process.

Runs against a SQLite file always, and PostgreSQL when ``CDS_TEST_POSTGRES_URL`` is set
(``.ci/run`` provides one with ``.ci/postgres``)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from _fakes import Signer
from _replay_support import free_port

from cds_service.replay.request import build_request
from cds_service.replay.scenario import load_scenario

SIGNER = Signer("ES384")
PUBLIC = "https://cds.example.org"  # both replicas sit behind one reverse proxy
SCENARIO = Path(__file__).parent / "scenarios" / "blood-counts-anc-1.0-no-card.json"


def _serve(config: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:  # the child keeps its own descriptor
        return subprocess.Popen(
            [sys.executable, "-c", "from cds_service.cli import main; main()", "serve", "--config",
             str(config), "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise AssertionError(f"service at {url} did not start:\n{log.read_text()}")


@pytest.fixture
def replicas(database_url: str, tmp_path: Path) -> Iterator[list[str]]:
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps(SIGNER.jwks))
    config = tmp_path / "sact.toml"
    config.write_text(
        f'[service]\ndatabase_url = "{database_url}"\npublic_base_url = "{PUBLIC}"\nlog_level = "WARNING"\n'
        f'[[security.issuers]]\niss = "{SIGNER.iss}"\njwks_file = "{jwks}"\nalgorithms = ["ES384"]\n'
    )
    procs, urls = [], []
    try:
        for n in range(2):
            port, log = free_port(), tmp_path / f"serve-{n}.log"
            procs.append((_serve(config, port, log), log))
            urls.append(f"http://127.0.0.1:{port}")
        for url, (proc, log) in zip(urls, procs, strict=True):
            _wait_ready(url, proc, log)
        yield urls
    finally:
        for proc, _ in procs:
            proc.terminate()
        for proc, _ in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


def _sign_request(url: str) -> tuple[str, dict[str, Any]]:
    """The order-sign service's path and a whole-record request for it (scenario + prefetch)."""
    discovery = httpx.get(
        url + "/cds-services", headers={"Authorization": f"Bearer {SIGNER.token(PUBLIC + '/cds-services')}"}
    )
    assert discovery.status_code == 200
    (service,) = [s for s in discovery.json()["services"] if s["hook"] == "order-sign"]
    scenario = load_scenario(SCENARIO).resolved(datetime.now(UTC))
    return f"/cds-services/{service['id']}", build_request(scenario, service["prefetch"]).body


def _post(url: str, path: str, body: dict[str, Any], token: str) -> int:
    headers = {"Authorization": f"Bearer {token}"}
    return httpx.post(url + path, json=body, headers=headers, timeout=30).status_code


def test_a_token_used_on_one_replica_is_refused_by_the_other(replicas: list[str]) -> None:
    a, b = replicas
    path, body = _sign_request(a)
    token = SIGNER.token(PUBLIC + path)
    assert _post(a, path, body, token) == 200
    assert _post(b, path, body, token) == 401  # replayed across processes
    assert _post(a, path, body, token) == 401
    assert _post(b, path, body, SIGNER.token(PUBLIC + path)) == 200  # b itself authenticates fine


def test_concurrent_claims_of_one_jti_have_exactly_one_winner(database_url: str) -> None:
    """Eight stores (as eight processes would hold) race to claim the same token."""
    from concurrent.futures import ThreadPoolExecutor

    from cds_service.store import AuditStore

    stores = [AuditStore(database_url) for _ in range(8)]
    jti, expires = f"race-{time.time_ns()}", time.time() + 300
    try:
        with ThreadPoolExecutor(8) as pool:
            wins = list(pool.map(lambda s: s.claim_token(SIGNER.iss, jti, expires), stores))
    finally:
        for s in stores:
            s.close()
    assert wins.count(True) == 1
