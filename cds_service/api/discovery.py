"""``GET /cds-services``: the discovery document (CDS Hooks 2.0 §discovery).

One entry per rule PlanDefinition and hook: the engine derives id, hook, title,
description, usageRequirements and the prefetch templates (root-level tokens only) from
the knowledge; this module only renders them, omitting empty optional fields (§use-of-json:
no nulls, no empty strings, arrays or objects).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from starlette.requests import Request

from cds_service.api.errors import JSON


def hooks_of(definition: Any) -> tuple[str, ...]:
    """A definition's hook(s): a string, or several names for one id (spec D4)."""
    hook = definition.hook
    return (hook,) if isinstance(hook, str) else tuple(hook)


def usage_requirements(definition: Any) -> str | None:
    return getattr(definition, "usage_requirements", None) or getattr(definition, "usageRequirements", None)


def render_services(definitions: Iterable[Any]) -> dict[str, list[dict[str, Any]]]:
    services = []
    for d in definitions:
        for hook in hooks_of(d):
            entry: dict[str, Any] = {"hook": hook, "id": d.id, "title": d.title, "description": d.description}
            if d.prefetch:
                entry["prefetch"] = dict(d.prefetch)
            if usage := usage_requirements(d):
                entry["usageRequirements"] = usage
            services.append({k: v for k, v in entry.items() if v not in (None, "")})
    return {"services": services}


async def discovery(request: Request) -> JSON:
    state = request.app.state.cds
    await state.authenticate(request, "/cds-services")
    return JSON(state.discovery_document)
