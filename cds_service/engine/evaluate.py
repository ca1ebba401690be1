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
import traceback
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
from cds_service.record import DataNote, PatientRecord, read_draft_orders, record_notes, subject_check

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
            # the drafts the full path would read: another patient's are left out (HAZ-001)
            drafts = read_draft_orders(request.get("context") or {}, [], subject_check(request), {})
            if not gate.irrelevant(drafts, self.kb.terminology):
                return None
            notes = (*record_notes(request, expected_prefetch), *extra_notes)
        except Exception:  # noqa: BLE001 - the full path raises or reports it
            return None
        out: list[dict[str, Any]] = []
        if notes:
            plan = self._plans[service_id]
            rules = plan.for_hook(request.get("hook"))[0]  # type: ignore[arg-type]
            record = PatientRecord(None, draft_orders=drafts, notes=notes)
            out = _finish([self._unavailable(plan, rules, [], {}, record)])
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
        shown: list[_Shown] = []
        missed: list[_Missed] = []
        notes: list[str] = [f"{n}: {v.note}" for n, v in values.items() if v.status == "unknown" and v.note]
        render = 0.0
        lines: dict[str, tuple[str, ...]] = {}  # evidence bullets by feature, for every card
        for order, rule in enumerate(rules):
            try:
                result = all_true(rule.conditions, scope)
                if result.truth is False:
                    continue
                r0 = perf_counter()
                if result.truth is None:
                    self._log_unevaluated(rule, result)
                    notes.append(f"{rule.code}: could not be evaluated")
                    missed.append(_Missed(rule, tuple(f for f in rule.features if f in unknown), bool(result.errors)))
                else:
                    shown.append(self._render(plan, rule, scope, record, ctx, values, lines, order))
                render += perf_counter() - r0
            except Exception as exc:  # noqa: BLE001 - fail visible: a card, not a 500
                log.error(
                    "rule %s failed while rendering: %s at %s\n%s",
                    rule.code, type(exc).__name__, _origin(exc), _stack(exc),
                )
                notes.append(f"{rule.code}: evaluation error {type(exc).__name__}")
                missed.append(_Missed(rule, (), True))
        t2 = perf_counter()
        if record.notes:
            log.info(
                "service %s: %d data note(s) (%s)",
                service_id,
                len(record.notes),
                ", ".join(sorted({n.kind for n in record.notes})),
            )
            notes.extend(n.message for n in record.notes)
        shown = _one_per_problem(shown)
        if missed or record.notes:
            shown.append(self._unavailable(plan, rules, missed, values, record))
        out = _finish(shown)
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
                "case feature %s raised %s at %s; treated as unknown\n%s",
                name, type(exc).__name__, _origin(exc), _stack(exc),
            )
            return FeatureValue.unknown(cards.NOT_CHECKED)
        if not isinstance(value, FeatureValue) or not all(isinstance(e, Evidence) for e in value.evidence):
            log.warning("case feature %s returned a malformed %s; treated as unknown", name, type(value).__name__)
            return FeatureValue.unknown(cards.NOT_CHECKED)
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
        lines: dict[str, tuple[str, ...]],
        order: int,
    ) -> _Shown:
        dynamic: dict[str, list[Any]] = {}
        failed: list[str] = []
        for path, expr in rule.dynamic:
            try:
                dynamic[path] = to_json(expr.evaluate(scope))
            except Exception as exc:  # noqa: BLE001 - shown on the card
                log.warning(
                    "rule %s: dynamicValue %s raised %s\n%s", rule.code, path, type(exc).__name__, _stack(exc)
                )
                failed.append(f"- {cards.PART_NAMES.get(path, 'part of this card')} could not be checked")
        title = _text(dynamic.get("action.title")) or rule.title or rule.text_equivalent or rule.code
        description = _text(dynamic.get("action.description"), "\n\n") or rule.description
        priority = rule.priority
        dyn_priority = _text(dynamic.get("action.priority"))
        if dyn_priority in PRIORITY_TO_INDICATOR:
            priority = dyn_priority
        elif dyn_priority:
            log.warning("rule %s: dynamicValue action.priority is not routine/urgent/stat", rule.code)
            failed.append("- the urgency of this card could not be worked out: shown at the rule's own level")
        extra = {
            path.removeprefix("card.extension."): value
            for path, value in dynamic.items()
            if path.startswith("card.extension.")
        }
        built = build_suggestions(rule, scope, record, ctx, values)
        for where, exc_type in built.errors:
            log.warning("rule %s: suggestion %s raised %s", rule.code, where, exc_type)
        card = cards.card(
            summary=cards.summary(title, rule=rule.code),
            detail="",
            indicator=cards.indicator(priority),
            source=cards.source(
                rule.documentation,
                plan_url=plan.url,
                action_id=rule.action_id,
                code=rule.code,
                code_display=rule.code_display,
                statements=rule.statements,
            ),
            suggestions=built.suggestions,
            selection_behavior=rule.selection_behavior,
            override_reasons=self._reasons(rule.override_codes),
            links=cards.links(rule.documentation),
            extension=cards.extension(
                self.knowledge_version, cards.evidence_extension(values, rule.features), extra
            ),
        )
        return _Shown(
            card,
            order,
            description,
            tuple(cards.evidence_lines(values, rule.features, lines)),
            (("Suggestions not offered", tuple(built.missing)), ("Not shown on this card", tuple(failed))),
            weight=len(rule.features),
            code=rule.code,
            supersedes=rule.supersedes,
        )

    def _reasons(self, codes: tuple[str, ...]) -> tuple[dict[str, str], ...]:
        """The override reasons a rule declares (all of the CodeSystem when it declares none)."""
        if not codes:
            return self._override
        by_code = {r["code"]: r for r in self._override}
        return tuple(by_code[c] for c in codes if c in by_code)

    def _log_unevaluated(self, rule: Rule, result: ConditionsResult) -> None:
        for where, exc_type, _ in result.errors:
            log.warning("rule %s: %s raised %s; shown as not checked", rule.code, where, exc_type)
        if result.empty or result.undecided:
            log.info(
                "rule %s: %s undecided on unknown data; shown as not checked",
                rule.code,
                ", ".join((*result.empty, *result.undecided)),
            )

    def _unavailable(
        self,
        plan: RulePlan,
        rules: tuple[Rule, ...],
        missed: list[_Missed],
        values: Mapping[str, FeatureValue],
        record: PatientRecord,
    ) -> _Shown:
        """The one ``data-unavailable`` card of a hook call: every check that could not be
        made (by its clinical name, once), what to document so it can run, and the
        record's data problems. Never exception text: the log has that."""
        t = plan.template
        checks: list[str] = []  # check names, once each, in rule order
        document: dict[str, tuple[list[str], str]] = {}  # one line per reason: (data, note)
        unreadable = False
        for m in missed:
            name = m.rule.code_display or m.rule.name
            if name not in checks:
                checks.append(name)
            unreadable = unreadable or m.error
            for f in m.unknown:
                value = values.get(f)
                note = cards.plain_note(value.note if value is not None else None)
                if note == cards.NOT_CHECKED:
                    unreadable = True
                else:
                    labels, _ = document.setdefault(_core(note), ([], note))
                    if cards.feature_label(f) not in labels:
                        labels.append(cards.feature_label(f))
        check_lines = [f"- {cards.md(name)}" for name in checks]
        doc_lines = [f"- {cards.md(', '.join(labels))}: {cards.md(note)}" for labels, note in document.values()]
        if unreadable:
            doc_lines.append(
                "- Part of the order or the record could not be read: check the inotuzumab order as "
                "written (dose, date, route) and the record yourself"
            )
        prefetch = self._prefetch.get(plan.id, {})
        data_lines = []
        for note in record.notes:
            affected = _affected(note.key, prefetch, rules)
            if affected is None:
                tail = "may affect any check"
            elif not affected:
                tail = "no check of this service reads it"
            else:
                tail = "affects: " + ", ".join(dict.fromkeys(cards.md(r.code_display or r.name) for r in affected))
            data_lines.append(f"- {cards.md(cards.plain_note(note.message))} ({tail})")
        names = checks
        summary = t.title
        if len(names) == 1:
            candidates = [f"{t.title}: {names[0]}"]
        elif names:
            candidates = [f"{t.title}: {', '.join(names)}", f"{t.title}: {len(names)} checks"]
        else:
            candidates = [f"{t.title}: patient data incomplete"]
        for candidate in candidates:
            if cards.check_summary(candidate) is None:
                summary = candidate
                break
        card = cards.card(
            summary=cards.summary(summary, rule=TEMPLATE_CODE),
            detail="",
            indicator=cards.indicator(t.priority),
            source=cards.source(
                t.documentation, plan_url=plan.url, action_id=t.action_id, code=TEMPLATE_CODE, code_display=t.code_display
            ),
            suggestions=[],
            selection_behavior="any",
            override_reasons=self._reasons(t.override_codes),
            links=cards.links(t.documentation),
            extension=cards.extension(
                self.knowledge_version,
                cards.evidence_extension(values, dict.fromkeys(f for m in missed for f in m.unknown)),
            ),
        )
        sections = (("Not checked", tuple(check_lines)), ("What to document", tuple(doc_lines)),
                    ("Data problems", tuple(data_lines)))
        features = dict.fromkeys(f for m in missed for f in m.rule.features)
        # The data behind every check not made, the unknown ones included: a result that is
        # there but not current (HAZ-006) or implausible is the datum that decided, and the
        # card says what it is and when it was taken; their notes stay under "What to document".
        evidence = tuple(cards.evidence_lines(values, features))
        return _Shown(card, len(rules), t.description, evidence, sections, evidence_last=True)


@dataclass
class _Shown:
    """A card before its detail is written: the detail waits until every card of the
    call is known, so a fact already on a more urgent card is referred to, not repeated."""

    card: dict[str, Any]
    order: int  # rule order in the PlanDefinition (data-unavailable last)
    description: str | None
    evidence: tuple[str, ...]
    sections: tuple[tuple[str, tuple[str, ...]], ...]
    evidence_last: bool = False  # the data-unavailable card: what was not checked comes first
    weight: int = 0  # how many facts the card reads: the fewest owns a shared datum
    code: str = ""  # the rule code
    supersedes: tuple[str, ...] = ()  # rule codes whose card this one makes redundant


@dataclass(frozen=True)
class _Missed:
    """A rule that could not be decided: the unknown features it reads, and whether an
    error (not just missing data) stopped it."""

    rule: Rule
    unknown: tuple[str, ...]
    error: bool


def _one_per_problem(shown: list[_Shown]) -> list[_Shown]:
    """One card per problem: where a card declares that it supersedes another
    (``card-supersedes``: the same problem told twice) and both fire, only one is shown:
    the more urgent of the two, and on equal urgency the one that declares it. A critical
    card is thus never hidden behind a warning about the same problem; it stands for both
    (its text must then say what the other would have: e.g. the gross-dose card names the
    regimen and the response it follows)."""
    rank = cards.SEVERITY_RANK
    drop = set()
    for s in shown:
        for other in shown:
            if other is not s and other.code in s.supersedes:
                more_urgent = rank.get(other.card["indicator"], 9) < rank.get(s.card["indicator"], 9)
                drop.add(id(s) if more_urgent else id(other))
    return [s for s in shown if id(s) not in drop]


def _finish(shown: list[_Shown]) -> list[dict[str, Any]]:
    """Cards in severity order (critical, warning, info; then rule order), each detail
    written with the patient data it owns; a datum on several cards is shown once, on the
    most urgent card that reads it (among cards as urgent, the one reading the fewest facts:
    the most specific; the data-unavailable card first), and the others refer to that card
    by its summary."""
    shown.sort(key=lambda s: (cards.SEVERITY_RANK.get(s.card["indicator"], 9), s.order))
    owner: dict[str, _Shown] = {}
    for s in shown:  # most urgent first; among equals, the card reading the fewest facts
        for line in s.evidence:
            best = owner.get(line)
            if best is None or (best.card["indicator"] == s.card["indicator"] and s.weight < best.weight):
                owner[line] = s
    out = []
    for s in shown:
        own, refer = [], []
        for line in s.evidence:
            where = owner[line]
            if where is s:
                own.append(line)
            elif where.card["summary"] not in refer:
                refer.append(where.card["summary"])
        if refer:
            own.append("- " + "; ".join(f"also the data on the card “{cards.md(w)}”" for w in refer))
        if s.evidence_last:
            s.card["detail"] = cards.detail(s.description, sections=(*s.sections, ("Patient data", own)))
        else:
            s.card["detail"] = cards.detail(s.description, evidence=own, sections=s.sections)
        if not s.card["detail"]:
            del s.card["detail"]
        out.append(s.card)
    return out


def _core(note: str) -> str:
    """The reason inside a feature's note ("Cycle count unknown: <reason>. Record …"), so
    one missing datum behind several features is listed once."""
    core = note.split(": ", 1)[1] if ": " in note else note
    return core.split(". ", 1)[0].rstrip(".")


def _stack(exc: BaseException) -> str:
    """The traceback of ``exc`` for the log: frames and code lines only. The exception's
    message and locals are left out: they may carry patient data."""
    return "".join(traceback.format_list(traceback.extract_tb(exc.__traceback__))).rstrip()


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
        known_reasons = {r["code"] for r in cards.override_reasons(kb.resources)}
    except KnowledgeError as exc:
        errors.append(exc)
    else:
        for plan in plans.values():
            declared = [(r.action_id or r.code, r.override_codes) for r in plan.rules]
            declared.append((plan.template.action_id or TEMPLATE_CODE, plan.template.override_codes))
            for action_id, codes in declared:
                for code in codes:
                    if code not in known_reasons:
                        errors.append(KnowledgeError(
                            f"override reason {code!r} is not in CodeSystem override-reason",
                            artifact=plan.url, action_id=action_id,
                        ))
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
