"""Smoke test run INSIDE the image by build-image.sh (`buildah run`), as the image's user.

Proves: the knowledge validates; the default start (0.0.0.0, no issuers) is refused; with a
trusted issuer the service starts, /healthz answers without a token, discovery answers 401
without one and 200 with a signed one, the example hook requests get cards, the healthcheck
command passes and the audit store is written under CDS_DATA_DIR. Standard library plus the
packages the image already has (PyJWT, cryptography); prints one line per check.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import jwt
from cryptography.hazmat.primitives.asymmetric import ec

EXAMPLES = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("/smoke/examples")


def check(label: str, ok: bool, detail: str = "") -> None:
    print(f"{'ok  ' if ok else 'FAIL'} {label}{': ' + detail if detail and not ok else ''}", flush=True)
    if not ok:
        raise SystemExit(1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def call(url: str, token: str | None = None, body: dict | None = None) -> tuple[int, bytes]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers=headers, method="POST" if data else "GET")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def main() -> None:
    started = time.monotonic()
    check(f"runs as a non-root user (uid {os.getuid()})", os.getuid() != 0)
    done = subprocess.run(["cds-service", "validate"], capture_output=True, text=True)
    check("validate: 0 problems", done.returncode == 0 and " 0 problems" in done.stdout, done.stdout[-500:])

    refused = subprocess.run(["cds-service", "serve"], capture_output=True, text=True, timeout=60)
    check("serve on 0.0.0.0 without issuers is refused",
          refused.returncode != 0 and "without authentication" in refused.stderr and "Traceback" not in refused.stderr,
          refused.stderr[-500:])

    work = Path(tempfile.mkdtemp())
    key = ec.generate_private_key(ec.SECP384R1())
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    jwk.update(kid="smoke", use="sig", alg="ES384")
    (work / "jwks.json").write_text(json.dumps({"keys": [jwk]}))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = dict(os.environ, CDS_PORT=str(port), CDS_PUBLIC_BASE_URL=base, CDS_TRUSTED_ISSUERS=json.dumps(
        [{"iss": "https://ehr.smoke.test", "jwks_file": str(work / "jwks.json"), "algorithms": ["ES384"]}]))

    def token(path: str) -> str:
        now = int(time.time())
        claims = {"iss": "https://ehr.smoke.test", "aud": base + path, "iat": now, "exp": now + 300,
                  "jti": str(uuid.uuid4())}
        return jwt.encode(claims, key, algorithm="ES384", headers={"kid": "smoke"})

    server = subprocess.Popen(["cds-service", "serve"], env=env, stdout=subprocess.DEVNULL,
                              stderr=open(work / "serve.log", "w"))
    try:
        deadline = time.monotonic() + 60
        while True:
            if server.poll() is not None:
                check("serve keeps running", False, (work / "serve.log").read_text()[-800:])
            try:
                status, _ = call(base + "/healthz")
                break
            except OSError:
                if time.monotonic() > deadline:
                    check("serve answers within 60 s", False)
                time.sleep(0.3)
        check("GET /healthz without a token: 200", status == 200)
        health = subprocess.run(json.loads(os.environ.get("SMOKE_HEALTHCHECK", "[]")) or
                                ["python3", "-c", "import urllib.request; urllib.request.urlopen("
                                 f"'{base}/healthz', timeout=2)"], env=env)
        check("the HEALTHCHECK command passes", health.returncode == 0)
        status, _ = call(base + "/cds-services")
        check("GET /cds-services without a token: 401", status == 401, str(status))
        status, body = call(base + "/cds-services", token("/cds-services"))
        services = json.loads(body)["services"] if status == 200 else []
        check("GET /cds-services with a signed token: 200, 2 services", len(services) == 2, f"{status} {body[:300]!r}")
        by_hook = {s["hook"]: s["id"] for s in services}
        for example in sorted(EXAMPLES.glob("*.json")):
            request = json.loads(example.read_text())
            if request.get("hook") not in by_hook:
                continue
            path = f"/cds-services/{by_hook[request['hook']]}"
            status, body = call(base + path, token(path), request)
            cards = json.loads(body).get("cards", []) if status == 200 else []
            check(f"POST {path} ({example.name}): 200 with cards", status == 200 and bool(cards), f"{status} {body[:300]!r}")
    finally:
        server.terminate()
        server.wait(timeout=20)
    store = Path(os.environ["CDS_DATA_DIR"]) / "audit.sqlite"
    check(f"audit store written at {store}", store.is_file())
    done = subprocess.run(["cds-service", "audit", "--format", "csv"], capture_output=True, text=True, env=env)
    check("cds-service audit reads it", done.returncode == 0 and "Traceback" not in done.stderr, done.stderr[-500:])
    print(f"smoke test passed in {time.monotonic() - started:.1f} s")


if __name__ == "__main__":
    main()
