"""KnowledgeBase: the loaded, validated knowledge package, indexed by canonical URL."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from cds_service.errors import UnknownArtifact

if TYPE_CHECKING:
    from cds_service.knowledge._terminology import Terminology


def split_canonical(reference: str) -> tuple[str, str | None]:
    """``url|version`` -> (url, version); a ``#fragment`` is kept on the url."""
    url, sep, version = reference.partition("|")
    return url, (version or None) if sep else None


@dataclass(frozen=True)
class KnowledgeBase:
    """Every artifact of the knowledge package.

    ``resources`` maps canonical URL (without version) to the resource as a plain dict;
    ``files`` maps the same URL to the file it came from (for error messages and bundles).
    """

    version: str
    resources: Mapping[str, dict[str, Any]]
    files: Mapping[str, Path] = field(default_factory=dict)
    terminology: Terminology | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "resources", MappingProxyType(dict(self.resources)))
        object.__setattr__(self, "files", MappingProxyType(dict(self.files)))

    def get(self, canonical: str) -> dict[str, Any]:
        """Resolve ``url`` or ``url|version``; a pinned version must match ours."""
        url, version = split_canonical(canonical)
        resource = self.resources.get(url)
        if resource is None or (version is not None and resource.get("version") != version):
            raise UnknownArtifact(f"no artifact {canonical}", artifact=canonical)
        return resource

    def of_type(self, resource_type: str) -> list[dict[str, Any]]:
        return [r for r in self.resources.values() if r.get("resourceType") == resource_type]

    def rule_plans(self) -> list[dict[str, Any]]:
        """The eca-rule PlanDefinitions: one CDS Hooks service each."""
        return [
            r
            for r in self.of_type("PlanDefinition")
            if any(c.get("code") == "eca-rule" for c in (r.get("type") or {}).get("coding", []))
        ]

    def regimen_plans(self) -> list[dict[str, Any]]:
        """The clinical-protocol PlanDefinitions: the regimens (knowledge/_regimen.py)."""
        return [r for r in self.of_type("PlanDefinition") if is_clinical_protocol(r)]


def is_clinical_protocol(plan: Mapping[str, Any]) -> bool:
    """A PlanDefinition of type ``clinical-protocol`` (a regimen)."""
    return plan.get("resourceType") == "PlanDefinition" and any(
        c.get("code") == "clinical-protocol" for c in (plan.get("type") or {}).get("coding", [])
    )
