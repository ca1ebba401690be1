"""``replay --serve-fhir`` as a SMART EHR for tests: launch, authorize, token, form writes.

Just enough of SMART App Launch 2.0 (EHR launch) to drive the INO2 form app end to end
without a real EHR, and strict where the app must be right:

- ``GET /.well-known/smart-configuration``: endpoints, ``code_challenge_methods_supported``
  ``["S256"]``, ``capabilities`` (launch-ehr, client-public, context-ehr-patient, sso-openid-connect);
- ``GET /ehr/launch?app=<launch URL>&appContext=<text>``: what the EHR does when a clinician
  opens a card's SMART link: a new ``launch`` id bound to the patient and the link's
  ``appContext``, then a redirect to ``<app>?iss=<this base>&launch=<id>`` (loopback apps only);
- ``GET /auth/authorize``: checks ``response_type``, ``launch``, ``aud`` = this base,
  ``state``, PKCE ``S256`` and approves at once as the scenario's user (no login page);
- ``POST /auth/token``: checks the code (single use, 5 minutes), ``redirect_uri``,
  ``client_id`` and the PKCE verifier; returns ``access_token``, ``patient``, ``scope``,
  ``appContext`` and an ``id_token`` with ``fhirUser``;
- ``POST /QuestionnaireResponse`` and ``PUT /QuestionnaireResponse/{id}``: need a token of
  this EHR whose scope allows the write and whose patient is the response's subject; the
  response is kept in memory for the life of the server, so later reads and searches (the
  next hook call's prefetch or fallback) see it. A POST with ``If-None-Exist:
  identifier=<system>|<value>`` is a conditional create: a stored response with that
  identifier is returned (200) instead of storing another. For tests of the app's saves, ``write_delay``
  (seconds) slows each write and ``refuse_writes`` (a count) answers the next writes 500.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import secrets
import time
import uuid
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import jwt
import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from cds_service.replay import fhir_search

CODE_SECONDS = 300
TOKEN_SECONDS = 3600
FHIR_JSON = "application/fhir+json"


def _outcome(code: str, text: str, status: int) -> JSONResponse:
    body = {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": code, "diagnostics": text}]}
    return JSONResponse(body, status_code=status, media_type=FHIR_JSON)


def _oauth_error(error: str, text: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": error, "error_description": text}, status_code=status)


def _loopback(url: str) -> bool:
    return urlsplit(url).scheme in ("http", "https") and urlsplit(url).hostname in ("127.0.0.1", "localhost", "::1")


class SmartEhr:
    """The EHR side: launches, codes and tokens in memory, and the QuestionnaireResponses written."""

    def __init__(self, index: fhir_search.ResourceIndex, patient_id: str | None, user_id: str,
                 base_url: str = "") -> None:
        self.index, self.patient_id, self.user_id, self.base_url = index, patient_id, user_id, base_url
        self.launches: dict[str, dict[str, Any]] = {}
        self.codes: dict[str, dict[str, Any]] = {}
        self.tokens: dict[str, dict[str, Any]] = {}
        self.written: list[dict[str, Any]] = []
        self.write_delay = 0.0
        self.refuse_writes = 0
        self._secret = secrets.token_bytes(32)

    def base(self, request: Request) -> str:
        return (self.base_url or str(request.base_url)).rstrip("/")

    async def configuration(self, request: Request) -> JSONResponse:
        base = self.base(request)
        return JSONResponse({
            "issuer": base,
            "authorization_endpoint": base + "/auth/authorize",
            "token_endpoint": base + "/auth/token",
            "grant_types_supported": ["authorization_code"],
            "code_challenge_methods_supported": ["S256"],
            "scopes_supported": ["launch", "openid", "fhirUser", "patient/*.rs", "patient/QuestionnaireResponse.cu"],
            "response_types_supported": ["code"],
            "capabilities": ["launch-ehr", "client-public", "context-ehr-patient", "sso-openid-connect",
                             "permission-v2"],
        })

    async def ehr_launch(self, request: Request) -> Response:
        app = request.query_params.get("app", "")
        if not _loopback(app):
            return _outcome("invalid", "app must be a loopback http(s) URL", 400)
        launch = secrets.token_urlsafe(16)
        self.launches[launch] = {"patient": self.patient_id, "appContext": request.query_params.get("appContext")}
        target = app + ("&" if "?" in app else "?") + urlencode({"iss": self.base(request), "launch": launch})
        return RedirectResponse(target, status_code=302)

    async def authorize(self, request: Request) -> Response:
        q = request.query_params
        redirect = q.get("redirect_uri", "")
        if not _loopback(redirect) or not q.get("client_id"):
            return _oauth_error("invalid_request", "client_id and a loopback redirect_uri are required")
        problems = []
        if q.get("response_type") != "code":
            problems.append("response_type must be code")
        if q.get("launch") not in self.launches:
            problems.append("unknown launch")
        if (q.get("aud") or "").rstrip("/") != self.base(request):
            problems.append("aud must be this FHIR base URL")
        if q.get("code_challenge_method") != "S256" or not q.get("code_challenge"):
            problems.append("PKCE S256 is required")
        if not q.get("state"):
            problems.append("state is required")
        if "launch" not in (q.get("scope") or "").split():
            problems.append("scope must include launch")
        if problems:
            query = urlencode({"error": "invalid_request", "error_description": "; ".join(problems),
                               "state": q.get("state", "")})
            return RedirectResponse(f"{redirect}?{query}", status_code=302)
        code = secrets.token_urlsafe(24)
        self.codes[code] = {"client_id": q["client_id"], "redirect_uri": redirect, "challenge": q["code_challenge"],
                            "scope": q.get("scope", ""), "launch": self.launches[q["launch"]],
                            "expires": time.time() + CODE_SECONDS}
        return RedirectResponse(f"{redirect}?{urlencode({'code': code, 'state': q['state']})}", status_code=302)

    async def token(self, request: Request) -> JSONResponse:
        form = dict(parse_qsl((await request.body()).decode("utf-8"), keep_blank_values=True))
        grant = self.codes.pop(form.get("code", ""), None)  # single use
        if form.get("grant_type") != "authorization_code" or grant is None or grant["expires"] < time.time():
            return _oauth_error("invalid_grant", "unknown, used or expired code")
        if form.get("redirect_uri") != grant["redirect_uri"] or form.get("client_id") != grant["client_id"]:
            return _oauth_error("invalid_grant", "redirect_uri or client_id differ from the authorization request")
        verifier = form.get("code_verifier", "")
        digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        if not verifier or not secrets.compare_digest(digest, grant["challenge"]):
            return _oauth_error("invalid_grant", "PKCE verifier does not match the challenge")
        access = secrets.token_urlsafe(32)
        patient = grant["launch"]["patient"]
        self.tokens[access] = {"patient": patient, "scope": grant["scope"], "expires": time.time() + TOKEN_SECONDS}
        now = int(time.time())
        id_token = jwt.encode({"iss": self.base(request), "sub": self.user_id, "aud": grant["client_id"],
                               "fhirUser": f"Practitioner/{self.user_id.split('/')[-1]}", "iat": now,
                               "exp": now + TOKEN_SECONDS}, self._secret, algorithm="HS256")
        body: dict[str, Any] = {"access_token": access, "token_type": "Bearer", "expires_in": TOKEN_SECONDS,
                                "scope": grant["scope"], "patient": patient, "id_token": id_token}
        if grant["launch"].get("appContext"):
            body["appContext"] = grant["launch"]["appContext"]
        return JSONResponse(body, headers={"Cache-Control": "no-store"})

    async def write(self, request: Request) -> Response:
        """Create (POST) or update (PUT) a QuestionnaireResponse with a token of this EHR."""
        rid = request.path_params.get("id")
        auth = request.headers.get("authorization", "")
        grant = self.tokens.get(auth[7:].strip()) if auth[:7].lower() == "bearer " else None
        if grant is None or grant["expires"] < time.time():
            return _outcome("login", "a bearer token of this EHR is required to write", 401)
        scopes = grant["scope"].split()
        wanted = "u" if rid else "c"
        if not any(s.startswith(("patient/QuestionnaireResponse.", "patient/*.")) and wanted in s.split(".", 1)[1]
                   for s in scopes):
            return _outcome("forbidden", "the token's scope does not allow this write", 403)
        try:
            resource = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            return _outcome("invalid", "the body is not JSON", 400)
        if not isinstance(resource, dict) or resource.get("resourceType") != "QuestionnaireResponse":
            return _outcome("invalid", "expected a QuestionnaireResponse", 400)
        if (resource.get("subject") or {}).get("reference") != f"Patient/{grant['patient']}":
            return _outcome("forbidden", "the subject is not the patient of the launch", 403)
        if rid and resource.get("id") not in (None, rid):
            return _outcome("invalid", "the id in the body differs from the URL", 400)
        if self.write_delay:
            await asyncio.sleep(self.write_delay)
        if self.refuse_writes > 0:
            self.refuse_writes -= 1
            return _outcome("exception", "the EHR could not store the resource just now", 500)
        stored = self.index.by_type.setdefault("QuestionnaireResponse", [])
        wanted = request.headers.get("if-none-exist", "")
        if not rid and wanted:  # conditional create (FHIR R4 §3.1.0.8.1): an existing match is returned
            system, _, value = wanted.removeprefix("identifier=").partition("|")
            same = [r for r in stored if (r.get("identifier") or {}).get("system") == system
                    and (r.get("identifier") or {}).get("value") == value]
            if len(same) > 1:
                return _outcome("duplicate", "more than one resource matches If-None-Exist", 412)
            if same:
                return JSONResponse(same[0], status_code=200, media_type=FHIR_JSON)
        resource["id"] = rid or str(uuid.uuid4())
        existing = [r for r in stored if r.get("id") == resource["id"]]
        resource["meta"] = {**(resource.get("meta") or {}), "versionId": str(len(existing) + 1),
                            "lastUpdated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        stored[:] = [r for r in stored if r.get("id") != resource["id"]] + [resource]
        self.written.append(resource)
        location = f"{self.base(request)}/QuestionnaireResponse/{resource['id']}/_history/{resource['meta']['versionId']}"
        return JSONResponse(resource, status_code=200 if existing else 201, media_type=FHIR_JSON,
                            headers={"Location": location})

    def routes(self) -> list[Route]:
        return [
            Route("/.well-known/smart-configuration", self.configuration, methods=["GET"]),
            Route("/ehr/launch", self.ehr_launch, methods=["GET"]),
            Route("/auth/authorize", self.authorize, methods=["GET"]),
            Route("/auth/token", self.token, methods=["POST"]),
            Route("/QuestionnaireResponse", self.write, methods=["POST"]),
            Route("/QuestionnaireResponse/{id}", self.write, methods=["PUT"]),
        ]
