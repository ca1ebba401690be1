"""The INO2 form app's endpoints (``/apps/ino2/``) and the SDC operation routes.

``launch`` -> EHR authorize -> ``callback`` -> ``form`` (GET: pre-filled from the record;
POST: signed answers written to the EHR as a ``completed`` QuestionnaireResponse) ->
``print`` (the signed answers with their evidence, for the funding application).
Nothing here logs a token, a code, a query string or patient data.

Sessions are rows in the service's database (``smart.Sessions``), so each step may land on
any replica or worker process. If that database cannot answer, every step shows one error
page (503) instead of guessing: nothing is read from the EHR or written to it then. Each
form post of a signed-in session leaves one audit row (``audit.FORM_SAVED``).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

import orjson
from fastapi import FastAPI
from sqlalchemy.exc import SQLAlchemyError
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from cds_service.api.errors import PrefetchMissing
from cds_service.apps.ino2 import once, pages
from cds_service.apps.ino2.audit import FORM_SAVED, form_audit
from cds_service.apps.ino2.once import IDENTIFIER_SYSTEM, page_identifier
from cds_service.apps.ino2.operation import POPULATE_PATH, QUESTIONNAIRE_PATH, populate_endpoint, questionnaire_endpoint
from cds_service.apps.ino2.populate import populate, questionnaire_of, response_of
from cds_service.apps.ino2.records import prefetch_templates, read_resource, record_from_server, unreadable
from cds_service.apps.ino2.smart import (
    MAX_SESSIONS,
    LaunchError,
    Session,
    Sessions,
    authorize_url,
    check_issuer,
    fhir_user_of,
    pkce_pair,
    read_configuration,
    same,
    scopes_for,
)
from cds_service.engine.apply import iso_instant
from cds_service.knowledge.terms import INO2_QUESTIONNAIRE
from cds_service.store import AuditStore, FormSessionStore, session_key

log = logging.getLogger(__name__)

BASE = "/apps/ino2"
COOKIE = "ino2_session"
MAX_FORM_BYTES = 64_000
HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
                               "base-uri 'none'; frame-ancestors 'none'",
}


class Ino2App:
    """Per-app state: the sessions and what the app was registered with."""

    def __init__(self, settings: Any, engine: Any, store: AuditStore) -> None:
        self.settings = settings
        self.sessions = Sessions(FormSessionStore(store, cap=MAX_SESSIONS), settings.smart_session_seconds,
                                 key=settings.smart_session_key)
        if not settings.smart_session_key and store.engine.dialect.name != "sqlite":
            log.warning("smart_session_key is not set: INO2 form sessions (access tokens included) are stored "
                        "unencrypted in the database")
        types = {t.split("?", 1)[0].split("/", 1)[0] for t in prefetch_templates(engine).values()}
        self.scope = scopes_for(types)

    def base_url(self, request: Request) -> str:
        return (self.settings.public_base_url or str(request.base_url)).rstrip("/")

    def redirect_uri(self, request: Request) -> str:
        return self.base_url(request) + BASE + "/callback"


def html(body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(body, status_code=status, headers=HEADERS)


def _problem(title: str, text: str, status: int = 400) -> HTMLResponse:
    return html(pages.message(title, text), status)


async def _session(request: Request) -> Session | None:
    return await run_in_threadpool(request.app.state.ino2.sessions.get, request.cookies.get(COOKIE))


async def _keep(request: Request, session: Session, **changes: Any) -> bool:
    """Make ``changes`` to the session and write it for the next step, whichever replica
    serves it (``Sessions.update``: a concurrent write of the same session is kept too).
    False if the session expired meanwhile."""
    try:
        return bool(await run_in_threadpool(functools.partial(request.app.state.ino2.sessions.update, session,
                                                              **changes)))
    except LaunchError:  # changed elsewhere again and again: start over rather than guess
        return False


def _store_guard(handler: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
    """The session database down (or refusing) is one clear page, never a traceback."""

    @functools.wraps(handler)
    async def guarded(request: Request) -> Response:
        try:
            return await handler(request)
        except SQLAlchemyError as exc:
            log.error("INO2 form sessions unavailable (%s)", type(exc).__name__)
            return _problem("The INO2 form is unavailable", "The form service cannot reach its database just "
                            "now, so nothing was read from the record or saved to it. Try again in a few "
                            "minutes; if this persists, tell the EHR team.", 503)

    return guarded


async def launch(request: Request) -> Response:
    """EHR launch: discover the EHR's endpoints, start authorization with PKCE."""
    app: Ino2App = request.app.state.ino2
    state = request.app.state.cds
    q = request.query_params
    try:
        iss = check_issuer(q.get("iss", ""), app.settings.smart_issuers, state.fhir_server_policy)
        if not q.get("launch"):
            raise LaunchError("The form was not opened from the EHR. Open it from the patient's record in the EHR.",
                              "no 'launch' parameter")
        try:
            resp = await state.http().get(iss + "/.well-known/smart-configuration",
                                          headers={"Accept": "application/json"},
                                          timeout=app.settings.fetch_timeout_seconds)
            doc = resp.json() if resp.status_code == 200 else None
        except Exception as exc:  # noqa: BLE001 - any network or JSON failure is one message
            log.warning("SMART configuration could not be read (%s)", type(exc).__name__)
            doc = None
        auth, token_url = read_configuration(doc, state.fhir_server_policy)
        verifier, challenge = pkce_pair()
        session = await run_in_threadpool(app.sessions.new, iss=iss, launch=q["launch"], token_url=token_url,
                                          verifier=verifier)
    except LaunchError as exc:
        if exc.detail:
            log.warning("INO2 launch refused: %s", exc.detail)
        return _problem("The INO2 form could not be opened", str(exc))
    target = authorize_url(auth, client_id=app.settings.smart_client_id, redirect_uri=app.redirect_uri(request),
                           launch=session.launch, scope=app.scope, state=str(session.state), aud=iss,
                           challenge=challenge)
    response = RedirectResponse(target, status_code=302, headers=HEADERS)
    response.set_cookie(COOKIE, session.id, max_age=app.settings.smart_session_seconds, path=BASE + "/",
                        httponly=True, samesite="lax", secure=app.redirect_uri(request).startswith("https:"))
    return response


async def callback(request: Request) -> Response:
    """Check ``state``, swap the code for a token (with the PKCE verifier), keep it server-side."""
    app: Ino2App = request.app.state.ino2
    # single use, whatever happens next: the state is used up in the database by this claim
    claimed = await run_in_threadpool(app.sessions.claim, request.cookies.get(COOKIE))
    q = request.query_params
    if claimed is None:
        return _problem("Session expired", "This form session has expired or was already used: open the form "
                        "again from the EHR.")
    session, expected = claimed
    verifier = session.verifier
    if not same(session_key(q.get("state") or ""), expected):
        log.warning("SMART callback with a state that does not match the session")
        return _problem("The INO2 form could not be opened", "The sign-in answer did not match this session. "
                        "Open the form again from the EHR.")
    if q.get("error") or not q.get("code"):
        return _problem("Sign-in was not completed", "The EHR did not authorise the form. Open it again from the "
                        "EHR, or ask the EHR team to check the app's registration.")
    form = {"grant_type": "authorization_code", "code": q["code"], "redirect_uri": app.redirect_uri(request),
            "client_id": app.settings.smart_client_id, "code_verifier": str(verifier)}
    status: int | str = "no answer"
    try:
        resp = await request.app.state.cds.http().post(
            session.token_url, data=form, headers={"Accept": "application/json"},
            timeout=app.settings.fetch_timeout_seconds)
        status = resp.status_code
        token = resp.json() if resp.status_code == 200 else None
    except Exception as exc:  # noqa: BLE001 - network or JSON: the same refusal below
        log.warning("SMART token exchange failed (%s)", type(exc).__name__)
        token = None
    if not isinstance(token, dict) or not isinstance(token.get("access_token"), str):
        log.warning("SMART token exchange refused (HTTP %s)", status)
        return _problem("Sign-in failed", "The EHR did not issue an access token. Open the form again from the EHR.")
    patient = token.get("patient")
    if not isinstance(patient, str) or not patient:
        return _problem("No patient", "The EHR did not say which patient the form is for. Open the form "
                        "from the patient's record; if this persists, tell the EHR team.")
    changes: dict[str, Any] = {
        "verifier": None, "access_token": token["access_token"], "patient": patient,
        "user": fhir_user_of(token.get("id_token"), app.settings.smart_client_id, time.time())}
    if isinstance(token.get("appContext"), str):
        changes["app_context"] = token["appContext"][:500]
    expires = token.get("expires_in")
    if isinstance(expires, (int, float)) and expires > 0:
        changes["expires_at"] = min(session.expires_at, time.time() + float(expires))
    if not await _keep(request, session, **changes):
        return _problem("Session expired", "This form session has expired: open the form again from the EHR.")
    return RedirectResponse(BASE + "/form", status_code=303, headers=HEADERS)


async def _prefill(request: Request, session: Session) -> Response | None:
    state = request.app.state.cds
    try:
        record = await record_from_server(state, str(session.patient), session.iss, session.access_token)
    except PrefetchMissing as exc:
        return _problem("The record could not be read", "The form is not pre-filled from part of a record, so it "
                        f"is not shown. Not readable just now: {unreadable(state.engine, exc.reasons)}. "
                        "Try again in a few minutes; if this persists, tell the EHR team.", 502)
    if record.patient is None:
        return _problem("No patient", "The EHR has no record of this patient that the form can read. Open the "
                        "form from the patient's record; if this persists, tell the EHR team.", 404)
    result = populate(state.engine, record, datetime.now(UTC), drafts_known=False)
    names = await _names(request, session, record)
    if not await _keep(request, session, fills=result.fills, patient_resource=record.patient, **names):
        return _problem("Session expired", "Open the INO2 form again from the EHR.", 401)
    return None


async def _names(request: Request, session: Session, record: Any) -> dict[str, Any]:
    """What the pages show instead of references: the signer's name (their ``fhirUser``
    resource, which the ``fhirUser`` scope lets the app read) and each draft order the card
    link named (from the record, else read by reference; None when the EHR does not have
    it: the page then says "the inotuzumab order being checked")."""
    state, timeout = request.app.state.cds, request.app.state.ino2.settings.fetch_timeout_seconds

    async def read(reference: str) -> dict[str, Any] | None:
        return await read_resource(state, session.iss, session.access_token, reference, timeout)

    names: dict[str, Any] = {}
    orders = pages.context_orders(session.app_context) if session.orders_text is None else []
    missing = [ref for ref in orders if record.resolve(ref) is None]
    wanted = [session.user] if session.user and session.user_name is None else []
    found = dict(zip(wanted + missing, await asyncio.gather(*(read(ref) for ref in wanted + missing)), strict=True))
    if wanted:
        person = found.get(wanted[0])
        names["user_name"] = pages.person_name(person) if person else None
    if session.orders_text is None and session.app_context:
        texts = [pages.order_text(order) if (order := record.resolve(ref) or found.get(ref)) else "" for ref in orders]
        names["orders_text"] = texts
    return names


async def _form(request: Request, session: Session, *, values: Any = None, error: str | None = None,
                status: int = 200, token: str | None = None) -> Response:
    """The form page, with a one-time token for its save (``once``): ``token`` again if it is
    still open (the same page shown after a refused save), else a new one."""
    ok, form_token = await run_in_threadpool(request.app.state.ino2.sessions.change, session, once.reuse(token))
    if not ok or not form_token:
        return _problem("Session expired", "Nothing was saved. Open the INO2 form again from the EHR.", 401)
    q = questionnaire_of(request.app.state.cds.engine)
    body = pages.form_page(q, session.fills, patient=session.patient_resource, user=session.user_name,
                           csrf=session.csrf, action=BASE + "/form", values=values, error=error,
                           orders=session.orders_text, form_token=str(form_token))
    return html(body, status)


async def form_get(request: Request) -> Response:
    session = await _session(request)
    if session is None or not session.authorized:
        return _problem("Session expired", "Open the INO2 form again from the EHR.", 401)
    problem = await _prefill(request, session)
    return problem or await _form(request, session)


def _values(q: dict[str, Any], body: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in q.get("item") or ():
        raw = body.get(item["linkId"], "")
        if item.get("type") == "boolean" and raw in ("true", "false"):
            out[item["linkId"]] = raw == "true"
        elif item.get("type") == "choice" and raw:
            out[item["linkId"]] = raw
    return out


async def form_post(request: Request) -> Response:
    """Signed answers -> a completed QuestionnaireResponse on the EHR's FHIR server; one
    audit row for the attempt, whatever its outcome."""
    started = time.perf_counter()
    session = await _session(request)
    if session is None or not session.authorized:
        return _problem("Session expired", "Nothing was saved. Open the INO2 form again from the EHR.", 401)
    response, status, note = await _save(request, session)
    record = form_audit(request.app.state.cds, FORM_SAVED, started=started, status=status,
                        patient=session.patient, user=session.user, instance=session.audit_id, notes=[note])
    response.background = BackgroundTask(request.app.state.cds.write_audit, record)
    return response


async def _save(request: Request, session: Session) -> tuple[Response, int, str]:
    """(the page, the status for the audit, what happened in words without any answer)."""
    raw = await request.body()
    if len(raw) > MAX_FORM_BYTES:
        return _problem("Too large", "The form sent is larger than the INO2 form can be, so nothing was saved.", 413), 413, "not saved: the post was too large"
    body = dict(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))
    if not same(body.get("csrf"), session.csrf):
        log.warning("INO2 form post without a valid CSRF token")
        return (_problem("Not saved", "This page did not come from the INO2 form, so nothing was saved. "
                         "Open the form again from the EHR.", 403), 403,
                "not saved: CSRF check failed")
    if session.fills is None:
        problem = await _prefill(request, session)
        if problem:
            return problem, problem.status_code, "not saved: the record could not be read"
    q = questionnaire_of(request.app.state.cds.engine)
    values = _values(q, body)
    token = body.get("form") or None
    if body.get("sign") != "yes":
        return (await _form(request, session, values=values, error="tick the confirmation to sign the form.",
                            status=400, token=token), 400, "not saved: not signed")
    if not session.user:
        return (await _form(request, session, values=values, status=400, token=token,
                            error="the EHR did not say who you are, so the form cannot be signed. Open the form "
                                  "again from the EHR; if this persists, tell the EHR team."),
                400, "not saved: no fhirUser to sign as")
    outcome = await _claim(request, session, token)
    if outcome == "saved":
        log.info("INO2 form posted again after it was saved: nothing written")
        return (RedirectResponse(BASE + "/print", status_code=303, headers=HEADERS), 303,
                f"not saved again: this form was already saved as {_qr_ref(session.saved)}")
    if outcome == "unknown":
        return (await _form(request, session, values=values, status=409,
                            error="this page is out of date (the form was opened again since). Your answers are "
                                  "shown below: check them and sign again."), 409, "not saved: an out-of-date page")
    if outcome != "claimed":
        return (_problem("Still saving", "This form is still being saved. Open the printable form in a minute to "
                         "see whether it was saved; do not sign it again before then.", 409), 409,
                "not saved: another save of this form was still running")
    assert token is not None
    return await _write(request, session, q, values, token)


def _qr_ref(saved: dict[str, Any] | None) -> str:
    return f"QuestionnaireResponse/{(saved or {}).get('id') or '(no id returned)'}"


async def _claim(request: Request, session: Session, token: str | None) -> str:
    """Claim the page's token (``once.claim``); while another post of this session is
    writing, wait for it (up to the EHR's timeout and a little more), then decide again."""
    app: Ino2App = request.app.state.ino2
    timeout = float(app.settings.fetch_timeout_seconds)
    deadline = time.monotonic() + timeout + 5
    while True:
        ok, outcome = await run_in_threadpool(app.sessions.change, session,
                                              once.claim(token, time.time(), stale_after=timeout + 30))
        if not ok:
            return "unknown"
        if outcome != "busy" or time.monotonic() > deadline:
            return str(outcome)
        await asyncio.sleep(0.1)
        if not await run_in_threadpool(app.sessions.refresh, session):
            return "unknown"


async def _write(request: Request, session: Session, q: dict[str, Any], values: dict[str, Any],
                 token: str) -> tuple[Response, int, str]:
    """Write the claimed form to the EHR, then release the claim: saved, or open again."""
    response = response_of(q, session.patient if "/" in str(session.patient) else f"Patient/{session.patient}",
                           values, status="completed", authored=iso_instant(datetime.now(UTC)),
                           evidence=session.fills, author=session.user)
    url, method = session.iss + "/QuestionnaireResponse", "POST"
    headers = {"Authorization": f"Bearer {session.access_token}", "Content-Type": "application/fhir+json",
               "Accept": "application/fhir+json"}
    previous = (session.saved or {}).get("id")
    if previous:  # signed again in the same session: an amendment of the same response
        response = {"id": previous, **response, "status": "amended"}
        if isinstance(session.saved, dict) and session.saved.get("identifier"):
            response["identifier"] = session.saved["identifier"]
        url, method = f"{url}/{previous}", "PUT"
    else:  # the page's identity: a retry after a lost answer finds what the EHR already stored
        response["identifier"] = page_identifier(token)
        headers["If-None-Exist"] = f"identifier={IDENTIFIER_SYSTEM}|{response['identifier']['value']}"
    try:
        resp = await request.app.state.cds.http().request(
            method, url, content=orjson.dumps(response), headers=headers,
            timeout=request.app.state.ino2.settings.fetch_timeout_seconds)
        status = resp.status_code
        saved = resp.json() if status in (200, 201) and resp.content else None
    except Exception as exc:  # noqa: BLE001
        log.warning("INO2 form could not be written (%s)", type(exc).__name__)
        status, saved = 0, None
    if status not in (200, 201):
        log.warning("INO2 form write refused (HTTP %s)", status)
        await _release(request, session, token, None)
        why = (f"the EHR did not accept the form (error {status})." if status else
               "the EHR did not answer in time, so the form may not have been saved.")
        return (await _form(request, session, values=values, status=502, token=token,
                            error=f"{why} Your answers are kept below: sign and save again (a form the EHR "
                                  "already holds is not saved twice); if this persists, tell the EHR team."),
                502, f"not saved: the EHR answered HTTP {status or 'nothing'}")
    if isinstance(saved, dict) and saved.get("resourceType") == "QuestionnaireResponse":
        response = saved
    else:
        location = resp.headers.get("location", "")
        response["id"] = location.split("/QuestionnaireResponse/", 1)[-1].split("/", 1)[0] if location else ""
    log.info("INO2 form saved")
    page: Response = RedirectResponse(BASE + "/print", status_code=303, headers=HEADERS)
    if not await _release(request, session, token, response):  # written: show it now, /print cannot
        page = html(pages.print_page(q, response, patient=session.patient_resource, signer=session.user_name,
                                     form_url=BASE + "/form"))
    return page, status, f"wrote {_qr_ref(response)} ({response.get('status')})"


async def _release(request: Request, session: Session, token: str, saved: dict[str, Any] | None) -> bool:
    """End this post's claim (``once.finished``); False if the session could not keep it."""
    try:
        ok, _ = await run_in_threadpool(request.app.state.ino2.sessions.change, session, once.finished(token, saved))
        return bool(ok)
    except (SQLAlchemyError, LaunchError) as exc:
        log.error("INO2 form save could not be recorded in its session (%s)", type(exc).__name__)
        return False


async def print_view(request: Request) -> Response:
    session = await _session(request)
    if session is None or session.saved is None:
        return _problem("Nothing to print", "Sign and save the INO2 form first.", 404)
    q = questionnaire_of(request.app.state.cds.engine)
    return html(pages.print_page(q, session.saved, patient=session.patient_resource, signer=session.user_name,
                                 form_url=BASE + "/form"))


def install(app: FastAPI, settings: Any, engine: Any) -> None:
    """Add the SDC operation and the INO2 form app to the service (only when the knowledge
    served holds the INO2 Questionnaire: the form is rendered from it)."""
    if INO2_QUESTIONNAIRE not in (getattr(getattr(engine, "kb", None), "resources", None) or {}):
        return
    app.state.ino2 = Ino2App(settings, engine, app.state.cds.store)
    app.add_api_route(POPULATE_PATH, populate_endpoint, methods=["POST"])
    app.add_api_route(QUESTIONNAIRE_PATH, questionnaire_endpoint, methods=["GET"])
    app.add_api_route(BASE + "/launch", _store_guard(launch), methods=["GET"])
    app.add_api_route(BASE + "/callback", _store_guard(callback), methods=["GET"])
    app.add_api_route(BASE + "/form", _store_guard(form_get), methods=["GET"])
    app.add_api_route(BASE + "/form", _store_guard(form_post), methods=["POST"])
    app.add_api_route(BASE + "/print", _store_guard(print_view), methods=["GET"])
