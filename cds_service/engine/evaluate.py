"""The engine: rule PlanDefinitions + a patient's record -> CDS Hooks cards.

``Engine(kb)`` compiles every rule PlanDefinition once (_rules.py), reads every
clinical-protocol PlanDefinition into a regimen schedule once (knowledge/_regimen.py: the
features' ``ctx.regimens``, so a new regimen is new JSON), and refuses bad knowledge with
a KnowledgeError naming every problem. ``Engine.evaluate`` then:

1. computes the case features the service's rules read, each once; a feature that raises
   or returns something else than a FeatureValue is ``unknown`` with a note (and a log line
   naming the feature and the exception type, never patient data);
2. evaluates each rule's conditions (Kleene AND, conditions.all_true): true -> its card;
   false on known data -> nothing; cannot tell (an empty result, an error, or false only
   because a feature it reads is unknown) -> a ``data-unavailable`` card naming the rule
   and the notes of its unknown features: never silence (DESIGN.md "Anything that goes
   wrong during evaluation becomes a visible card"; STYLE.md §5);
3. adds one ``data-unavailable`` card for the record's DataNotes (missing or failed
   prefetch, unreadable resources), saying which checks each note affects: the rules whose
   ``input`` DataRequirements include the note's resource type.

The ``data-unavailable`` top-level action of each rule PlanDefinition is the template
(title, description, priority, documentation) of these engine-generated cards, so their
wording is knowledge like any other card text. A plan without one uses
``_rules.BUILTIN_TEMPLATE`` ("Some checks could not be run", indicator warning).

The engine holds no rule-specific branch: a rule is JSON (tests/test_new_rule_as_json.py).
Logs go to ``sact_cds.engine`` with rule codes, feature names and counts only.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from time import perf_counter
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from cds_service.engine import cards
from cds_service.engine._plan import Rule, RulePlan, rule_code
from cds_service.engine._rules import compile_plan
from cds_service.engine.apply import BSA_FEATURE, iso_instant
from cds_service.engine.conditions import ConditionsResult, Scope, all_true, to_json
from cds_service.engine.discovery import ServiceDefinition, prefetch_templates, service_definitions
from cds_service.engine.relevance import OrderGate, derive_gate
from cds_service.engine.suggestions import build_suggestions
from cds_service.errors import KnowledgeError, SactCdsError, UnknownArtifact
from cds_service.features import Evidence, FeatureContext, FeatureRegistry, FeatureValue, SitePolicy
from cds_service.knowledge import regimen_schedule
from cds_service.knowledge.terms import PRIORITY_TO_INDICATOR
from cds_service.record import DataNote, PatientRecord, read_draft_orders, record_notes

if TYPE_CHECKING:
    from cds_service.knowledge import KnowledgeBase, RegimenSchedule

log = logging.getLogger("sact_cds.engine")

TEMPLATE_CODE = "data-unavailable"


@dataclass
class Evaluation:
    """What one evaluation produced.

    ``rule_codes``: the topic code of each card, in card order; ``notes``: what could not
    be evaluated or read (for the audit record); ``timings_ms``: ``features``, ``rules``
    (conditions), ``render`` (cards, dynamicValues, suggestions, $apply) — the caller adds
    ``record``; ``features``: the computed case features as FHIRPath saw them.
    """

    cards: list[dict[str, Any]]
    rule_codes: list[str]
    notes: list[str]
    timings_ms: dict[str, float]
    features: dict[str, dict[str, Any]] = field(default_factory=dict)


class Engine:
    """Evaluates the knowledge base's eca-rule PlanDefinitions; one service per plan."""

    def __init__(
        self,
        kb: KnowledgeBase,
        registry: FeatureRegistry | None = None,
        policy: SitePolicy | None = None,
        *,
        relevance_gate: bool = True,
    ) -> None:
        if registry is None:
            from cds_service import features as _features

            registry = _features.default_registry()
        self.kb = kb
        self.knowledge_version = kb.version
        self.registry = registry
        self.policy = policy or SitePolicy()
        self._policy_json = self.policy.as_json()
        errors, warnings, self._plans, self.services = _build(kb, registry)
        regimens, regimen_errors = _regimens(kb)
        errors.extend(regimen_errors)
        #: canonical url (without version) -> schedule of every clinical-protocol PlanDefinition
        self.regimens: Mapping[str, RegimenSchedule] = MappingProxyType(regimens)
        for warning in warnings:
            log.warning("%s", warning)
        if errors:
            if len(errors) == 1:
                raise errors[0]
            raise KnowledgeError(
                f"{len(errors)} problems in the rule knowledge:\n" + "\n".join(f"- {e}" for e in errors)
            )
        self._override = cards.override_reasons(kb.resources)
        #: (service id, hook) -> the relevance gate of the rules that run there (relevance.py)
        self._gates: dict[tuple[str, str], OrderGate] = {}
        if relevance_gate:
            for plan in self._plans.values():
                for hook in plan.hooks:
                    gate = derive_gate(plan.for_hook(hook)[0], registry)
                    if gate is not None:
                        self._gates[(plan.id, hook)] = gate
        self._by_id: dict[str, ServiceDefinition] = {}
        self._prefetch: dict[str, dict[str, str]] = {}
        for s in self.services:
            self._by_id.setdefault(s.id, s)
            self._prefetch.setdefault(s.id, {}).update(s.prefetch)

    def service(self, service_id: str, hook: str | None = None) -> ServiceDefinition:
        """The service entry for ``service_id`` (and ``hook``); KeyError if unknown."""
        if hook is None:
            return self._by_id[service_id]
        for s in self.services:
            if s.id == service_id and s.hook == hook:
                return s
        raise KeyError(f"{service_id} ({hook})")

    def gate(self, service_id: str, hook: str) -> OrderGate | None:
        """The relevance gate of ``service_id`` on ``hook`` (None: every order is relevant)."""
        return self._gates.get((service_id, hook))

    def screen(
        self, service_id: str, request: Mapping[str, Any], expected_prefetch: Iterable[str] = (),
        extra_notes: Iterable[DataNote] = (),
    ) -> Evaluation | None:
        """The answer to a hook request no rule can fire on, without building the record or
        computing a feature (relevance.py); None when the request needs :meth:`evaluate`.

        The answer is what :meth:`evaluate` gives such a request: no rule card, and the
        data-problems card when the record would carry notes (missing prefetch, unreadable
        resources; ``extra_notes``: the fallback fetch's, added to the record as the service
        does). Anything unexpected -> None, so the full path reports it as it would.
        """
        t0 = perf_counter()
        gate = self._gates.get((service_id, request.get("hook")))  # type: ignore[arg-type]
        if gate is None:
            return None
        try:
            drafts = read_draft_orders(request.get("context") or {}, [])
            if not gate.irrelevant(drafts, self.kb.terminology):
                return None
            notes = (*record_notes(request, expected_prefetch), *extra_notes)
        except Exception:  # noqa: BLE001 - the full path raises or reports it
            return None
        out: list[dict[str, Any]] = []
        if notes:
            plan = self._plans[service_id]
            rules = plan.for_hook(request.get("hook"))[0]  # type: ignore[arg-type]
            out.append(self._notes_card(plan, rules, PatientRecord(None, draft_orders=drafts, notes=notes)))
        return Evaluation(
            cards=out,
            rule_codes=[TEMPLATE_CODE] * len(out),
            notes=[f"{n.kind} {n.key}: {n.message}" for n in notes],
            timings_ms={"gate": (perf_counter() - t0) * 1000},
        )

    def evaluate(
        self, service_id: str, record: PatientRecord, now: datetime, *, hook: str | None = None
    ) -> Evaluation:
        """Cards of service ``service_id`` for ``record`` at ``now`` (naive = UTC).

        ``hook`` limits a plan serving several hooks to the rules that run on it (rules
        whose action has a named-event trigger for another hook are skipped); None runs
        every rule. KeyError for an unknown service, ValueError for a hook it does not serve.
        """
        t0 = perf_counter()
        plan = self._plans[service_id]
        if hook is not None and hook not in plan.hooks:
            raise ValueError(f"service {service_id} does not serve hook {hook!r}")
        rules, feature_names, used = plan.for_hook(hook)
        now_iso = iso_instant(now)
        ctx = FeatureContext(now, self.kb.terminology, self.policy, self.regimens)
        values = {name: self._feature(name, record, ctx) for name in feature_names}
        t1 = perf_counter()

        unknown = frozenset(n for n, v in values.items() if v.status == "unknown")
        # one JSON form per feature, read by FHIRPath as %features and kept for the audit
        as_json = {n: v.as_json() for n, v in values.items()}
        scope = Scope(self._variables(used, as_json, record, now_iso), unknown)
        out: list[dict[str, Any]] = []
        notes: list[str] = [f"{n}: {v.note}" for n, v in values.items() if v.status == "unknown" and v.note]
        render = 0.0
        lines: dict[str, tuple[str, ...]] = {}  # evidence bullets by feature, for every card
        for rule in rules:
            try:
                result = all_true(rule.conditions, scope)
                if result.truth is False:
                    continue
                r0 = perf_counter()
                if result.truth is None:
                    self._log_unevaluated(rule, result)
                    notes.append(f"{rule.code}: could not be evaluated")
                    out.append(self._rule_unavailable(plan, rule, values, result=result, lines=lines))
                else:
                    out.append(self._render(plan, rule, scope, record, ctx, values, lines))
                render += perf_counter() - r0
            except Exception as exc:  # noqa: BLE001 - fail visible: a card, not a 500
                log.error("rule %s failed while rendering: %s at %s", rule.code, type(exc).__name__, _origin(exc))
                notes.append(f"{rule.code}: evaluation error {type(exc).__name__}")
                out.append(self._rule_unavailable(plan, rule, {}, error=type(exc).__name__))
        t2 = perf_counter()
        if record.notes:
            log.info(
                "service %s: %d data note(s) (%s)",
                service_id,
                len(record.notes),
                ", ".join(sorted({n.kind for n in record.notes})),
            )
            notes.extend(n.message for n in record.notes)
            out.append(self._notes_card(plan, rules, record))
        t3 = perf_counter()
        codes = [c["source"]["topic"]["code"] for c in out]
        log.debug("service %s: %d card(s) %s", service_id, len(out), codes)
        return Evaluation(
            cards=out,
            rule_codes=codes,
            notes=notes,
            timings_ms={
                "features": (t1 - t0) * 1000,
                "rules": (t2 - t1 - render) * 1000,
                "render": (render + t3 - t2) * 1000,
            },
            features=as_json,
        )

    # -- evaluation steps ------------------------------------------------------------

    def _feature(self, name: str, record: PatientRecord, ctx: FeatureContext) -> FeatureValue:
        try:
            value = self.registry.get(name)(record, ctx)
        except Exception as exc:  # noqa: BLE001 - one feature failing must not hide the others
            log.warning(
                "case feature %s raised %s at %s; treated as unknown", name, type(exc).__name__, _origin(exc)
            )
            return FeatureValue.unknown(f"could not be computed ({type(exc).__name__}: {str(exc)[:120]})")
        if not isinstance(value, FeatureValue) or not all(isinstance(e, Evidence) for e in value.evidence):
            log.warning("case feature %s returned a malformed %s; treated as unknown", name, type(value).__name__)
            return FeatureValue.unknown("could not be computed (internal error)")
        return value

    def _variables(
        self, used: frozenset[str], features: dict[str, dict[str, Any]], record: PatientRecord, now_iso: str
    ) -> dict[str, Any]:
        """The FHIRPath variables (read as they are; conditions.Scope copies them for
        fhirpathpy). ``features`` is every computed feature's ``as_json()``."""
        raw: dict[str, Any] = {}
        if "features" in used:
            raw["features"] = features
        if "draftOrders" in used:
            raw["draftOrders"] = list(record.draft_orders)
        if "selections" in used:
            raw["selections"] = list(record.selected_orders())
        if "patient" in used:
            raw["patient"] = record.patient or {}
        if "policy" in used:
            raw["policy"] = self._policy_json
        raw["now"] = now_iso
        return raw

    def _render(
        self,
        plan: RulePlan,
        rule: Rule,
        scope: Scope,
        record: PatientRecord,
        ctx: FeatureContext,
        values: Mapping[str, FeatureValue],
        lines: dict[str, tuple[str, ...]] | None = None,
    ) -> dict[str, Any]:
        dynamic: dict[str, list[Any]] = {}
        failed: list[str] = []
        for path, expr in rule.dynamic:
            try:
                dynamic[path] = to_json(expr.evaluate(scope))
            except Exception as exc:  # noqa: BLE001 - shown on the card
                log.warning("rule %s: dynamicValue %s raised %s", rule.code, path, type(exc).__name__)
                failed.append(f"- `{path}` could not be computed ({type(exc).__name__})")
        title = _text(dynamic.get("action.title")) or rule.title or rule.text_equivalent or rule.code
        description = _text(dynamic.get("action.description"), "\n\n") or rule.description
        priority = rule.priority
        dyn_priority = _text(dynamic.get("action.priority"))
        if dyn_priority in PRIORITY_TO_INDICATOR:
            priority = dyn_priority
        elif dyn_priority:
            failed.append(f"- `action.priority` gave {cards.md(dyn_priority)}, not routine/urgent/stat")
        extra = {
            path.removeprefix("card.extension."): value
            for path, value in dynamic.items()
            if path.startswith("card.extension.")
        }
        built = build_suggestions(rule, scope, record, ctx, values)
        for where, exc_type in built.errors:
            log.warning("rule %s: suggestion %s raised %s", rule.code, where, exc_type)
        return cards.card(
            summary=cards.summary(title, rule=rule.code),
            detail=cards.detail(
                description,
                evidence=cards.evidence_lines(values, rule.features, lines),
                sections=(("Suggestions not offered", built.missing), ("Not shown on this card", failed)),
            ),
            indicator=cards.indicator(priority),
            source=cards.source(
                rule.documentation,
                plan_url=plan.url,
                action_id=rule.action_id,
                code=rule.code,
                code_display=rule.code_display,
            ),
            suggestions=built.suggestions,
            selection_behavior=rule.selection_behavior,
            override_reasons=self._override,
            links=cards.links(rule.documentation),
            extension=cards.extension(
                self.knowledge_version, cards.evidence_extension(values, rule.features), extra
            ),
        )

    def _log_unevaluated(self, rule: Rule, result: ConditionsResult) -> None:
        for where, exc_type, _ in result.errors:
            log.warning("rule %s: %s raised %s; data-unavailable card shown", rule.code, where, exc_type)
        if result.empty or result.undecided:
            log.info(
                "rule %s: %s undecided on unknown data; data-unavailable card shown",
                rule.code,
                ", ".join((*result.empty, *result.undecided)),
            )

    def _unavailable_card(
        self, plan: RulePlan, summary_suffix: str | None, fallback_suffix: str | None, body: list[tuple[str, list[str]]],
        evidence: list[str], evidence_ext: list[dict[str, Any]],
    ) -> dict[str, Any]:
        t = plan.template
        summary = t.title
        for suffix in (summary_suffix, fallback_suffix):
            if suffix and cards.check_summary(f"{t.title}: {suffix}") is None:
                summary = f"{t.title}: {suffix}"
                break
        return cards.card(
            summary=cards.summary(summary, rule=TEMPLATE_CODE),
            detail=cards.detail(t.description, evidence=(), sections=(*body, ("Patient data", evidence))),
            indicator=cards.indicator(t.priority),
            source=cards.source(
                t.documentation, plan_url=plan.url, action_id=t.action_id, code=TEMPLATE_CODE, code_display=t.code_display
            ),
            suggestions=[],
            selection_behavior="any",
            override_reasons=self._override,
            links=cards.links(t.documentation),
            extension=cards.extension(self.knowledge_version, evidence_ext),
        )

    def _rule_unavailable(
        self,
        plan: RulePlan,
        rule: Rule,
        values: Mapping[str, FeatureValue],
        *,
        result: ConditionsResult | None = None,
        error: str | None = None,
        lines: dict[str, tuple[str, ...]] | None = None,
    ) -> dict[str, Any]:
        why: list[str] = []
        if result is not None:
            why += [f"- `{w}` gave no result: data it needs are missing or unknown" for w in result.empty]
            why += [f"- `{w}` could not be decided: it reads data that are not known" for w in result.undecided]
            why += [f"- `{w}` failed ({cards.md(t)}: {cards.md(m)})" for w, t, m in result.errors]
        if error:
            why.append(f"- the card could not be built ({cards.md(error)})")
        check = [f"- {cards.md(rule.name)} (`{rule.code}`)"]
        return self._unavailable_card(
            plan,
            rule.title,
            rule.code,
            [("Check not run", check), ("Why", why)],
            cards.evidence_lines(values, rule.features, lines),
            cards.evidence_extension(values, rule.features),
        )

    def _notes_card(self, plan: RulePlan, rules: tuple[Rule, ...], record: PatientRecord) -> dict[str, Any]:
        prefetch = self._prefetch.get(plan.id, {})
        lines = []
        for note in record.notes:
            affected = _affected(note.key, prefetch, rules)
            if affected is None:
                tail = "may affect any check"
            elif not affected:
                tail = "no check of this service reads it"
            else:
                tail = "affects: " + ", ".join(dict.fromkeys(cards.md(r.name) for r in affected))
            lines.append(f"- {cards.md(note.message)} ({tail})")
        return self._unavailable_card(
            plan, "patient data incomplete", None, [("Data problems", lines)], [], []
        )


def _origin(exc: BaseException) -> str:
    """Where an exception was raised (``file.py:line``): for logs, which must not carry
    the exception's message or traceback locals (they may hold patient data)."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is None:
        return "?"
    return f"{Path(tb.tb_frame.f_code.co_filename).name}:{tb.tb_lineno}"


def _text(values: list[Any] | None, sep: str = " ") -> str | None:
    if not values:
        return None
    texts = [str(v) for v in values if v is not None and v != ""]
    return sep.join(texts) or None


#: Types the record reads as another type (record._build.normalise: DSTU2 MedicationOrder).
_READ_AS = {"MedicationOrder": "MedicationRequest"}


def _affected(key: str, prefetch: Mapping[str, str], rules: tuple[Rule, ...]) -> list[Rule] | None:
    """Rules a DataNote about ``key`` affects; None when the key's data type is unknown."""
    if key == "draftOrders":
        return [r for r in rules if r.variables & {"draftOrders", "selections"}]
    rtype: str | None = None
    if key in prefetch:
        rtype = prefetch[key].split("?", 1)[0].split("/", 1)[0]
    elif "/" in key:
        rtype = key.split("/", 1)[0]
    elif key[:1].isupper():
        rtype = key
    if rtype is None:
        return None
    rtype = _READ_AS.get(rtype, rtype)
    if rtype == "Patient":
        return [r for r in rules if "Patient" in r.input_types or "patient" in r.variables]
    if rtype == "MedicationRequest":  # draft orders are MedicationRequests too
        return [r for r in rules if rtype in r.input_types or r.variables & {"draftOrders", "selections"}]
    return [r for r in rules if rtype in r.input_types]


def _resolver(kb: KnowledgeBase):
    def resolve(canonical: str, pd: Mapping[str, Any]) -> Mapping[str, Any]:
        if canonical.startswith("#"):
            for res in pd.get("contained") or ():
                if res.get("id") == canonical[1:]:
                    return res
            raise UnknownArtifact(f"no contained resource {canonical}", artifact=pd.get("url"))
        return kb.get(canonical)

    return resolve


def _regimens(kb: KnowledgeBase) -> tuple[dict[str, RegimenSchedule], list[SactCdsError]]:
    """Every clinical-protocol PlanDefinition as a schedule, by canonical url: (schedules,
    errors). A regimen that cannot be read is an error, not a regimen quietly left out."""
    schedules: dict[str, RegimenSchedule] = {}
    errors: list[SactCdsError] = []
    for pd in kb.regimen_plans():
        try:
            schedules[str(pd.get("url"))] = regimen_schedule(kb, pd)
        except SactCdsError as exc:
            errors.append(exc)
    return schedules, errors


def _build(
    kb: KnowledgeBase, registry: FeatureRegistry | None
) -> tuple[list[SactCdsError], list[str], dict[str, RulePlan], list[ServiceDefinition]]:
    """Compile every rule plan: (errors, warnings, plans by id, service entries)."""
    errors: list[SactCdsError] = []
    warnings: list[str] = []
    plans: dict[str, RulePlan] = {}
    services: list[ServiceDefinition] = []
    known = registry.names() if registry is not None else None
    resolve = _resolver(kb)
    for pd in kb.rule_plans():
        plan, problems = compile_plan(pd, resolve=resolve, known_features=known, bsa_feature=BSA_FEATURE)
        errors.extend(problems)
        if plan is None:
            continue
        if plan.id in plans:
            errors.append(KnowledgeError(f"two rule PlanDefinitions have id {plan.id!r}", artifact=plan.url))
            continue
        plans[plan.id] = plan
        for rule in plan.rules:
            problem = cards.check_summary(rule.title) if rule.title else None
            if problem:
                warnings.append(f"{plan.url} action {rule.action_id or rule.code}: {problem}")
        try:
            services.extend(service_definitions(plan, prefetch_templates(plan, kb.resources, kb.terminology)))
        except SactCdsError as exc:
            errors.append(exc)
    try:
        cards.override_reasons(kb.resources)
    except KnowledgeError as exc:
        errors.append(exc)
    return errors, warnings, plans, services


def iter_rule_problems(kb: KnowledgeBase, registry: FeatureRegistry | None = None) -> Iterator[str]:
    """Every problem the engine finds in the rule knowledge, as a located message, for
    ``validate``; yields and never raises (STYLE.md §9). Includes what the engine only
    warns about at startup (a title too long for a card summary)."""
    try:
        errors, warnings, plans, _ = _build(kb, registry)
        errors += _regimens(kb)[1]
    except Exception as exc:  # noqa: BLE001 - a validator reports, it does not crash
        yield f"engine could not read the rules: {type(exc).__name__}: {exc}"
        return
    for exc in errors:
        yield str(exc)
    yield from warnings
    for pd in kb.rule_plans():
        for action in pd.get("action") or ():
            code, _ = rule_code(action)
            if code == TEMPLATE_CODE:
                problem = cards.check_summary(action.get("title")) if action.get("title") else None
                if problem:
                    yield f"{pd.get('url')} action {action.get('id') or code}: {problem}"
