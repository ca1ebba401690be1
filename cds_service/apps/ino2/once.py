"""One save per rendered form: the one-time token each form page carries.

A double click on "Sign and save", a page posted twice (back button, a duplicated tab) or two
tabs signing at once must not write two QuestionnaireResponses to the EHR. Each rendered form
gets a random token (hidden field ``form``), listed in the session as ``open``. A post claims
its token before anything is written, as one compare-and-set on the versioned session row
(``Sessions.change``), so on SQLite and PostgreSQL, across processes and replicas, exactly one
post at a time holds the session's save (``saving``):

- ``claimed``: this post writes to the EHR; afterwards :func:`finished` marks the token
  ``saved`` (and keeps the response) or, if the EHR refused the write, leaves it ``open`` so
  the same page can be signed again with the clinician's answers;
- ``saved``: the token was saved already: the post shows the saved result, writes nothing;
- ``busy``: another post of this session is writing now: the caller waits for its outcome;
- ``unknown``: not a token this session rendered (an old page): nothing is written, the
  answers are shown again on a fresh page.

A save whose process died mid-write holds the session at most ``stale_after`` seconds. A
write whose answer was lost (the EHR stored it, the answer timed out) leaves the token open
too; the retry is a FHIR conditional create (``If-None-Exist`` on the page's identifier,
:func:`page_identifier`), so an EHR that supports it returns the response it stored instead
of storing a second.
These are pure functions of the session (``apply`` functions for ``Sessions.change``).
"""

from __future__ import annotations

import secrets
import uuid
from typing import Any

#: rendered forms remembered per session (a token older than this many pages reads as unknown)
MAX_FORMS = 20
OPEN, SAVED = "open", "saved"
#: the system of a ``urn:uuid`` identifier (FHIR R4 §2.24.0.1 Identifier: "urn:ietf:rfc:3986")
IDENTIFIER_SYSTEM = "urn:ietf:rfc:3986"


def page_identifier(token: str) -> dict[str, str]:
    """The QuestionnaireResponse.identifier of the page whose one-time token is ``token``: the
    same for every try of one page, never the token itself (a name-based UUID of it)."""
    return {"system": IDENTIFIER_SYSTEM, "value": f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, 'ino2-form:' + token)}"}


def issue(session: Any) -> tuple[bool, str]:
    """A new token for a page about to be rendered."""
    token = secrets.token_urlsafe(24)
    forms = dict(session.forms or {})
    forms[token] = OPEN
    session.forms = dict(list(forms.items())[-MAX_FORMS:])
    return True, token


def reuse(token: str | None) -> Any:
    """The token if it is still open, else a new one (a page shown again after a failed save)."""

    def apply(session: Any) -> tuple[bool, str]:
        if token and (session.forms or {}).get(token) == OPEN:
            return False, token
        return issue(session)

    return apply


def claim(token: str | None, now: float, stale_after: float) -> Any:
    """Claim ``token`` for one save (see the module docstring for the outcomes)."""

    def apply(session: Any) -> tuple[bool, str]:
        state = (session.forms or {}).get(token) if token else None
        if state is None:
            return False, "unknown"
        if state == SAVED:
            return False, "saved"
        held = session.saving
        if held and now - float(held.get("since") or 0) < stale_after:
            return False, "busy"
        session.saving = {"form": token, "since": now}
        return True, "claimed"

    return apply


def finished(token: str, saved: dict[str, Any] | None) -> Any:
    """Release the session's save; with ``saved`` (the response the EHR kept) the token is
    used up, without it (the write failed) the token stays open for another try."""

    def apply(session: Any) -> tuple[bool, None]:
        if (session.saving or {}).get("form") == token:
            session.saving = None
        if saved is not None:
            session.forms = {**(session.forms or {}), token: SAVED}
            session.saved = saved
        return True, None

    return apply
