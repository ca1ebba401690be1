"""``GET /sources`` and ``GET /sources/{page}``: the documents the cards cite, as pages a
clinician can open from a card (no authentication: they hold no patient data), and the
rewrite of a card's relative ``source.url`` into an absolute one."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse

from cds_service.api.errors import UnknownService
from cds_service.knowledge._sources import PAGES_PATH, index_html, page_html

_CACHE = {"Cache-Control": "public, max-age=3600"}


async def sources_index(request: Request) -> HTMLResponse:
    return HTMLResponse(index_html(), headers=_CACHE)


async def source_page(request: Request) -> HTMLResponse:
    page = page_html(request.path_params["page"])
    if page is None:
        raise UnknownService(f"no source page {request.path_params['page']!r}")
    return HTMLResponse(page, headers=_CACHE)


def base_url(request: Request, public_base_url: str) -> str:
    """The service's base URL as the client sees it (``public_base_url`` behind a proxy)."""
    return (public_base_url or str(request.base_url)).rstrip("/")


def absolute_sources(cards: list[dict[str, Any]], base: str) -> None:
    """Make each card's relative ``source.url`` (``sources/<page>#L<n>``) absolute."""
    for card in cards:
        source = card.get("source") or {}
        url = source.get("url")
        if isinstance(url, str) and url.startswith(PAGES_PATH + "/"):
            source["url"] = f"{base}/{url}"
