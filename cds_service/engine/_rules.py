"""Read an eca-rule PlanDefinition once into compiled, checked card rules.

Everything that can be wrong with a rule PlanDefinition is found here, at load, and
reported located by artifact and action (STYLE.md §6, §9): a missing rule code or title,
an unknown priority, a condition in another language, an unknown feature, a child action
the engine cannot turn into a suggestion, an ActivityDefinition $apply cannot apply. At
evaluation time the engine only walks these frozen structures.

What is read (architecture.md §5.1):

- top-level action = one card rule; its ``code`` (system sact-cds-rule) is the topic;
- the top-level action with code ``data-unavailable`` is not a rule but the *template*
  for engine-generated cards (it must have no condition, or the condition ``false``);
- ``trigger`` (named-event) on an action limits it to those hooks; an action without
  one runs on every hook of its PlanDefinition;
- ``condition`` (kind applicability, ``text/fhirpath``), ``dynamicValue``, ``input``,
  ``documentation``, ``selectionBehavior`` and child actions (suggestions).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from cds_service.engine._plan import (
    BUILTIN_TEMPLATE,
    CARD_EXTENSION_PREFIX,
    CARD_PATHS,
    FHIRPATH,
    LINK_OFFERED,
    LINK_ORDERS,
    LINK_VALUE_KEY,
    SELECTION_BEHAVIORS,
    TEMPLATE_CODE,
    UPDATE_DOSE_UNIT,
    UPDATE_DOSE_VALUE,
    UPDATE_PATHS,
    Rule,
    RulePlan,
    SuggestionRule,
    Template,
    link_value_key,
    named_events,
    override_codes,
    plan_hooks,
    rule_code,
    source_statements,
    supersedes,
)
from cds_service.engine.apply import needs_bsa
from cds_service.engine.conditions import CompiledExpression, compile_expression, conjuncts
from cds_service.errors import ExpressionCompileError, KnowledgeError, SactCdsError, UnknownFeature
from cds_service.knowledge.terms import (
    EXT_CDS_LINK_CONDITION,
    EXT_CDS_LINK_ORDERS,
    PRIORITY_TO_INDICATOR,
    RULE_SYSTEM,
)

#: Link expressions a documentation entry may declare: extension -> the part it fills.
_LINK_EXPRESSIONS = ((EXT_CDS_LINK_CONDITION, LINK_OFFERED), (EXT_CDS_LINK_ORDERS, LINK_ORDERS))


class _Compiler:
    """Compiles one PlanDefinition, collecting every problem instead of stopping."""

    def __init__(
        self,
        pd: Mapping[str, Any],
        *,
        resolve: Any,
        known_features: Iterable[str] | None,
        bsa_feature: str,
    ) -> None:
        self.pd = pd
        self.url = pd.get("url") or f"PlanDefinition/{pd.get('id', '')}"
        self.resolve = resolve
        self.known = None if known_features is None else frozenset(known_features)
        self.bsa_feature = bsa_feature
        self.problems: list[SactCdsError] = []

    def fail(self, exc_type: type[SactCdsError], message: str, action: Mapping[str, Any] | None) -> None:
        self.problems.append(
            exc_type(message, artifact=self.url, action_id=(action or {}).get("id"))
        )

    def expr(self, source: Mapping[str, Any], action: Mapping[str, Any], where: str) -> CompiledExpression | None:
        language = source.get("language")
        if language != FHIRPATH:
            self.fail(
                ExpressionCompileError,
                f"{where}: language {language!r} is not supported; use {FHIRPATH!r}",
                action,
            )
            return None
        try:
            return compile_expression(
                source.get("expression", ""),
                known_features=self.known,
                artifact=self.url,
                action_id=action.get("id"),
                where=where,
            )
        except SactCdsError as exc:
            self.problems.append(exc)
            return None

    def conditions(self, action: Mapping[str, Any]) -> tuple[CompiledExpression, ...]:
        out = []
        for i, cond in enumerate(action.get("condition") or ()):
            if cond.get("kind") != "applicability":
                self.fail(
                    KnowledgeError,
                    f"condition[{i}]: kind {cond.get('kind')!r} is not supported on a rule "
                    "(only 'applicability')",
                    action,
                )
                continue
            source = cond.get("expression") or {}
            whole = self.expr(source, action, f"condition[{i}]")
            if whole is None:
                continue
            parts = conjuncts(whole.expression)
            if len(parts) == 1:
                out.append(whole)
                continue
            for part in parts:  # checked as a whole above; each part compiles alone
                compiled = self.expr(dict(source, expression=part), action, f"condition[{i}]")
                if compiled is not None:
                    out.append(compiled)
        return tuple(out)

    def plan(self) -> RulePlan | None:
        pd = self.pd
        hooks = plan_hooks(pd)
        if not hooks:
            self.fail(KnowledgeError, "eca-rule PlanDefinition has no named-event trigger (no hook)", None)
        rules: list[Rule] = []
        template = BUILTIN_TEMPLATE
        inputs: list[Mapping[str, Any]] = []
        for action in pd.get("action") or ():
            for child in _walk(action):
                inputs.extend(child.get("input") or ())
            code, display = rule_code(action)
            if code is None:
                self.fail(KnowledgeError, f"top-level action has no code in {RULE_SYSTEM}", action)
                continue
            if code == TEMPLATE_CODE:
                template = self.template(action, display) or template
                continue
            rule = self.rule(action, code, display)
            if rule is not None:
                rules.append(rule)
        if self.problems:
            return None
        return RulePlan(
            id=str(pd.get("id", "")),
            url=self.url,
            version=pd.get("version"),
            title=pd.get("title"),
            description=pd.get("description"),
            usage=pd.get("usage"),
            hooks=hooks,
            rules=tuple(rules),
            template=template,
            inputs=tuple(inputs),
        )

    def template(self, action: Mapping[str, Any], display: str | None) -> Template | None:
        for i, cond in enumerate(action.get("condition") or ()):
            if (cond.get("expression") or {}).get("expression", "").strip() != "false":
                self.fail(
                    KnowledgeError,
                    f"condition[{i}]: the data-unavailable action is the template for "
                    "engine-generated cards: give it no condition, or 'false'",
                    action,
                )
                return None
        priority = action.get("priority") or BUILTIN_TEMPLATE.priority
        if priority not in PRIORITY_TO_INDICATOR:
            self.fail(KnowledgeError, f"priority {priority!r} is not routine|urgent|stat", action)
            return None
        return Template(
            title=action.get("title") or BUILTIN_TEMPLATE.title,
            description=action.get("description") or BUILTIN_TEMPLATE.description,
            priority=priority,
            documentation=tuple(action.get("documentation") or ()),
            action_id=action.get("id"),
            code_display=display,
            override_codes=override_codes(action),
        )

    def rule(self, action: Mapping[str, Any], code: str, display: str | None) -> Rule | None:
        before = len(self.problems)
        priority = action.get("priority")
        if priority not in PRIORITY_TO_INDICATOR:
            self.fail(
                KnowledgeError,
                f"priority {priority!r} must be one of {', '.join(PRIORITY_TO_INDICATOR)} "
                "(it gives the card indicator)",
                action,
            )
        dynamic: list[tuple[str, CompiledExpression]] = []
        for i, dv in enumerate(action.get("dynamicValue") or ()):
            path = str(dv.get("path", "")).lstrip("%")
            if path not in CARD_PATHS and not (
                path.startswith(CARD_EXTENSION_PREFIX) and len(path) > len(CARD_EXTENSION_PREFIX)
                and not path.startswith(CARD_EXTENSION_PREFIX + LINK_VALUE_KEY)
            ):
                self.fail(
                    KnowledgeError,
                    f"dynamicValue[{i}]: path {path!r} is not supported; use "
                    f"{', '.join(CARD_PATHS)} or {CARD_EXTENSION_PREFIX}<key>",
                    action,
                )
                continue
            compiled = self.expr(dv.get("expression") or {}, action, f"dynamicValue[{path}]")
            if compiled is not None:
                dynamic.append((path, compiled))
        dynamic.extend(self.link_expressions(action))
        if not action.get("title") and "action.title" not in dict(dynamic):
            self.fail(KnowledgeError, "rule action has no title (the card summary)", action)
        behavior = action.get("selectionBehavior") or "any"
        if behavior not in SELECTION_BEHAVIORS:
            self.fail(
                KnowledgeError,
                f"selectionBehavior {behavior!r}: CDS Hooks cards allow only any | at-most-one",
                action,
            )
        conditions = self.conditions(action)
        suggestions = tuple(
            s for s in (self.suggestion(child, action) for child in action.get("action") or ()) if s
        )
        if len(self.problems) > before:
            return None
        features: list[str] = []
        variables: set[str] = set()
        for expr in (*conditions, *(e for _, e in dynamic), *(e for s in suggestions for e in s.expressions())):
            features.extend(f for f in expr.features if f not in features)
            variables |= expr.variables
        if any(s.uses_bsa for s in suggestions) and self.bsa_feature not in features:
            features.append(self.bsa_feature)
        if features:
            variables.add("features")
        return Rule(
            code=code,
            code_display=display,
            action_id=action.get("id"),
            title=action.get("title"),
            description=action.get("description"),
            text_equivalent=action.get("textEquivalent"),
            priority=priority,
            documentation=tuple(action.get("documentation") or ()),
            conditions=conditions,
            dynamic=tuple(dynamic),
            suggestions=suggestions,
            selection_behavior=behavior,
            input_types=frozenset(
                i["type"] for a in _walk(action) for i in a.get("input") or () if i.get("type")
            ),
            hooks=frozenset(named_events(action)),
            features=tuple(features),
            variables=frozenset(variables),
            override_codes=override_codes(action),
            statements=source_statements(action),
            supersedes=supersedes(action),
        )

    def link_expressions(self, action: Mapping[str, Any]) -> list[tuple[str, CompiledExpression]]:
        """A link's ``cds-link-condition`` (offer the link only when true) and
        ``cds-link-orders`` (the draft orders its app is about, ``Type/id`` strings), as
        dynamic values under the private key of their documentation entry: evaluated with
        the rule's other dynamic values, applied to the link by cards.card."""
        out = []
        for i, doc in enumerate(action.get("documentation") or ()):
            for ext in doc.get("extension") or () if isinstance(doc, Mapping) else ():
                part = dict(_LINK_EXPRESSIONS).get(ext.get("url")) if isinstance(ext, Mapping) else None
                if part is None:
                    continue
                where = f"documentation[{i}] {ext['url'].rsplit('/', 1)[-1]}"
                if i == 0:
                    self.fail(KnowledgeError, f"{where}: documentation[0] is the card's source, not a link", action)
                    continue
                if not isinstance(ext.get("valueExpression"), Mapping):
                    self.fail(KnowledgeError, f"{where}: needs a valueExpression (text/fhirpath)", action)
                    continue
                compiled = self.expr(ext["valueExpression"], action, where)
                if compiled is not None:
                    out.append((CARD_EXTENSION_PREFIX + link_value_key(i, part), compiled))
        return out

    def suggestion(self, child: Mapping[str, Any], parent: Mapping[str, Any]) -> SuggestionRule | None:
        label = child.get("title") or child.get("textEquivalent")
        if not label:
            self.fail(KnowledgeError, "child action (a suggestion) has no title (its label)", child)
            return None
        if child.get("action"):
            self.fail(KnowledgeError, "suggestion actions cannot have child actions", child)
            return None
        type_code = ((child.get("type") or {}).get("coding") or [{}])[0].get("code")
        # what every kind of suggestion carries
        common = {"label": label, "description": child.get("description"), "action_id": child.get("id"),
                  "conditions": self.conditions(child)}
        canonical = child.get("definitionCanonical")
        if canonical:
            if type_code not in (None, "create"):
                self.fail(KnowledgeError, f"definitionCanonical with type {type_code!r}: use 'create'", child)
                return None
            activity = self.activity(canonical, child)
            if activity is None:
                return None
            return SuggestionRule(
                **common,
                kind="create",
                activity=activity,
                activity_canonical=canonical,
                uses_bsa=needs_bsa(activity),
            )
        if type_code == "remove":
            ids = [
                dv for dv in child.get("dynamicValue") or () if str(dv.get("path", "")).lstrip("%") == "resourceId"
            ]
            if len(ids) != 1:
                self.fail(
                    KnowledgeError,
                    "a 'remove' suggestion needs exactly one dynamicValue with path 'resourceId' "
                    "(FHIRPath giving Type/id strings)",
                    child,
                )
                return None
            compiled = self.expr(ids[0].get("expression") or {}, child, "dynamicValue[resourceId]")
            if compiled is None:
                return None
            return SuggestionRule(
                **common,
                kind="delete",
                resource_ids=compiled,
            )
        if type_code == "update":
            return self.update(child, common)
        if type_code is not None:
            self.fail(
                KnowledgeError,
                f"suggestion type {type_code!r} is not supported (create via definitionCanonical, remove or update)",
                child,
            )
            return None
        if child.get("dynamicValue"):
            self.fail(KnowledgeError, "dynamicValue on a label-only suggestion is not supported", child)
            return None
        return SuggestionRule(
            **common,
            kind="label",
        )

    def update(self, child: Mapping[str, Any], common: Mapping[str, Any]) -> SuggestionRule | None:
        """An ``update`` child: dynamicValue ``resourceId`` (the draft orders) and the new
        dose (``UPDATE_PATHS``); anything else is refused at load. ``common``: the fields every
        suggestion carries (label, description, action id, conditions)."""
        by_path: dict[str, Mapping[str, Any]] = {}
        for dv in child.get("dynamicValue") or ():
            path = str(dv.get("path", "")).lstrip("%")
            if path != "resourceId" and path not in UPDATE_PATHS or path in by_path:
                self.fail(KnowledgeError, f"an 'update' suggestion cannot set {path!r} (allowed: resourceId, "
                                          f"{', '.join(UPDATE_PATHS)}; each once)", child)
                return None
            by_path[path] = dv
        if "resourceId" not in by_path or UPDATE_DOSE_VALUE not in by_path or UPDATE_DOSE_UNIT not in by_path:
            self.fail(KnowledgeError, "an 'update' suggestion needs dynamicValues 'resourceId', "
                                      f"{UPDATE_DOSE_VALUE!r} and {UPDATE_DOSE_UNIT!r}", child)
            return None
        compiled = {p: self.expr(dv.get("expression") or {}, child, f"dynamicValue[{p}]") for p, dv in by_path.items()}
        if any(c is None for c in compiled.values()):
            return None
        return SuggestionRule(
            **common,
            kind="update",
            resource_ids=compiled.pop("resourceId"),
            changes=tuple((p, c) for p, c in compiled.items() if c is not None),
        )

    def activity(self, canonical: str, child: Mapping[str, Any]) -> Mapping[str, Any] | None:
        try:
            ad = self.resolve(canonical, self.pd)
        except SactCdsError as exc:
            exc.artifact, exc.action_id = exc.artifact or self.url, child.get("id")
            self.problems.append(exc)
            return None
        if ad.get("resourceType") != "ActivityDefinition" or ad.get("kind") != "MedicationRequest":
            self.fail(
                KnowledgeError,
                f"{canonical}: $apply supports ActivityDefinitions of kind MedicationRequest only",
                child,
            )
            return None
        if ad.get("dynamicValue"):
            self.fail(
                KnowledgeError,
                f"{canonical}: ActivityDefinition.dynamicValue is not supported by $apply",
                child,
            )
            return None
        if needs_bsa(ad) and self.known is not None and self.bsa_feature not in self.known:
            self.fail(
                UnknownFeature,
                f"{canonical} doses per m2: $apply needs the case feature {self.bsa_feature!r}",
                child,
            )
            return None
        return ad


def _walk(action: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    yield action
    for child in action.get("action") or ():
        yield from _walk(child)


def compile_plan(
    pd: Mapping[str, Any],
    *,
    resolve: Any,
    known_features: Iterable[str] | None,
    bsa_feature: str,
) -> tuple[RulePlan | None, list[SactCdsError]]:
    """Compile ``pd``; returns (plan, []) or (None, every problem found).

    ``resolve(canonical, pd)`` returns the artifact a ``definitionCanonical`` names
    (contained ``#id`` or a knowledge-base canonical) or raises a KnowledgeError.
    """
    compiler = _Compiler(pd, resolve=resolve, known_features=known_features, bsa_feature=bsa_feature)
    plan = compiler.plan()
    return plan, compiler.problems
