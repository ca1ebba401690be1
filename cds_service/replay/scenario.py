"""Load replay scenarios: validate with the JSON Schema, read the header or infer one.

A scenario file is a header plus a FHIR Bundle, or a plain FHIR Bundle
(docs/architecture.md §8; schema ``fhir_profiles/scenario.schema.json``). Validation
*yields* every problem with the file and the JSON path of the offending value
(``$.scenario.expect.cards[0].indicator``), like jsonschema's ``iter_errors``;
:func:`load_scenario` raises one :class:`ScenarioError` listing them all.

For a plain Bundle the header is inferred: the one Patient is the patient, MedicationRequests
with ``status: draft`` are the draft orders, the hook is ``order-select`` and the newest
draft order (latest ``authoredOn``) is the selection.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema

from cds_service.errors import SactCdsError
from cds_service.knowledge.terms import CRITERION_CODES, RULE_CODES
from cds_service.replay import dates
from cds_service.resources import data_root

SCHEMA_PATH = data_root() / "fhir_profiles" / "scenario.schema.json"
#: Request resource types whose ``status: draft`` instances are draft orders.
ORDER_TYPES = ("MedicationRequest",)
DEFAULT_USER = "Practitioner/replay-tester"

Resource = dict[str, Any]


class ScenarioError(SactCdsError):
    """A scenario file cannot be replayed; ``problems`` lists every reason."""

    def __init__(self, path: str, problems: Sequence[Problem]) -> None:
        lines = "\n".join(f"  {p}" for p in problems)
        super().__init__(f"{path}: invalid scenario\n{lines}", field=path)
        self.path = path
        self.problems = list(problems)

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a scenario, located by JSON path."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"at {self.path}: {self.message}"


@dataclass(frozen=True)
class CardExpectation:
    rule: str
    indicator: str | None = None
    contains: tuple[str, ...] = ()
    criteria: Mapping[str, str] = field(default_factory=dict)
    suggestions: tuple[str, ...] = ()
    #: label fragments of the card's links, one per link (None: not checked; (): no link)
    links: tuple[str, ...] | None = None

    def describe(self) -> str:
        return f"{self.rule} ({self.indicator})" if self.indicator else self.rule


@dataclass(frozen=True)
class Expectation:
    cards: tuple[CardExpectation, ...] = ()
    absent: tuple[str, ...] = ()
    only: bool = False


@dataclass(frozen=True)
class Scenario:
    """A replayable scenario. ``bundle`` still holds relative date tokens: resolve them
    with :meth:`resolved` at the evaluation time."""

    path: Path
    title: str
    hook: str
    bundle: Resource
    now: str | None = None
    selections: tuple[str, ...] | None = None
    user_id: str | None = None
    encounter_id: str | None = None
    expect: Expectation | None = None
    inferred: bool = False

    @property
    def name(self) -> str:
        return self.path.stem

    def resources(self) -> list[Resource]:
        return [e["resource"] for e in self.bundle.get("entry", ()) if isinstance(e.get("resource"), dict)]

    def resolved(self, replay_now: datetime) -> ResolvedScenario:
        """The scenario at its evaluation time: relative dates replaced, patient, drafts and
        selections worked out."""
        when = dates.evaluation_time(self.now, replay_now)
        resources = dates.resolve_dates(self.resources(), when)
        patient = find_patient(resources)
        drafts = draft_orders(resources)
        draft_refs = {_ref(d) for d in drafts}
        record = [r for r in resources if _ref(r) not in draft_refs]
        if self.hook == "order-select":
            selections = self.selections or tuple(_ref(d) for d in newest(drafts)[:1])
        else:
            selections = tuple(_ref(d) for d in drafts)
        return ResolvedScenario(
            scenario=self,
            now=when,
            patient=patient,
            record=record,
            draft_orders=drafts,
            selections=tuple(selections),
            user_id=self.user_id or requester_of(drafts) or DEFAULT_USER,
            encounter_id=self.encounter_id or encounter_of(drafts, selections),
        )


@dataclass(frozen=True)
class ResolvedScenario:
    scenario: Scenario
    now: datetime
    patient: Resource | None
    record: list[Resource]  # every non-draft resource, patient included
    draft_orders: list[Resource]
    selections: tuple[str, ...]
    user_id: str
    encounter_id: str | None


# ---------------------------------------------------------------- loading


def collect_paths(paths: Iterable[str | Path]) -> list[Path]:
    """Scenario files named by the arguments: files as given, folders searched recursively
    for ``*.json`` (names starting with ``_`` or ``.`` skipped), sorted."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found.extend(
                sorted(
                    p
                    for p in path.rglob("*.json")
                    if not any(part.startswith(("_", ".")) for part in p.relative_to(path).parts)
                )
            )
        elif path.is_file():
            found.append(path)
        else:
            raise ScenarioError(str(path), [Problem("$", "no such file or folder")])
    return found


def load_scenario(path: str | Path) -> Scenario:
    """Read, validate and interpret one scenario file; ScenarioError lists every problem."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ScenarioError(str(path), [Problem("$", f"cannot read: {exc.strerror}")]) from exc
    except UnicodeDecodeError as exc:
        raise ScenarioError(str(path), [Problem(
            "$", f"not a UTF-8 text file (byte {exc.start}): a scenario is JSON text, a FHIR Bundle or "
                 "a {scenario, bundle} object")]) from exc
    except json.JSONDecodeError as exc:
        raise ScenarioError(
            str(path), [Problem("$", f"not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})")]
        ) from exc
    return scenario_from_json(data, path)


def scenario_from_json(data: Any, path: Path) -> Scenario:
    problems = list(iter_problems(data))
    if problems:
        raise ScenarioError(str(path), problems)
    if "resourceType" in data:
        return _infer(data, path)
    header = data["scenario"]
    expect = header.get("expect")
    return Scenario(
        path=path,
        title=header["title"],
        hook=header["hook"],
        bundle=data["bundle"],
        now=header.get("now"),
        selections=tuple(header["selections"]) if "selections" in header else None,
        user_id=header.get("userId"),
        encounter_id=header.get("encounterId"),
        expect=_expectation(expect) if expect is not None else None,
    )


def _infer(bundle: Resource, path: Path) -> Scenario:
    title = path.stem.replace("-", " ").replace("_", " ").strip().capitalize() or "Plain bundle"
    return Scenario(path=path, title=title, hook="order-select", bundle=bundle, inferred=True)


def _expectation(raw: Mapping[str, Any]) -> Expectation:
    return Expectation(
        cards=tuple(
            CardExpectation(
                rule=c["rule"],
                indicator=c.get("indicator"),
                contains=tuple(c.get("contains", ())),
                criteria=dict(c.get("criteria", {})),
                suggestions=tuple(c.get("suggestions", ())),
                links=tuple(c["links"]) if "links" in c else None,
            )
            for c in raw.get("cards", ())
        ),
        absent=tuple(raw.get("absent", ())),
        only=bool(raw.get("only", False)),
    )


# ---------------------------------------------------------------- validation


@cache
def schema() -> dict[str, Any]:
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


@cache
def _validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(schema())


def iter_problems(data: Any) -> Iterator[Problem]:
    """Every problem with a scenario document, schema errors first, then consistency."""
    errors = sorted(_validator().iter_errors(data), key=lambda e: list(map(str, e.absolute_path)))
    for error in _leaves(errors):
        yield Problem(_json_path(error.absolute_path), _message(error))
    if errors or not isinstance(data, Mapping):
        return
    yield from _consistency(data)


def _leaves(errors: Iterable[jsonschema.ValidationError]) -> Iterator[jsonschema.ValidationError]:
    """Report the most specific error of each if/then/else or $ref branch."""
    for error in errors:
        if error.validator in ("if", "then", "else") and error.context:
            yield from _leaves(error.context)
        else:
            yield error


def _json_path(parts: Iterable[Any]) -> str:
    out = "$"
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def _message(error: jsonschema.ValidationError) -> str:
    where = list(error.absolute_path)
    last = where[-1] if where else None
    if error.validator == "enum":
        value = error.instance
        if error.validator_value == list(RULE_CODES):
            return f"unknown rule code {value!r} (known: {', '.join(RULE_CODES)})"
        if error.validator_value == list(CRITERION_CODES):
            return f"unknown INO2 criterion code {value!r} (known: {', '.join(CRITERION_CODES)})"
        if last == "indicator":
            return f"bad indicator {value!r}: must be one of info, warning, critical"
        if last == "hook":
            return f"unsupported hook {value!r}: must be order-select or order-sign"
        return f"{value!r} is not one of {', '.join(map(str, error.validator_value))}"
    if error.validator == "required":
        missing = [k for k in error.validator_value if k not in (error.instance or {})]
        return f"missing required {'key' if len(missing) == 1 else 'keys'} {', '.join(map(repr, missing))}"
    if error.validator == "additionalProperties":
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        known = ", ".join(sorted(error.schema.get("properties", {})))
        return f"unexpected key {', '.join(map(repr, extra))} (allowed: {known})"
    if error.validator == "pattern" and last == "now":
        return (f"bad evaluation time {error.instance!r}: use an ISO 8601 date/dateTime "
                "(2026-11-23T09:00:00Z) or a relative token (now, now-2d, today+1w)")
    if error.validator == "pattern" and isinstance(error.instance, str) and "/" in error.schema.get("pattern", ""):
        return f"bad reference {error.instance!r}: expected Type/id, e.g. MedicationRequest/draft-ino"
    return error.message


def _consistency(data: Mapping[str, Any]) -> Iterator[Problem]:
    """What the schema cannot say: one patient, the selections exist and are drafts."""
    bundle = data if "resourceType" in data else data["bundle"]
    base = "$" if bundle is data else "$.bundle"
    resources = [e.get("resource") for e in bundle.get("entry", ())]
    patients = [r for r in resources if r.get("resourceType") == "Patient"]
    if len(patients) != 1:
        yield Problem(f"{base}.entry", f"the bundle must hold exactly one Patient, found {len(patients)}")
    seen: set[str] = set()
    for i, res in enumerate(resources):
        ref = _ref(res)
        if ref in seen:
            yield Problem(f"{base}.entry[{i}].resource.id", f"duplicate resource {ref}")
        seen.add(ref)
        if res.get("resourceType") in ORDER_TYPES and res.get("status") == "draft" and "authoredOn" in res:
            authored = res["authoredOn"]
            if not isinstance(authored, str) or not (dates.is_token(authored) or _iso(authored)):
                yield Problem(f"{base}.entry[{i}].resource.authoredOn", f"bad date {authored!r}")
    drafts = {_ref(r) for r in draft_orders(resources)}
    header = data.get("scenario") or {}
    for i, sel in enumerate(header.get("selections", ())):
        if sel not in drafts:
            yield Problem(
                f"$.scenario.selections[{i}]",
                f"{sel} is not a draft order of the bundle (drafts: {', '.join(sorted(drafts)) or 'none'})",
            )
    hook = header.get("hook", "order-select")
    if not drafts:
        yield Problem(f"{base}.entry", f"{hook} needs at least one draft order (a MedicationRequest with status 'draft')")
    if "selections" in header and hook == "order-sign":
        yield Problem("$.scenario.selections", "order-sign has no selections: every draft order is being signed")
    expect = header.get("expect") or {}
    listed = [c.get("rule") for c in expect.get("cards", ())]
    for i, code in enumerate(expect.get("absent", ())):
        if code in listed:
            yield Problem(f"$.scenario.expect.absent[{i}]", f"rule {code!r} is both expected and absent")
    for i, card in enumerate(expect.get("cards", ())):
        if card.get("criteria") and card.get("rule") != "ino2-eligibility":
            yield Problem(f"$.scenario.expect.cards[{i}].criteria", "criteria are only on the ino2-eligibility card")


def _iso(text: str) -> bool:
    try:
        dates.parse_instant(text)
    except ValueError:
        return False
    return True


# ---------------------------------------------------------------- inference


def _ref(resource: Mapping[str, Any]) -> str:
    return f"{resource.get('resourceType', '')}/{resource.get('id', '')}"


def find_patient(resources: Iterable[Resource]) -> Resource | None:
    """The bundle's Patient (schema validation ensures there is exactly one)."""
    return next((r for r in resources if r.get("resourceType") == "Patient"), None)


def draft_orders(resources: Iterable[Resource]) -> list[Resource]:
    """Unsigned orders: request resources with ``status: draft``, in bundle order."""
    return [r for r in resources if r.get("resourceType") in ORDER_TYPES and r.get("status") == "draft"]


def newest(orders: Sequence[Resource]) -> list[Resource]:
    """Orders newest first by ``authoredOn`` (ISO strings compare in time order once
    resolved; orders without it count as oldest; ties keep the later one in the bundle)."""
    keyed = [(_authored(o), i, o) for i, o in enumerate(orders)]
    return [o for _, _, o in sorted(keyed, key=lambda t: (t[0], t[1]), reverse=True)]


def _authored(order: Mapping[str, Any]) -> datetime:
    value = order.get("authoredOn")
    try:
        return dates.parse_instant(value) if isinstance(value, str) else _OLDEST
    except ValueError:
        return _OLDEST


_OLDEST = datetime.min.replace(tzinfo=UTC)


def requester_of(orders: Iterable[Resource]) -> str | None:
    for order in orders:
        ref = (order.get("requester") or {}).get("reference")
        if isinstance(ref, str) and ref.startswith(("Practitioner/", "PractitionerRole/")):
            return ref
    return None


def encounter_of(orders: Sequence[Resource], selections: Sequence[str]) -> str | None:
    chosen = [o for o in orders if _ref(o) in set(selections)] or list(orders)
    for order in chosen:
        ref = (order.get("encounter") or {}).get("reference")
        if isinstance(ref, str) and ref.startswith("Encounter/"):
            return ref.removeprefix("Encounter/")
    return None
