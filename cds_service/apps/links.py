"""SMART app links on cards: absolute url and ``appContext`` (CDS Hooks 2.0 §link).

The knowledge declares a SMART link by a path relative to the service (the rule's
``documentation`` entry marked ``cds-link-type`` = ``smart``): where the service is
deployed is not knowledge. Here, per request, the path becomes an absolute URL under the
service's public base URL, and ``appContext`` names the hook instance and the draft
order(s) the card is about, so the app can say which order the form belongs to.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import urljoin

MAX_ORDERS = 10


def app_context(request: Mapping[str, Any]) -> str:
    """``{"hookInstance": …, "draftOrders": ["MedicationRequest/…"]}`` as a JSON string."""
    context = request.get("context") or {}
    orders = [s for s in context.get("selections") or () if isinstance(s, str)]
    if not orders:
        bundle = context.get("draftOrders") or {}
        for entry in (bundle.get("entry") or ()) if isinstance(bundle, Mapping) else ():
            res = entry.get("resource") if isinstance(entry, Mapping) else None
            if isinstance(res, Mapping) and res.get("resourceType") and res.get("id"):
                orders.append(f"{res['resourceType']}/{res['id']}")
    return json.dumps({"hookInstance": request.get("hookInstance"), "draftOrders": orders[:MAX_ORDERS]},
                      separators=(",", ":"))


def complete_smart_links(cards: list[dict[str, Any]], base_url: str, request: Mapping[str, Any]) -> None:
    """Make every ``smart`` link of ``cards`` absolute under ``base_url`` and add ``appContext``."""
    shared: str | None = None
    for card in cards:
        for link in card.get("links") or ():
            if link.get("type") != "smart":
                continue
            if not str(link.get("url", "")).startswith(("http://", "https://")):
                link["url"] = urljoin(base_url.rstrip("/") + "/", str(link["url"]).lstrip("/"))
            shared = shared or app_context(request)
            link["appContext"] = shared
