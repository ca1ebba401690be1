"""SMART app links on cards: absolute url and ``appContext`` (CDS Hooks 2.0 §link).

The knowledge declares a SMART link by a path relative to the service (the rule's
``documentation`` entry marked ``cds-link-type`` = ``smart``): where the service is
deployed is not knowledge. Here, per request, the path becomes an absolute URL under the
service's public base URL, and ``appContext`` names the hook instance.

Which draft orders the app is about is knowledge too: the documentation entry's
``cds-link-orders`` expression (for the INO2 form: the selected inotuzumab drafts, found
with the knowledge's InotuzumabOzogamicin ValueSet), which the engine has already put in
``appContext``. A link that declares no orders names none: the app never receives the
session's unrelated orders (another medicine, another patient's draft).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import urljoin

#: At most this many orders in ``appContext`` (the app keeps 500 characters of it).
MAX_ORDERS = 10


def app_context(request: Mapping[str, Any], declared: str | None = None) -> str:
    """``{"hookInstance": …, "draftOrders": [the orders the engine named]}`` as a JSON string;
    ``declared`` is the ``appContext`` the engine gave the link (None: no orders declared)."""
    orders: list[str] = []
    try:
        named = json.loads(declared).get("draftOrders") if declared else None
    except (ValueError, AttributeError):
        named = None
    if isinstance(named, list):
        orders = [o for o in named if isinstance(o, str)]
    out: dict[str, Any] = {"hookInstance": request.get("hookInstance")}
    if declared is not None:
        out["draftOrders"] = orders[:MAX_ORDERS]
    return json.dumps(out, separators=(",", ":"))


def complete_smart_links(cards: list[dict[str, Any]], base_url: str, request: Mapping[str, Any]) -> None:
    """Make every ``smart`` link of ``cards`` absolute under ``base_url`` and add the hook
    instance to its ``appContext``."""
    for card in cards:
        for link in card.get("links") or ():
            if link.get("type") != "smart":
                continue
            if not str(link.get("url", "")).startswith(("http://", "https://")):
                link["url"] = urljoin(base_url.rstrip("/") + "/", str(link["url"]).lstrip("/"))
            declared = link.get("appContext")
            link["appContext"] = app_context(request, declared if isinstance(declared, str) else None)
