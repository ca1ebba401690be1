"""Read the knowledge artifacts from disk, check them, and build the ``KnowledgeBase``.

Two entry points share one scan and one set of checks (``_checks.py``), so what ``validate``
reports and what startup refuses cannot drift apart (STYLE.md §9):

- ``iter_problems`` is the ``validate`` generator: yields every problem, never raises. It also
  checks the R4 JSON schema (which needs npm once, so the service does not depend on it);
- ``load_knowledge`` runs the same checks except the schema, and raises ``ArtifactInvalid``
  listing every problem, or returns the ``KnowledgeBase``. It does not re-run the two slow
  content-only checks (R4B models, FHIRPath parsing) on files that already passed them (a
  content-keyed stamp under ``.cache/``); every other check always runs.

A file is an artifact if it is a JSON object with a ``resourceType``; other JSON under the
knowledge directories (``fhir_profiles/scenario.schema.json``) is not knowledge and is skipped.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cds_service.errors import ArtifactInvalid, KnowledgeError
from cds_service.knowledge import terms
from cds_service.knowledge._base import KnowledgeBase
from cds_service.knowledge._checks import CONTENT_CHECKS, Context, Document, Problem, run_checks
from cds_service.resources import data_root

REPO_ROOT = data_root()
#: The shipped knowledge. ``$CDS_KNOWLEDGE_DIRS`` (os.pathsep-separated) replaces it at call time.
KNOWLEDGE_DIRS: tuple[Path, ...] = (REPO_ROOT / "plan_definitions", REPO_ROOT / "fhir_profiles")
VERIFIED_CODES = Path("provenance") / "verified-codes.json"
CHANGELOG = "CHANGELOG.md"
_RELEASE = re.compile(r"^## \[(?P<version>[^\]]+)\]", re.MULTILINE)

SchemaOption = bool | str | os.PathLike[str] | None


def default_dirs() -> tuple[Path, ...]:
    """``$CDS_KNOWLEDGE_DIRS`` if set, else the shipped ``KNOWLEDGE_DIRS``."""
    env = os.environ.get("CDS_KNOWLEDGE_DIRS")
    if env:
        return tuple(Path(p) for p in env.split(os.pathsep) if p)
    return KNOWLEDGE_DIRS


@dataclass
class Scan:
    """What is on disk: the artifacts, and the package files that sit next to them."""

    dirs: tuple[Path, ...]
    documents: list[Document] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    changelog: Path | None = None
    verified_codes: Path = REPO_ROOT / VERIFIED_CODES


def scan(dirs: Sequence[str | os.PathLike[str]] | None = None) -> Scan:
    """Read every ``*.json`` artifact under ``dirs`` (recursively, sorted, hidden dirs skipped)."""
    found = Scan(tuple(Path(d) for d in dirs) if dirs is not None else default_dirs())
    for base in found.dirs:
        if not base.is_dir():
            found.problems.append(Problem(str(base), "", "knowledge directory does not exist"))
            continue
        if found.changelog is None and (base / CHANGELOG).is_file():
            found.changelog = base / CHANGELOG
        for path in sorted(base.rglob("*.json")):
            rel = path.relative_to(base)
            if any(part.startswith(".") for part in rel.parts):
                continue
            _read(path, (Path(base.name) / rel).as_posix(), found)
    # A copied knowledge package may bring its own provenance/; else the repo's list applies.
    for base in found.dirs:
        if (base.parent / VERIFIED_CODES).is_file():
            found.verified_codes = base.parent / VERIFIED_CODES
            break
    return found


def _read(path: Path, file: str, found: Scan) -> None:
    try:
        data = json.loads(path.read_bytes())
    except json.JSONDecodeError as exc:
        found.problems.append(Problem(file, "", f"not valid JSON: {exc.msg} at line {exc.lineno} "
                                                f"column {exc.colno}"))
        return
    except (OSError, UnicodeDecodeError) as exc:
        found.problems.append(Problem(file, "", f"cannot read: {exc}"))
        return
    if isinstance(data, dict) and "resourceType" in data:
        found.documents.append(Document(path, file, data))


def _changelog_problems(found: Scan) -> Iterator[Problem]:
    """The newest release in CHANGELOG.md is the version every artifact (and card) carries."""
    if found.changelog is None:
        yield Problem(str(found.dirs[0]) if found.dirs else "(knowledge)", "",
                      f"no {CHANGELOG} in the knowledge directories: add a Keep-a-Changelog "
                      f"entry '## [{terms.KNOWLEDGE_VERSION}] - <date>'")
        return
    file = (Path(found.changelog.parent.name) / CHANGELOG).as_posix()
    releases = [m["version"] for m in _RELEASE.finditer(found.changelog.read_text("utf-8"))
                if m["version"].lower() != "unreleased"]
    if not releases:
        yield Problem(file, "", "no released version ('## [x.y.z] - date') in the changelog")
    elif releases[0] != terms.KNOWLEDGE_VERSION:
        yield Problem(file, "", f"newest entry is {releases[0]} but terms.KNOWLEDGE_VERSION is "
                                f"{terms.KNOWLEDGE_VERSION}: bump them together")


def _verified_codes(found: Scan) -> tuple[frozenset[tuple[str, str]], list[Problem]]:
    """``provenance/verified-codes.json``: a list of {system, code, display, source}."""
    path = found.verified_codes
    try:
        rows = json.loads(path.read_bytes())
        if isinstance(rows, dict):
            rows = rows.get("codes", [])
        pairs = frozenset((r["system"], r["code"]) for r in rows)
    except (OSError, ValueError, TypeError, KeyError) as exc:
        problem = Problem(VERIFIED_CODES.as_posix(), "",
                          f"cannot read the verified code list {path}: {exc!r}; no code can be "
                          "checked against it")
        return frozenset(), [problem]
    return pairs, []


def _schema(option: SchemaOption) -> tuple[Any, list[Problem]]:
    """The R4 schema validator; if it cannot be had, a Problem (a skipped check is no pass)."""
    if option is False or option is None:
        return None, []
    from cds_service.knowledge._schema import r4_schema

    try:
        return r4_schema(None if option is True else Path(option)), []
    except KnowledgeError as exc:
        return None, [Problem("fhir.schema.json", "", f"R4 JSON schema unavailable: {exc}")]


def _stamp(found: Scan) -> Path | None:
    """Where "exactly these files passed the CONTENT_CHECKS" is remembered between runs.

    Those checks (R4B models, FHIRPath parsing) are most of the cold-start time and a pure
    function of the artifact bytes, the check code and the library versions, so all of these go
    into the key. ``validate`` always runs every check (and writes the stamp); startup trusts it.
    """
    from importlib.metadata import PackageNotFoundError, version

    from cds_service.knowledge._schema import cache_dir

    digest = hashlib.sha256()
    try:
        for library in ("fhir.resources", "fhir-core", "pydantic-core", "fhirpathpy"):
            digest.update(f"{library}=={version(library)}\n".encode())
        for module in ("_checks.py", "_fhirpath.py"):
            digest.update((Path(__file__).parent / module).read_bytes())
    except (PackageNotFoundError, OSError):
        return None  # cannot key it reliably: always run every check
    for doc in sorted(found.documents, key=lambda d: d.file):
        digest.update(f"{doc.file}\n{json.dumps(doc.data, sort_keys=True)}\n".encode())
    return cache_dir().parent / "content-checked" / digest.hexdigest()


def scan_problems(
    found: Scan, schema: SchemaOption, *, trust_stamp: bool = False
) -> Iterator[Problem]:
    """Every problem of an already scanned package; never raises."""
    try:
        yield from found.problems
        yield from _changelog_problems(found)
        verified, problems = _verified_codes(found)
        yield from problems
        validator, problems = _schema(schema)
        yield from problems
        stamp = _stamp(found)
        trusted = trust_stamp and stamp is not None and stamp.is_file()
        skip = CONTENT_CHECKS if trusted else frozenset()
        ctx = Context(found.documents, verified=verified, schema=validator, skip=skip)
        yield from run_checks(ctx)
        if stamp is not None and not skip and not (ctx.failed & CONTENT_CHECKS):
            with contextlib.suppress(OSError):  # a read-only checkout just stays slower
                stamp.parent.mkdir(parents=True, exist_ok=True)
                stamp.touch()
    except Exception as exc:  # the generator's promise: report, never raise
        yield Problem("(knowledge)", "", f"validation crashed: {type(exc).__name__}: {exc}")


def iter_problems(
    dirs: Sequence[str | os.PathLike[str]] | None = None, *, schema: SchemaOption = True
) -> Iterator[Problem]:
    """Yield every problem of the knowledge under ``dirs``; never raises.

    ``schema``: ``True`` checks against the R4 JSON schema (fetched with npm on first use),
    a path uses that ``fhir.schema.json``, ``False``/``None`` skips it (startup only).
    """
    try:
        found = scan(dirs)
    except Exception as exc:  # e.g. a directory that cannot be listed
        yield Problem("(knowledge)", "", f"cannot read the knowledge: {type(exc).__name__}: {exc}")
        return
    yield from scan_problems(found, schema)


def load_knowledge(dirs: Sequence[str | os.PathLike[str]] | None = None) -> KnowledgeBase:
    """Load, check (all but the JSON schema) and index the knowledge; refuse it if anything is wrong."""
    found = scan(dirs)
    problems = list(scan_problems(found, schema=False, trust_stamp=True))
    if problems:
        listing = "\n".join(f"  {p}" for p in problems)
        raise ArtifactInvalid(f"the knowledge has {len(problems)} problem(s); run "
                              f"`cds-service validate` for details:\n{listing}")
    return build_knowledge(found)


def build_knowledge(found: Scan) -> KnowledgeBase:
    """Index checked artifacts by canonical url (``url``, else ``<base>/<Type>/<id>``)."""
    from cds_service.knowledge._terminology import Terminology

    resources: dict[str, dict[str, Any]] = {}
    files: dict[str, Path] = {}
    for doc in found.documents:
        data = doc.data
        url = data.get("url") or f"{terms.CANONICAL_BASE}/{data['resourceType']}/{data.get('id')}"
        resources[url], files[url] = data, doc.path
    return KnowledgeBase(
        version=terms.KNOWLEDGE_VERSION,
        resources=resources,
        files=files,
        terminology=Terminology.from_resources(resources.values()),
    )
