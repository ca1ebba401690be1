"""The compiled form of a rule PlanDefinition: plans, rules, suggestions, the template.

Built once by _rules.py; walked, never changed, by every evaluation.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from cds_service.engine.conditions import CompiledExpression
from cds_service.knowledge.terms import EXT_SOURCE_STATEMENT, RULE_SYSTEM

TEMPLATE_CODE = "data-unavailable"
FHIRPATH = "text/fhirpath"
#: dynamicValue paths a top-level action may set (``%`` prefix tolerated, as in CR).
CARD_PATHS = ("action.title", "action.description", "action.priority")
CARD_EXTENSION_PREFIX = "card.extension."
#: Card extension keys the engine fills itself from the expressions a link declares on its
#: documentation entry (extensions cds-link-condition and cds-link-orders):
#: ``org.sact-cds.link.<documentation index>.<part>``. They ride with the other dynamic
#: values and cards.card takes them off the card and applies them to that link: they are
#: never sent to a client, and a rule's own dynamicValue may not use them.
LINK_VALUE_KEY = "org.sact-cds.link."
LINK_OFFERED = "offered"
LINK_ORDERS = "orders"


def link_value_key(index: int, part: str) -> str:
    """The private card extension key of one link expression (see LINK_VALUE_KEY)."""
    return f"{LINK_VALUE_KEY}{index}.{part}"
#: card selectionBehavior values CDS Hooks 2.0 allows (cds-hooks.md §1.4).
SELECTION_BEHAVIORS = ("any", "at-most-one")


@dataclass(frozen=True)
class SuggestionRule:
    """A child action: one suggestion (``create`` via $apply, ``delete``, or label-only)."""

    label: str
    description: str | None
    action_id: str | None
    conditions: tuple[CompiledExpression, ...]
    kind: str  # "create" | "delete" | "update" | "label"
    activity: Mapping[str, Any] | None = None
    activity_canonical: str | None = None
    uses_bsa: bool = False
    resource_ids: CompiledExpression | None = None
    #: ``update``: (path, expression) of the new values, one result per resource id
    #: (UPDATE_PATHS).
    changes: tuple[tuple[str, CompiledExpression], ...] = ()

    def expressions(self) -> Iterator[CompiledExpression]:
        yield from self.conditions
        if self.resource_ids is not None:
            yield self.resource_ids
        for _, expr in self.changes:
            yield expr


#: What an ``update`` suggestion may change in a draft order (paths of its dynamicValues
#: besides ``resourceId``): the dose value (required), its UCUM unit and a note.
UPDATE_DOSE_VALUE = "dosageInstruction.doseAndRate.doseQuantity.value"
UPDATE_DOSE_UNIT = "dosageInstruction.doseAndRate.doseQuantity.code"
UPDATE_NOTE = "note.text"
UPDATE_PATHS = (UPDATE_DOSE_VALUE, UPDATE_DOSE_UNIT, UPDATE_NOTE)


@dataclass(frozen=True)
class Rule:
    """A top-level action: one card rule."""

    code: str
    code_display: str | None
    action_id: str | None
    title: str | None
    description: str | None
    text_equivalent: str | None
    priority: str
    documentation: tuple[Mapping[str, Any], ...]
    conditions: tuple[CompiledExpression, ...]
    dynamic: tuple[tuple[str, CompiledExpression], ...]
    suggestions: tuple[SuggestionRule, ...]
    selection_behavior: str
    input_types: frozenset[str]
    hooks: frozenset[str]  # empty: every hook of the plan
    features: tuple[str, ...]  # read by conditions, dynamicValues, suggestions (first use)
    variables: frozenset[str]
    #: override-reason codes the action declares (extension card-override-reason); () = all
    override_codes: tuple[str, ...] = ()
    #: (document, quote) of each source-statement extension, in order: the card links the first
    statements: tuple[tuple[str, str], ...] = ()
    #: rule codes whose card this rule's card makes redundant (extension card-supersedes)
    supersedes: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        """How cards and logs name the rule: its title, else its code."""
        return self.title or self.code

    def expressions(self) -> Iterator[CompiledExpression]:
        yield from self.conditions
        for _, expr in self.dynamic:
            yield expr
        for s in self.suggestions:
            yield from s.expressions()


@dataclass(frozen=True)
class Template:
    """Title/description/priority/documentation of engine-generated data-unavailable cards."""

    title: str
    description: str | None
    priority: str
    documentation: tuple[Mapping[str, Any], ...]
    action_id: str | None
    code_display: str | None = None
    override_codes: tuple[str, ...] = ()


#: Used when a rule PlanDefinition has no data-unavailable action. An unrun safety check
#: on a chemotherapy order is worth a look, hence ``urgent`` (warning), not ``routine``.
BUILTIN_TEMPLATE = Template(
    title="Some checks could not be run",
    description=(
        "Decision support could not complete the check(s) below with the data available. "
        "Check them yourself before going on."
    ),
    priority="urgent",
    documentation=(),
    action_id=None,
)


@dataclass(frozen=True)
class RulePlan:
    """One eca-rule PlanDefinition, compiled: one CDS Hooks service."""

    id: str
    url: str
    version: str | None
    title: str | None
    description: str | None
    usage: str | None
    hooks: tuple[str, ...]
    rules: tuple[Rule, ...]
    template: Template
    inputs: tuple[Mapping[str, Any], ...]  # every action's DataRequirements, in order
    _by_hook: dict[str | None, tuple[tuple[Rule, ...], tuple[str, ...], frozenset[str]]] = field(
        default_factory=dict, repr=False
    )

    def __post_init__(self) -> None:
        keys: list[str | None] = [None, *self.hooks]
        for hook in keys:
            rules = tuple(r for r in self.rules if hook is None or not r.hooks or hook in r.hooks)
            features: list[str] = []
            variables: set[str] = set()
            for r in rules:
                features.extend(f for f in r.features if f not in features)
                variables |= r.variables
            self._by_hook[hook] = (rules, tuple(features), frozenset(variables))

    def for_hook(self, hook: str | None) -> tuple[tuple[Rule, ...], tuple[str, ...], frozenset[str]]:
        """(rules, features, variables) of the rules that run on ``hook`` (None: all).

        Raises KeyError for a hook the plan does not serve.
        """
        return self._by_hook[hook]


#: Extension on a rule action naming one override reason (valueCoding, CodeSystem
#: override-reason) its card offers; repeated, in display order.
EXT_OVERRIDE_REASON = "https://sact-cds.org/fhir/StructureDefinition/card-override-reason"


def override_codes(action: Mapping[str, Any]) -> tuple[str, ...]:
    """The override-reason codes an action declares, in order (() when it declares none)."""
    return tuple(
        str((e.get("valueCoding") or {}).get("code"))
        for e in action.get("extension") or ()
        if e.get("url") == EXT_OVERRIDE_REASON and (e.get("valueCoding") or {}).get("code")
    )


#: Extension on a rule action naming a rule (valueCode, CodeSystem sact-cds-rule) whose card
#: says nothing more when this action's card is shown: one card per problem.
EXT_SUPERSEDES = "https://sact-cds.org/fhir/StructureDefinition/card-supersedes"


def supersedes(action: Mapping[str, Any]) -> tuple[str, ...]:
    """The rule codes an action's card supersedes."""
    return tuple(
        str(e["valueCode"]) for e in action.get("extension") or () if e.get("url") == EXT_SUPERSEDES and e.get("valueCode")
    )


def source_statements(action: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    """(document, quote) of the action's source-statement extensions, in order."""
    out = []
    for e in action.get("extension") or ():
        if e.get("url") != EXT_SOURCE_STATEMENT:
            continue
        parts = {p.get("url"): p.get("valueCode") or p.get("valueString") for p in e.get("extension") or ()}
        if isinstance(parts.get("document"), str) and isinstance(parts.get("quote"), str):
            out.append((parts["document"], parts["quote"]))
    return tuple(out)


def rule_code(action: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """(code, display) of the action's sact-cds-rule coding."""
    for concept in action.get("code") or ():
        for coding in concept.get("coding") or ():
            if coding.get("system") == RULE_SYSTEM and coding.get("code"):
                return coding["code"], coding.get("display")
    return None, None


def named_events(action: Mapping[str, Any]) -> list[str]:
    return [
        t["name"]
        for t in action.get("trigger") or ()
        if t.get("type") == "named-event" and isinstance(t.get("name"), str)
    ]


def plan_hooks(pd: Mapping[str, Any]) -> tuple[str, ...]:
    """Every named-event trigger of every action (nested included), in order, once."""
    hooks: list[str] = []

    def walk(actions: Iterable[Mapping[str, Any]]) -> None:
        for action in actions:
            hooks.extend(h for h in named_events(action) if h not in hooks)
            walk(action.get("action") or ())

    walk(pd.get("action") or ())
    return tuple(hooks)
