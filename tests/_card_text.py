"""What a card must never show a clinician (issue 13 "plain words"), as one checker
shared by the corpus tests and the alert-burden scenarios."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from cds_service.features import default_registry
from cds_service.knowledge.terms import CRITERION_CODES, RULE_CODES

REPO = Path(__file__).resolve().parents[1]
#: Artifact ids (PlanDefinition, ActivityDefinition, ValueSet, ...) from the file names.
ARTIFACT_IDS = sorted(
    {p.stem.split("-", 1)[1] for d in ("plan_definitions", "fhir_profiles") for p in (REPO / d).rglob("*-*.json")}
    - {"Loratadine", "Paracetamol", "Dexamethasone"},  # ids that are also the medicine's name
    key=len, reverse=True,
)
#: Codes that are also plain English words are allowed as words.
_ENGLISH = {"child", "monotherapy", "premedication"}
_CODES = sorted((set(CRITERION_CODES) | set(RULE_CODES) | {"not-in-CR"}) - _ENGLISH, key=len, reverse=True)
#: Feature names that are not plain words (``cycle`` is a word; ``bsa_m2`` is not).
_FEATURES = sorted((n for n in default_registry().names() if "_" in n), key=len, reverse=True)

PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("a FHIR reference", re.compile(r"\b(?:MedicationRequest|MedicationOrder|Observation|Condition|Patient|"
                                    r"QuestionnaireResponse|PlanDefinition|ActivityDefinition|Procedure|"
                                    r"MedicationAdministration|MedicationStatement|ServiceRequest)/\S")),
    ("a backslash escape", re.compile(r"\\")),
    ("exception text", re.compile(r"\b[A-Z][A-Za-z]*(?:Error|Exception)\b|Traceback")),
    ("FHIRPath or a condition path", re.compile(r"%features|condition\[\d|dynamicValue|action\.(?:title|description)")),
    ("a code span", re.compile(r"`")),
    ("a feature name", re.compile(r"\b(?:" + "|".join(re.escape(f).replace("_", r"\\?_") for f in _FEATURES) + r")\b")),
    ("a code used as a label", re.compile(r"(?<![\w-])(?:" + "|".join(map(re.escape, _CODES)) + r")(?![\w-])")),
    ("an artifact id", re.compile(r"\b(?:" + "|".join(map(re.escape, ARTIFACT_IDS)) + r")\b")),
]


def texts(card: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """Every text of a card a clinician reads, with where it is."""
    yield "summary", str(card.get("summary", ""))
    yield "detail", str(card.get("detail", ""))
    yield "source.label", str((card.get("source") or {}).get("label", ""))
    for s in card.get("suggestions") or ():
        yield "suggestion", str(s.get("label", ""))
    for link in card.get("links") or ():
        yield "link", str(link.get("label", ""))
    for r in card.get("overrideReasons") or ():
        yield "override reason", str(r.get("display", ""))


def problems(card: Mapping[str, Any]) -> list[str]:
    """Each internal thing a card shows: ``"<where>: <what> '<match>'"``."""
    out = []
    for where, text in texts(card):
        for what, pattern in PATTERNS:
            for m in pattern.finditer(text):
                out.append(f"{where}: {what} {m.group(0)!r} in …{text[max(0, m.start() - 40):m.end() + 40]!r}")
    return out
