"""Discovery: one CDS Hooks service entry per rule PlanDefinition and hook.

CDS Hooks 2.0 §discovery (cds-hooks.md §1.2) with what clinical-reasoning gets wrong
avoided (fhir-knowledge.md §3.3):

- ``id`` = the PlanDefinition id; ``hook`` = *every* ``named-event`` trigger of the plan
  (CR uses only the first): a plan with several hooks gives one entry per hook with the
  same id, which CDS Hooks allows (D4) so order-sign can replace order-select's cards;
- ``title``/``description`` from the plan; ``usageRequirements`` from ``PlanDefinition.usage``;
- ``prefetch`` derived from the actions' ``input`` DataRequirements, keyed by content
  (``patient``, ``observations``, ``medicationRequests``…, never ``item1``).

Prefetch templates use only root-level tokens (P1/P2: ``{{context.patientId}}``) and
only the query subset P3 allows (type search, token equality with comma-separated OR):

- ``Patient`` is always prefetched: ``patient`` -> ``Patient/{{context.patientId}}``;
- any other type: ``<type>?patient={{context.patientId}}``, keyed by the lowerCamel plural
  of the type (``Observation`` -> ``observations``, ``QuestionnaireResponse`` ->
  ``questionnaireResponses``);
- a ``codeFilter`` with a ``valueSet`` adds ``&code=<system|code,...>`` from
  ``Terminology.codes()`` (and ``codeFilter.code`` codings are added as they are), unless
  the ValueSet also matches by name (``valueset-match-text``: a name match cannot be a
  search parameter) or its codes cannot be enumerated (e.g. an ATC ``is-a`` filter); then
  the type is fetched unfiltered and the features filter it. Several requirements on one
  type are merged: one unfiltered requirement, or filters on different elements, make the
  whole type unfiltered, since a search cannot OR different parameters;
- ``dateFilter`` is not turned into a search: the only tokens allowed are context fields,
  so a relative date ("last 7 days") cannot be written; features apply the window;
- types outside the patient compartment (``Medication``, ``Practitioner``…) get no
  template: medications arrive contained in, or resolved from, the orders.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cds_service.engine._plan import RulePlan
from cds_service.errors import KnowledgeError, SactCdsError
from cds_service.knowledge.terms import EXT_MATCH_TEXT

if TYPE_CHECKING:
    from cds_service.knowledge import Terminology

PATIENT_TOKEN = "{{context.patientId}}"
PATIENT_KEY = "patient"
#: Types that are not searched by patient: no prefetch template (module docstring).
NOT_PATIENT_SCOPED = frozenset(
    {
        "Medication", "Substance", "Practitioner", "PractitionerRole", "Organization", "Location",
        "ActivityDefinition", "PlanDefinition", "Questionnaire", "ValueSet", "CodeSystem", "Library",
    }
)  # fmt: skip
#: codeFilter.path -> search parameter, where the two differ.
SEARCH_PARAM = {"medication": "code", "medicationCodeableConcept": "code", "medicationReference": "medication"}


@dataclass(frozen=True)
class ServiceDefinition:
    """One entry of ``GET /cds-services`` (CDS Hooks 2.0 §response, D3)."""

    id: str
    hook: str
    title: str | None
    description: str
    prefetch: Mapping[str, str] = field(default_factory=dict)
    usageRequirements: str | None = None  # noqa: N815 - the CDS Hooks field name

    def as_json(self) -> dict[str, Any]:
        """The discovery JSON, without empty optional fields (CDS Hooks G2)."""
        out: dict[str, Any] = {"hook": self.hook}
        if self.title:
            out["title"] = self.title
        out["description"] = self.description
        out["id"] = self.id
        if self.prefetch:
            out["prefetch"] = dict(self.prefetch)
        if self.usageRequirements:
            out["usageRequirements"] = self.usageRequirements
        return out


def prefetch_key(resource_type: str) -> str:
    """``Observation`` -> ``observations``; ``Patient`` -> ``patient`` (one resource)."""
    if resource_type == "Patient":
        return PATIENT_KEY
    name = resource_type[:1].lower() + resource_type[1:]
    if name.endswith("y") and name[-2:-1] not in "aeiou":
        return name[:-1] + "ies"
    if name.endswith(("s", "x", "ch", "sh")):
        return name + "es"
    return name + "s"


def prefetch_templates(
    plan: RulePlan,
    resources: Mapping[str, Mapping[str, Any]],
    terminology: Terminology | None,
) -> dict[str, str]:
    """Prefetch key -> query template for a plan (module docstring)."""
    filters: dict[str, dict[str, list[str]] | None] = {}  # type -> {param: tokens} | None (unfiltered)
    for requirement in plan.inputs:
        rtype = requirement.get("type")
        if not isinstance(rtype, str) or rtype == "Patient" or rtype in NOT_PATIENT_SCOPED:
            continue
        wanted = _requirement_filter(requirement, plan, resources, terminology)
        if rtype not in filters:
            filters[rtype] = wanted
            continue
        have = filters[rtype]
        if have is None or wanted is None or set(have) != set(wanted):
            filters[rtype] = None
        else:
            for param, tokens in wanted.items():
                have[param].extend(t for t in tokens if t not in have[param])
    out = {PATIENT_KEY: f"Patient/{PATIENT_TOKEN}"}
    for rtype, wanted in filters.items():
        query = f"{rtype}?patient={PATIENT_TOKEN}"
        for param, tokens in (wanted or {}).items():
            query += f"&{param}=" + ",".join(tokens)
        out[prefetch_key(rtype)] = query
    return out


def _requirement_filter(
    requirement: Mapping[str, Any],
    plan: RulePlan,
    resources: Mapping[str, Mapping[str, Any]],
    terminology: Terminology | None,
) -> dict[str, list[str]] | None:
    """{search param: tokens} for one DataRequirement, or None when it cannot filter."""
    params: dict[str, list[str]] = {}
    for code_filter in requirement.get("codeFilter") or ():
        path = code_filter.get("path") or code_filter.get("searchParam") or "code"
        param = code_filter.get("searchParam") or SEARCH_PARAM.get(path, path)
        tokens: list[str] = []
        vs_url = code_filter.get("valueSet")
        if vs_url:
            url = vs_url.split("|", 1)[0]
            valueset = resources.get(url)
            if valueset is None:
                raise KnowledgeError(f"input codeFilter names unknown ValueSet {vs_url}", artifact=plan.url)
            if _matches_text(valueset) or _names(terminology, url):
                return None
            if terminology is None:
                raise KnowledgeError("knowledge base has no terminology to expand prefetch code filters", artifact=plan.url)
            try:
                codes = terminology.codes(url)
            except SactCdsError:
                raise
            except Exception as exc:  # the terminology service is another module's code
                raise KnowledgeError(f"cannot expand {vs_url}: {exc}", artifact=plan.url) from exc
            if not codes:
                return None
            tokens.extend(f"{system}|{code}" for system, code in codes)
        for coding in code_filter.get("code") or ():
            if coding.get("code"):
                tokens.append(f"{coding['system']}|{coding['code']}" if coding.get("system") else coding["code"])
        if not tokens:
            return None
        params.setdefault(param, [])
        params[param].extend(t for t in tokens if t not in params[param])
    return params or None


def _names(terminology: Terminology | None, url: str) -> bool:
    """Whether the ValueSet, or one it includes, matches by name (Terminology.names)."""
    names = getattr(terminology, "names", None)
    return bool(names(url)) if callable(names) else False


def _matches_text(valueset: Mapping[str, Any]) -> bool:
    exts = list(valueset.get("extension") or ())
    for include in (valueset.get("compose") or {}).get("include") or ():
        exts.extend(include.get("extension") or ())
    return any(e.get("url") == EXT_MATCH_TEXT for e in exts)


def service_definitions(plan: RulePlan, prefetch: Mapping[str, str]) -> list[ServiceDefinition]:
    """One entry per hook of the plan, all with the plan's id."""
    description = plan.description or plan.title
    if not description:
        raise KnowledgeError("rule PlanDefinition has neither description nor title", artifact=plan.url)
    return [
        ServiceDefinition(
            id=plan.id,
            hook=hook,
            title=plan.title,
            description=description,
            prefetch=dict(prefetch),
            usageRequirements=plan.usage,
        )
        for hook in plan.hooks
    ]
