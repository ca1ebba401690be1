"""Terminology: ValueSet membership for codes and, where a ValueSet allows it, names.

Everything is compiled once in :meth:`Terminology.from_resources`, because membership is
asked thousands of times per hook request: codes become a set lookup, ATC groups a
``str.startswith`` on a tuple, and each ValueSet's names one precompiled word matcher.

What a ValueSet means here (docs/architecture.md §1.2, FHIR R4 ValueSet.compose):

- ``compose.include`` with ``concept`` codes, with ``filter`` (``is-a``/``descendent-of``/``=``/
  ``in`` on property ``concept`` or ``code``; ATC is hierarchical by prefix, our own
  CodeSystems by their concept nesting), with only a ``system`` (the whole code system), or
  with ``valueSet`` (each nested set is compiled too; several in one include intersect, as in
  FHIR; cycles are cut, which gives the right answer for unions).
- ``compose.exclude`` removes codes; an excluded code on a concept also vetoes a name match
  on that concept (the coder said what it is, e.g. ketoconazole coded D01AC08 is topical).
- extension ``valueset-match-text``: case-insensitive whole-word names, matched against
  ``CodeableConcept.text``, ``coding.display`` and a medication's resolved ``Medication.code``
  and ingredients.
- extension ``valueset-exclude-route-text``: a medication resource whose every dosage route,
  or whose ``Medication.form``, reads as one of these words is not a member.

Besides membership it answers one more question of our own CodeSystems: the short form
a card shows for a concept, a ``designation`` whose ``use`` is a code of CodeSystem
``designation-use`` (:meth:`Terminology.designation`), so card words are knowledge too.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cds_service.errors import ArtifactInvalid, UnknownArtifact
from cds_service.knowledge.terms import ATC, DESIGNATION_USE_SYSTEM, EXT_EXCLUDE_ROUTE_TEXT, EXT_MATCH_TEXT, ICD10CM

if TYPE_CHECKING:
    from cds_service.record._model import PatientRecord

Code = tuple[str, str]  # (system, code)
#: Systems whose codes are compared case-insensitively (upper-cased on both sides).
_UPPER_CASE_SYSTEMS = frozenset({ATC, ICD10CM})
#: Systems whose is-a is "the code starts with the group code".
_PREFIX_HIERARCHY_SYSTEMS = frozenset({ATC})
_NO_ROUTES: tuple[tuple[str, ...], ...] = ()
_ATC_CHARACTERS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _system(system: Any) -> str:
    return system.strip().rstrip("/") if isinstance(system, str) else ""


def _code(system: str, code: Any) -> str:
    if not isinstance(code, str):
        return ""
    code = code.strip()
    return code.upper() if system in _UPPER_CASE_SYSTEMS else code


_WORD = re.compile(r"\w+")


@dataclass(frozen=True, slots=True)
class _Words:
    """Case-insensitive whole-word search for a fixed list of terms.

    Equivalent to ``\\b(?:term|...)\\b`` but about four times faster on the hot path: the
    text is split into words once, single-word terms are a set intersection, and a regex
    runs only for multi-word terms whose first word occurs in the text.
    """

    terms: tuple[str, ...]
    single: frozenset[str]
    phrases: Mapping[str, re.Pattern[str]]

    @classmethod
    def compile(cls, terms: Iterable[str]) -> _Words | None:
        unique = tuple(dict.fromkeys(t.strip() for t in terms if t and t.strip()))
        if not unique:
            return None
        single: set[str] = set()
        grouped: dict[str, list[str]] = {}
        for term in unique:
            words = _WORD.findall(term.casefold())
            if len(words) == 1 and words[0] == term.casefold():
                single.add(words[0])
            elif words:
                grouped.setdefault(words[0], []).append(term)
        phrases = {
            first: re.compile(
                r"\b(?:" + "|".join(re.escape(t) for t in sorted(group, key=len, reverse=True)) + r")\b",
                re.IGNORECASE,
            )
            for first, group in grouped.items()
        }
        return cls(unique, frozenset(single), phrases)

    def search(self, text: str) -> bool:
        if not text:
            return False
        words = set(_WORD.findall(text.casefold()))
        if not self.single.isdisjoint(words):
            return True
        return any(
            self.phrases[first].search(text) is not None for first in words & self.phrases.keys()
        )


# --------------------------------------------------------------------------- compiled sets


@dataclass(frozen=True, slots=True)
class _CodeSet:
    """Codes by enumeration, by prefix group and by whole system."""

    codes: frozenset[Code] = frozenset()
    prefixes: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    systems: frozenset[str] = frozenset()

    def __contains__(self, item: Code) -> bool:
        system, code = item
        if item in self.codes or system in self.systems:
            return True
        groups = self.prefixes.get(system)
        return bool(groups) and code.startswith(groups)

    def __bool__(self) -> bool:
        return bool(self.codes or self.prefixes or self.systems)

    def union(self, other: _CodeSet) -> _CodeSet:
        prefixes = {s: tuple(p) for s, p in self.prefixes.items()}
        for system, groups in other.prefixes.items():
            prefixes[system] = tuple(sorted({*prefixes.get(system, ()), *groups}))
        return _CodeSet(self.codes | other.codes, prefixes, self.systems | other.systems)


@dataclass(frozen=True, slots=True)
class _Matcher:
    """One compiled ValueSet (or the intersecting part of an include)."""

    url: str
    include: _CodeSet = _CodeSet()
    exclude: _CodeSet = _CodeSet()
    names: tuple[str, ...] = ()
    name_pattern: _Words | None = None
    route_pattern: _Words | None = None
    nested: tuple[_Matcher, ...] = ()  # unions that could not be flattened
    intersections: tuple[tuple[_Matcher, ...], ...] = ()  # each: all parts must match
    excluded_sets: tuple[_Matcher, ...] = ()  # compose.exclude.valueSet

    def member(
        self,
        codings: Sequence[Code],
        text: str,
        routes: Sequence[tuple[str, ...]] = _NO_ROUTES,
        form: str = "",
    ) -> bool:
        """Is a concept (its codings and joined texts) in this set, honouring routes?"""
        if self.route_pattern is not None and self._route_excluded(routes, form):
            return False
        kept = [c for c in codings if not self._excluded(c)]
        if len(kept) != len(codings):
            text = ""  # an explicitly excluded code vetoes the name match
        if any(c in self.include for c in kept):
            return True
        if text and self.name_pattern is not None and self.name_pattern.search(text):
            return True
        return any(m.member(kept, text, routes, form) for m in self.nested) or any(
            all(part.member(kept, text, routes, form) for part in parts)
            for parts in self.intersections
        )

    def _excluded(self, coding: Code) -> bool:
        if coding in self.exclude:
            return True
        return any(m.member((coding,), "") for m in self.excluded_sets)

    def _route_excluded(self, routes: Sequence[tuple[str, ...]], form: str) -> bool:
        assert self.route_pattern is not None
        if self.route_pattern.search(form):
            return True
        return bool(routes) and all(
            any(self.route_pattern.search(t) for t in route) for route in routes
        )

    def enumerated(self) -> Iterator[Code]:
        """Every enumerated code (groups and whole systems cannot be listed)."""
        seen = {c for c in self.include.codes if not self._excluded(c)}
        for m in self.nested:
            seen.update(c for c in m.enumerated() if not self._excluded(c))
        for first, *rest in self.intersections:
            seen.update(
                c
                for c in first.enumerated()
                if not self._excluded(c) and all(p.member((c,), "") for p in rest)
            )
        return iter(sorted(seen))

    def all_names(self) -> tuple[str, ...]:
        names = list(self.names)
        for m in (*self.nested, *(p for parts in self.intersections for p in parts)):
            names.extend(n for n in m.all_names() if n not in names)
        return tuple(names)


# --------------------------------------------------------------------------- compiling


class _Compiler:
    """Turns ValueSet dicts into :class:`_Matcher` s; raises on what it cannot evaluate."""

    def __init__(self, valuesets: Mapping[str, dict], codesystems: Mapping[str, dict]) -> None:
        self.valuesets = valuesets
        self.codesystems = codesystems

    def compile(self, url: str, stack: tuple[str, ...] = ()) -> _Matcher:
        vs = self.valuesets[url]
        compose = vs.get("compose") or {}
        extensions = vs.get("extension") or []
        names = tuple(e["valueString"] for e in extensions if e.get("url") == EXT_MATCH_TEXT)
        routes = [e["valueString"] for e in extensions if e.get("url") == EXT_EXCLUDE_ROUTE_TEXT]
        stack = (*stack, url)

        include = _CodeSet()
        all_names = list(names)
        nested: list[_Matcher] = []
        intersections: list[tuple[_Matcher, ...]] = []
        for part in compose.get("include") or []:
            parts = self._include_parts(url, part, stack)
            if parts is None:
                continue  # a cut cycle: contributes nothing new to a union
            if len(parts) > 1:
                intersections.append(tuple(parts))
                continue
            (only,) = parts
            if only.exclude or only.route_pattern or only.excluded_sets:
                nested.append(only)  # its own exclusions must stay with it
                continue
            include = include.union(only.include)
            all_names.extend(n for n in only.names if n not in all_names)
            nested.extend(only.nested)
            intersections.extend(only.intersections)

        exclude = _CodeSet()
        excluded_sets: list[_Matcher] = []
        for part in compose.get("exclude") or []:
            parts = self._include_parts(url, part, stack)
            if parts is None:
                continue
            (first, *more) = parts
            if not more and not (first.nested or first.intersections or first.exclude or first.excluded_sets):
                exclude = exclude.union(first.include)
            else:
                excluded_sets.append(_Matcher(url=url, intersections=(tuple(parts),)))

        return _Matcher(
            url=url,
            include=include,
            exclude=exclude,
            names=tuple(all_names),
            name_pattern=_Words.compile(all_names),
            route_pattern=_Words.compile(routes),
            nested=tuple(nested),
            intersections=tuple(intersections),
            excluded_sets=tuple(excluded_sets),
        )

    def _include_parts(self, url: str, part: dict, stack: tuple[str, ...]) -> list[_Matcher] | None:
        """One include/exclude entry -> the matchers that must all match (FHIR: intersection)."""
        parts: list[_Matcher] = []
        system = _system(part.get("system"))
        if system:
            parts.extend(
                _Matcher(url=url, include=codes) for codes in self._system_codes(url, system, part)
            )
        elif part.get("concept") or part.get("filter"):
            raise ArtifactInvalid("include has concepts or filters but no system", artifact=url)
        for reference in part.get("valueSet") or []:
            target = reference.partition("|")[0]
            self._check_reference(url, reference)
            if target in stack:
                return None
            parts.append(self.compile(target, stack))
        if not parts:
            raise ArtifactInvalid("include names neither a system nor a valueSet", artifact=url)
        return parts

    def _check_reference(self, url: str, reference: str) -> None:
        target, _, version = reference.partition("|")
        vs = self.valuesets.get(target)
        if vs is None or (version and vs.get("version") != version):
            raise UnknownArtifact(f"ValueSet {reference} is not loaded", artifact=url)

    def _system_codes(self, url: str, system: str, part: dict) -> list[_CodeSet]:
        """The code sets an include's system part must all match (FHIR: filters are ANDed)."""
        concepts = part.get("concept") or []
        filters = part.get("filter") or []
        if concepts and filters:
            raise ArtifactInvalid("an include cannot have both concept and filter", artifact=url)
        if concepts:
            return [_CodeSet(frozenset((system, _code(system, c.get("code"))) for c in concepts))]
        if filters:
            return [self._filter(url, system, f) for f in filters]
        own = self.codesystems.get(system)
        if own is not None:  # one of ours: enumerate it
            return [_CodeSet(frozenset((system, c) for c in _hierarchy(own)))]
        return [_CodeSet(systems=frozenset({system}))]

    def _filter(self, url: str, system: str, f: dict) -> _CodeSet:
        prop, op, value = f.get("property"), f.get("op"), f.get("value") or ""
        if prop not in ("concept", "code"):
            raise ArtifactInvalid(f"cannot evaluate filter on property {prop!r}", artifact=url)
        if op == "=":
            return _CodeSet(frozenset({(system, _code(system, value))}))
        if op == "in":
            return _CodeSet(frozenset((system, _code(system, v)) for v in value.split(",") if v.strip()))
        if op not in ("is-a", "descendent-of"):
            raise ArtifactInvalid(f"cannot evaluate filter op {op!r}", artifact=url)
        group = _code(system, value)
        if system in _PREFIX_HIERARCHY_SYSTEMS:
            if op == "is-a":
                return _CodeSet(prefixes={system: (group,)})
            # descendent-of: strictly below the group, i.e. the prefix plus at least one character
            return _CodeSet(prefixes={system: tuple(group + ch for ch in _ATC_CHARACTERS)})
        own = self.codesystems.get(system)
        if own is None:
            raise ArtifactInvalid(
                f"is-a on {system} needs its hierarchy, which is not loaded: enumerate the codes",
                artifact=url,
            )
        below = _hierarchy(own).get(group)
        if below is None:
            raise ArtifactInvalid(f"{group} is not a code of {system}", artifact=url)
        members = set(below) | ({group} if op == "is-a" else set())
        return _CodeSet(frozenset((system, c) for c in members))


def _hierarchy(codesystem: dict) -> dict[str, tuple[str, ...]]:
    """code -> all its descendants, from CodeSystem.concept nesting."""
    out: dict[str, tuple[str, ...]] = {}

    def walk(concepts: list[dict]) -> list[str]:
        seen: list[str] = []
        for concept in concepts:
            below = walk(concept.get("concept") or [])
            out[concept["code"]] = tuple(below)
            seen.extend([concept["code"], *below])
        return seen

    walk(codesystem.get("concept") or [])
    return out


# --------------------------------------------------------------------------- reading data


def _concept_parts(concept: Mapping[str, Any] | None) -> tuple[list[Code], list[str]]:
    """Codings and texts of a CodeableConcept or a Coding."""
    if not isinstance(concept, Mapping):
        return [], []
    codings = concept.get("coding")
    if not isinstance(codings, list):
        codings = [concept] if ("code" in concept or "system" in concept) else []
    codes: list[Code] = []
    texts: list[str] = []
    for coding in codings:
        if not isinstance(coding, Mapping):
            continue
        system = _system(coding.get("system"))
        code = _code(system, coding.get("code"))
        if code:
            codes.append((system, code))
        if isinstance(coding.get("display"), str):
            texts.append(coding["display"])
    if isinstance(concept.get("text"), str):
        texts.append(concept["text"])
    return codes, texts


def _as_list(value: Any) -> list:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _route_texts(resource: Mapping[str, Any]) -> tuple[tuple[str, ...], ...]:
    """The route of each dosage: request dosageInstruction[], administration dosage,
    statement dosage[] (read leniently: a single dosage or a list)."""
    dosages = _as_list(resource.get("dosageInstruction")) + _as_list(resource.get("dosage"))
    routes = []
    for dosage in dosages:
        if isinstance(dosage, Mapping) and isinstance(dosage.get("route"), Mapping):
            _, texts = _concept_parts(dosage["route"])
            if texts:
                routes.append(tuple(texts))
    return tuple(routes)


def _medication(
    resource: Mapping[str, Any], record: PatientRecord | None
) -> tuple[list[Mapping[str, Any]], list[str], str]:
    """Concepts naming the medicine, extra texts, and the dose form text."""
    if resource.get("resourceType") == "Medication":
        medication: Mapping[str, Any] | None = resource
        concepts: list[Mapping[str, Any]] = []
        texts: list[str] = []
    else:
        concepts = [c for c in [resource.get("medicationCodeableConcept")] if isinstance(c, Mapping)]
        texts = []
        medication = None
        ref = resource.get("medicationReference")
        if isinstance(ref, Mapping):
            if isinstance(ref.get("display"), str):
                texts.append(ref["display"])
            medication = _resolve(resource, ref.get("reference"), record)
    form = ""
    if isinstance(medication, Mapping):
        if isinstance(medication.get("code"), Mapping):
            concepts.append(medication["code"])
        for ingredient in _as_list(medication.get("ingredient")):
            if isinstance(ingredient, Mapping) and isinstance(ingredient.get("itemCodeableConcept"), Mapping):
                concepts.append(ingredient["itemCodeableConcept"])
        _, form_texts = _concept_parts(medication.get("form"))
        form = "\n".join(form_texts)
    return concepts, texts, form


def _resolve(
    resource: Mapping[str, Any], reference: Any, record: PatientRecord | None
) -> Mapping[str, Any] | None:
    if not isinstance(reference, str):
        return None
    if reference.startswith("#"):
        for contained in _as_list(resource.get("contained")):
            if isinstance(contained, Mapping) and contained.get("id") == reference[1:]:
                return contained
        return None
    return record.resolve(reference) if record is not None else None


def _designations(codesystems: Mapping[str, dict]) -> dict[tuple[str, str, str], str]:
    """(system, code, use) -> value of every concept designation whose ``use`` is a code of
    CodeSystem designation-use (nested concepts too; the first of a use wins)."""
    out: dict[tuple[str, str, str], str] = {}

    def walk(system: str, concepts: Iterable[Mapping[str, Any]]) -> None:
        for concept in concepts:
            for d in concept.get("designation") or ():
                use = d.get("use") or {}
                if use.get("system") == DESIGNATION_USE_SYSTEM and isinstance(d.get("value"), str):
                    out.setdefault((system, str(concept.get("code")), str(use.get("code"))), d["value"])
            walk(system, concept.get("concept") or ())

    for system, cs in codesystems.items():
        walk(system, cs.get("concept") or ())
    return out


# --------------------------------------------------------------------------- public API


class Terminology:
    """ValueSet membership, compiled once from the knowledge package's ValueSets/CodeSystems."""

    __slots__ = ("_matchers", "_versions", "_designations", "__weakref__")  # weakref: features cache per Terminology

    def __init__(
        self,
        matchers: Mapping[str, _Matcher],
        versions: Mapping[str, str | None],
        designations: Mapping[tuple[str, str, str], str] | None = None,
    ) -> None:
        self._matchers = dict(matchers)
        self._versions = dict(versions)
        self._designations = dict(designations or {})

    @classmethod
    def from_resources(cls, resources: Iterable[Mapping[str, Any]]) -> Terminology:
        """Compile every ValueSet among ``resources`` (other resource types are ignored).

        Raises :class:`ArtifactInvalid` for a compose it cannot evaluate faithfully and
        :class:`UnknownArtifact` for an included ValueSet that is not among ``resources``.
        """
        valuesets: dict[str, dict] = {}
        codesystems: dict[str, dict] = {}
        for resource in resources:
            kind = resource.get("resourceType")
            if kind == "ValueSet" and resource.get("url"):
                valuesets[resource["url"]] = dict(resource)
            elif kind == "CodeSystem" and resource.get("url"):
                codesystems[_system(resource["url"])] = dict(resource)
        compiler = _Compiler(valuesets, codesystems)
        matchers = {url: compiler.compile(url) for url in valuesets}
        return cls(matchers, {url: vs.get("version") for url, vs in valuesets.items()}, _designations(codesystems))

    def _matcher(self, valueset_url: str) -> _Matcher:
        url, _, version = valueset_url.partition("|")
        matcher = self._matchers.get(url)
        if matcher is None or (version and self._versions.get(url) != version):
            raise UnknownArtifact(f"no ValueSet {valueset_url}", artifact=valueset_url)
        return matcher

    def __contains__(self, valueset_url: object) -> bool:
        if not isinstance(valueset_url, str):
            return False
        try:
            self._matcher(valueset_url)
        except UnknownArtifact:
            return False
        return True

    def valueset_urls(self) -> list[str]:
        return sorted(self._matchers)

    def contains(self, valueset_url: str, concept: Mapping[str, Any] | None) -> bool:
        """Is a CodeableConcept or Coding (dict) in the ValueSet, by code or allowed name?"""
        matcher = self._matcher(valueset_url)
        codes, texts = _concept_parts(concept)
        return matcher.member(codes, "\n".join(texts))

    def matches_medication(
        self,
        valueset_url: str,
        resource: Mapping[str, Any] | None,
        record: PatientRecord | None = None,
    ) -> bool:
        """Does a MedicationRequest/-Administration/-Statement (or a Medication) name a medicine
        of the ValueSet? The medicine comes from ``medicationCodeableConcept`` or
        ``medicationReference`` (``#id`` contained, else resolved in ``record``); routes from the
        dosage(s), for the ValueSet's route exclusions."""
        matcher = self._matcher(valueset_url)
        if not isinstance(resource, Mapping):
            return False
        concepts, texts, form = _medication(resource, record)
        routes = _route_texts(resource)
        if not concepts and texts:
            return matcher.member((), "\n".join(texts), routes, form)
        for concept in concepts:
            codes, concept_texts = _concept_parts(concept)
            if matcher.member(codes, "\n".join([*concept_texts, *texts]), routes, form):
                return True
        return False

    def designation(self, system: str, code: str, use: str) -> str | None:
        """The designation of concept ``code`` of our CodeSystem ``system`` whose use is
        ``use`` (a code of CodeSystem designation-use), or None when it has none."""
        return self._designations.get((_system(system), code, use))

    def codes(self, valueset_url: str) -> list[Code]:
        """The enumerated (system, code) pairs, nested sets included (for prefetch filters).
        Groups (ATC is-a) and names cannot be enumerated and are not listed."""
        return list(self._matcher(valueset_url).enumerated())

    def names(self, valueset_url: str) -> tuple[str, ...]:
        """The names the ValueSet matches by (its own and those of included ValueSets)."""
        return self._matcher(valueset_url).all_names()


__all__ = ["Terminology"]
