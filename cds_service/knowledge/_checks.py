"""The checks ``validate`` runs, one small generator each, dispatched from two plain tables.

Like python-jsonschema's keyword functions: every check has one signature, *yields* a
``Problem`` per thing wrong (located by file and element path) and never raises, so one run
reports everything. ``RESOURCE_CHECKS`` run once per artifact, ``PACKAGE_CHECKS`` once per
knowledge package (what no single file can know: duplicate URLs). The loader adds the checks of
the files around the artifacts (CHANGELOG.md, the verified code list, the JSON schema itself).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cds_service.knowledge import terms
from cds_service.knowledge._base import split_canonical
from cds_service.knowledge._fhirpath import expression_errors

#: Resource types that are knowledge artifacts and must carry CRMI shareable metadata.
KNOWLEDGE_TYPES = frozenset({"PlanDefinition", "ActivityDefinition", "ValueSet", "CodeSystem",
                             "Questionnaire", "StructureDefinition", "Library"})
CRMI_ELEMENTS = ("url", "version", "name", "title", "status", "experimental", "date",
                 "publisher", "description")
_OURS = f"{terms.CANONICAL_BASE}/"
#: Code systems whose codes need no entry in the verified list: ours (checked against our
#: CodeSystems instead), HL7-defined FHIR/THO vocabularies, UCUM and URN-named standards.
_UNVERIFIED_OK = (_OURS, "http://terminology.hl7.org/", "http://hl7.org/fhir/", terms.UCUM, "urn:")

PathParts = Sequence[str | int]


def element_path(parts: PathParts) -> str:
    """``("action", 0, "condition", 1)`` -> ``action[0].condition[1]``."""
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the knowledge: which file, which element, what (and what to do)."""

    file: str
    element: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.element}: {self.message}" if self.element else (
            f"{self.file}: {self.message}")


@dataclass(frozen=True)
class Document:
    """One artifact file: where it is, how to name it in messages, its parsed JSON."""

    path: Path
    file: str
    data: dict[str, Any]

    def problem(self, parts: PathParts | str, message: str) -> Problem:
        where = parts if isinstance(parts, str) else element_path(parts)
        return Problem(self.file, where, message)


@dataclass
class Context:
    """Everything the checks need to know about the whole package."""

    documents: list[Document]
    version: str = terms.KNOWLEDGE_VERSION
    verified: frozenset[tuple[str, str]] = frozenset()
    schema: Any = None  # an R4Schema, or None when the schema check is off / unavailable
    #: CONTENT_CHECKS these exact files are known to pass (the loader's stamp): not re-run.
    skip: frozenset[str] = frozenset()
    #: names of the checks that found a problem in this run
    failed: set[str] = field(default_factory=set)
    by_url: dict[str, list[Document]] = field(default_factory=dict)
    codes: dict[str, frozenset[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for doc in self.documents:
            url = doc.data.get("url")
            if isinstance(url, str):
                self.by_url.setdefault(url, []).append(doc)
            if doc.data.get("resourceType") == "CodeSystem" and isinstance(url, str):
                self.codes[url] = frozenset(_concept_codes(doc.data.get("concept") or []))


def _concept_codes(concepts: list[Any]) -> Iterator[str]:
    for concept in concepts:
        if isinstance(concept, dict):
            if isinstance(concept.get("code"), str):
                yield concept["code"]
            yield from _concept_codes(concept.get("concept") or [])


def walk(node: Any, parts: tuple[str | int, ...] = ()) -> Iterator[tuple[tuple[str | int, ...], Any]]:
    """Every value in a JSON tree with its path, parents before children."""
    yield parts, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from walk(value, (*parts, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from walk(value, (*parts, index))


# --- per-artifact checks ------------------------------------------------------------------


def check_file_name(ctx: Context, doc: Document) -> Iterator[Problem]:
    """Files are named ``<resourceType>-<id>.json`` (architecture §1), so a reviewer finds them."""
    rtype, rid = doc.data.get("resourceType"), doc.data.get("id")
    if not isinstance(rid, str) or not rid:
        yield doc.problem("id", "artifact has no id")
    elif doc.path.name != f"{rtype}-{rid}.json":
        yield doc.problem("id", f"file name {doc.path.name!r} does not match resourceType and "
                                f"id: rename it to {rtype}-{rid}.json")


def check_r4b_model(ctx: Context, doc: Document) -> Iterator[Problem]:
    """Validate with the ``fhir.resources.R4B`` pydantic models (fhir-knowledge.md §4.3)."""
    import pydantic  # imported here: ~1 s of model classes, needed only when models are checked
    from fhir.resources.R4B import get_fhir_model_class
    from fhir.resources.R4B.resource import Resource

    rtype = doc.data.get("resourceType")
    try:
        model = get_fhir_model_class(str(rtype))
    except (ValueError, KeyError):
        model = None
    if model is None or not issubclass(model, Resource):
        yield doc.problem("resourceType", f"{rtype!r} is not a FHIR resource type")
        return
    try:
        model.model_validate(doc.data)
    except pydantic.ValidationError as exc:
        for error in exc.errors():
            got = error.get("input")
            shown = f" (got {got!r:.80})" if not isinstance(got, (dict, list)) else ""
            yield doc.problem(error["loc"], f"R4B model: {error['msg']}{shown}")


def check_r4_schema(ctx: Context, doc: Document) -> Iterator[Problem]:
    """Validate with the HL7 R4 JSON schema, the check independent of our model library."""
    if ctx.schema is None:
        return
    seen: set[tuple[str, str]] = set()
    for error in ctx.schema.iter_errors(doc.data):
        for err in _specific(error, doc.data):
            parts = list(err.absolute_path)
            if err.validator == "additionalProperties" and isinstance(err.instance, dict):
                known = err.schema.get("properties", {})
                parts += sorted(k for k in err.instance if k not in known)[:1]
            where = element_path(parts)
            if (where, err.message) not in seen:
                seen.add((where, err.message))
                yield doc.problem(where, f"R4 JSON schema: {err.message:.300}")


def _specific(error: Any, data: dict[str, Any]) -> Iterator[Any]:
    """For a ``contained`` resource (root oneOf over every type) report its own type's errors."""
    instance = error.instance
    if error.validator != "oneOf" or not error.context or not isinstance(instance, dict):
        yield error
        return
    target = f"#/definitions/{instance.get('resourceType')}"
    options = error.schema.get("oneOf", [])
    own = [e for e in error.context
           if e.schema_path and options[e.schema_path[0]].get("$ref") == target]
    yield from own or [error]


def check_crmi_metadata(ctx: Context, doc: Document) -> Iterator[Problem]:
    """CRMI shareable metadata, canonical ``https://sact-cds.org/fhir/<Type>/<id>`` (§1)."""
    rtype = doc.data.get("resourceType")
    if rtype not in KNOWLEDGE_TYPES:
        return
    for name in CRMI_ELEMENTS:
        if doc.data.get(name) in (None, ""):
            yield doc.problem(name, f"missing CRMI shareable metadata element {name!r}")
    expected = f"{terms.CANONICAL_BASE}/{rtype}/{doc.data.get('id')}"
    url = doc.data.get("url")
    if url is not None and url != expected:
        yield doc.problem("url", f"canonical url {url!r} should be {expected!r}")


def check_version(ctx: Context, doc: Document) -> Iterator[Problem]:
    """One version for the whole package, the one in plan_definitions/CHANGELOG.md (§15)."""
    version = doc.data.get("version")
    if version is not None and version != ctx.version:
        yield doc.problem("version", f"version {version!r} is not the knowledge version "
                                     f"{ctx.version!r} (terms.KNOWLEDGE_VERSION, CHANGELOG.md)")


def check_canonicals(ctx: Context, doc: Document) -> Iterator[Problem]:
    """Every ``https://sact-cds.org/fhir/...`` string resolves; a pinned ``|version`` matches.

    One problem per distinct broken reference per file (at its first use), not one per use.
    """
    broken: dict[str, tuple[tuple[str | int, ...], str, int]] = {}
    for parts, value in walk(doc.data):
        if not isinstance(value, str) or not value.startswith(_OURS):
            continue
        if value in broken:
            first, message, count = broken[value]
            broken[value] = (first, message, count + 1)
            continue
        url, version = split_canonical(value)
        url, version = url.partition("#")[0], version and version.partition("#")[0]
        targets = ctx.by_url.get(url)
        if not targets:
            broken[value] = (parts, f"{value!r} does not resolve to any artifact", 1)
        elif version is not None and targets[0].data.get("version") != version:
            broken[value] = (parts, f"{value!r} pins version {version!r} but {targets[0].file} "
                                    f"has {targets[0].data.get('version')!r}", 1)
    for parts, message, count in broken.values():
        more = f" (and {count - 1} more use(s) in this file)" if count > 1 else ""
        yield doc.problem(parts, message + more)


def _code_problem(ctx: Context, system: Any, code: Any) -> str | None:
    if not isinstance(system, str) or not isinstance(code, str):
        return None
    if system.startswith(_OURS):
        known = ctx.codes.get(system)
        if known is not None and code not in known:
            return f"code {code!r} is not defined in CodeSystem {system}"
        return None  # an unresolvable system is reported by check_canonicals
    if system.startswith(_UNVERIFIED_OK) or (system, code) in ctx.verified:
        return None
    return f"{system}|{code} is not in provenance/verified-codes.json"


def check_codes(ctx: Context, doc: Document) -> Iterator[Problem]:
    """ValueSet and ActivityDefinition codes are verified (§1.2); our own codes are defined."""
    data = doc.data
    if data.get("resourceType") == "ValueSet":
        compose = data.get("compose") or {}
        for part in ("include", "exclude"):
            for i, inc in enumerate(compose.get(part) or []):
                system = inc.get("system")
                if (isinstance(system, str) and not system.startswith(_UNVERIFIED_OK)
                        and not inc.get("concept") and not inc.get("filter")):
                    yield doc.problem(("compose", part, i, "system"),
                                      f"{part}s ALL of {system}; list concepts or a filter")
                for j, concept in enumerate(inc.get("concept") or []):
                    if msg := _code_problem(ctx, system, concept.get("code")):
                        yield doc.problem(("compose", part, i, "concept", j, "code"), msg)
                for j, flt in enumerate(inc.get("filter") or []):
                    if msg := _code_problem(ctx, system, flt.get("value")):
                        yield doc.problem(("compose", part, i, "filter", j, "value"), msg)
    for parts, node in walk(data):
        if not (isinstance(node, dict) and "code" in node and "system" in node):
            continue
        in_product = data.get("resourceType") == "ActivityDefinition" and parts[:1] in (
            ("productCodeableConcept",), ("code",))
        system = node.get("system")
        ours = isinstance(system, str) and system.startswith(_OURS)
        if (in_product or ours) and (msg := _code_problem(ctx, system, node.get("code"))):
            yield doc.problem((*parts, "code"), msg)


def check_expressions(ctx: Context, doc: Document) -> Iterator[Problem]:
    """Every ``text/fhirpath`` Expression compiles and does not read the clock (STYLE §6, §7)."""
    for parts, node in walk(doc.data):
        if (isinstance(node, dict) and node.get("language") == "text/fhirpath"
                and isinstance(node.get("expression"), str)):
            for message in expression_errors(node["expression"]):
                yield doc.problem((*parts, "expression"), message)


#: Checks whose outcome depends only on the file's content and library versions, and that cost
#: most of a cold start (R4B model classes ~1 s, ANTLR parsing ~10 ms per expression). The
#: loader remembers that exact files passed them, so a warm start does not pay again.
CONTENT_CHECKS = frozenset({"r4b-model", "fhirpath"})

ResourceCheck = Callable[[Context, Document], Iterator[Problem]]
RESOURCE_CHECKS: dict[str, ResourceCheck] = {
    "file-name": check_file_name,
    "r4b-model": check_r4b_model,
    "r4-schema": check_r4_schema,
    "crmi-metadata": check_crmi_metadata,
    "version": check_version,
    "canonicals": check_canonicals,
    "codes": check_codes,
    "fhirpath": check_expressions,
}


# --- package checks -----------------------------------------------------------------------


def check_duplicate_urls(ctx: Context) -> Iterator[Problem]:
    """A canonical url names exactly one artifact."""
    for url, docs in ctx.by_url.items():
        for doc in docs[1:]:
            yield doc.problem("url", f"duplicate canonical url {url} (also in {docs[0].file})")


PackageCheck = Callable[[Context], Iterator[Problem]]
PACKAGE_CHECKS: dict[str, PackageCheck] = {
    "duplicate-urls": check_duplicate_urls,
}


def run_checks(ctx: Context) -> Iterator[Problem]:
    """Run every check; a check that crashes becomes a Problem too (validators never raise)."""
    for name, package_check in PACKAGE_CHECKS.items():
        yield from _guard(name, "(package)", package_check, ctx)
    for doc in ctx.documents:
        for name, check in RESOURCE_CHECKS.items():
            if name in ctx.skip:
                continue
            for problem in _guard(name, doc.file, check, ctx, doc):
                ctx.failed.add(name)
                yield problem


def _guard(name: str, file: str, check: Callable[..., Iterator[Problem]], *args: Any) -> Iterator[Problem]:
    try:
        yield from check(*args)
    except Exception as exc:  # a bug in a check must not hide the other problems
        yield Problem(file, "", f"check {name!r} crashed: {type(exc).__name__}: {exc}")
