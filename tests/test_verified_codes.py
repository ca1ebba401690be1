"""Every code the knowledge matches on is a verified one, and every verified code is in clinical.md.

"Never invent a code": the ValueSets may use only codes marked [V] in clinical.md §2
(copied to provenance/clinical-reference.md), listed in provenance/verified-codes.json.
Where clinical.md abbreviates a list ("L01XE01 / 06 / 08 / 14 / 24", "J02AX04-06"), the
entry's ``as_written`` is that verbatim text and the code must expand from it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
VERIFIED = json.loads((ROOT / "provenance" / "verified-codes.json").read_text("utf-8"))
REFERENCE = (ROOT / "provenance" / "clinical-reference.md").read_text("utf-8")
#: clinical.md §2 "Codes", where every verified code is listed.
CODES_SECTION = REFERENCE[REFERENCE.index("## 2. Codes"):REFERENCE.index("## 3. ")]
TERMINOLOGY = ROOT / "plan_definitions" / "terminology"
OURS = "https://sact-cds.org/fhir/"
#: Codes clinical.md marks UNVERIFIED or found only in weak sources: never to be listed.
UNVERIFIED = {"776336004", "28031", "282446", "161", "C8644", "C36312", "C128629", "C91.0"}


def _key(row: dict[str, Any]) -> tuple[str, str]:
    return row["system"], row["code"]


VERIFIED_KEYS = {_key(row) for row in VERIFIED}


def expand(as_written: str) -> set[str]:
    """The codes an abbreviated list stands for: 'A01 / 02' -> A01, A02; 'X04-06' -> X04..X06."""
    first, *rest = [t.strip().rstrip("…") for t in re.split(r"\s*/\s*|\s*\+\s*", as_written)]
    codes = {first}
    if match := re.fullmatch(r"([A-Z0-9]+?)(\d\d)-(\d\d)", first):
        stem, low, high = match.groups()
        codes = {f"{stem}{n:02d}" for n in range(int(low), int(high) + 1)}
    for token in rest:
        codes.add(token if len(token) >= len(first) else first[: len(first) - len(token)] + token)
    return codes


def test_the_verified_list_is_a_list_of_system_code_display_source() -> None:
    assert isinstance(VERIFIED, list) and VERIFIED
    for row in VERIFIED:
        assert {"system", "code", "display", "source"} <= set(row), row
        assert all(isinstance(row[k], str) and row[k] for k in ("system", "code", "display", "source"))
    assert len(VERIFIED_KEYS) == len(VERIFIED), "duplicate entries"


@pytest.mark.parametrize("row", VERIFIED, ids=lambda r: f"{r['code']} appears in clinical.md section 2")
def test_every_verified_code_appears_verbatim_in_the_clinical_reference(row: dict[str, Any]) -> None:
    written = row.get("as_written")
    if written is None:
        assert re.search(rf"(?<![\w.-]){re.escape(row['code'])}(?![\w-])", CODES_SECTION), row
    else:
        assert any(written in line for line in CODES_SECTION.splitlines()), written
        assert row["code"] in expand(written), (row["code"], written)


def test_no_unverified_code_is_listed() -> None:
    assert not {code for _, code in VERIFIED_KEYS} & UNVERIFIED


def _valueset_codes(valueset: dict[str, Any]) -> Iterator[tuple[str, str, str]]:
    compose = valueset.get("compose") or {}
    for part in ("include", "exclude"):
        for entry in compose.get(part) or []:
            system = entry.get("system")
            if not system or system.startswith(OURS):
                continue
            for concept in entry.get("concept") or []:
                yield system, concept["code"], f"{part}.concept"
            for flt in entry.get("filter") or []:
                yield system, flt["value"], f"{part}.filter"


def _codings(node: Any) -> Iterator[tuple[str, str]]:
    """Every external Coding anywhere in a resource (e.g. in a CodeSystem's properties)."""
    if isinstance(node, dict):
        system, code = node.get("system"), node.get("code")
        if isinstance(system, str) and isinstance(code, str) and not system.startswith(OURS):
            yield system, code
        for value in node.values():
            yield from _codings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _codings(value)


TERMINOLOGY_FILES = sorted(TERMINOLOGY.glob("*.json"))


@pytest.mark.parametrize("path", TERMINOLOGY_FILES, ids=lambda p: f"{p.stem} uses only verified codes")
def test_every_terminology_code_is_verified(path: Path) -> None:
    resource = json.loads(path.read_text("utf-8"))
    used = {(s, c) for s, c, _ in _valueset_codes(resource)} if resource["resourceType"] == "ValueSet" else set()
    used |= set(_codings({k: v for k, v in resource.items() if k != "compose"}))
    assert used - VERIFIED_KEYS == set()


def test_the_expansion_helper_reads_both_abbreviations() -> None:
    assert expand("L01XE01 / 06 / 08 / 14 / 24") == {"L01XE01", "L01XE06", "L01XE08", "L01XE14", "L01XE24"}
    assert expand("J02AX04-06") == {"J02AX04", "J02AX05", "J02AX06"}
    assert expand("J02AB + J02AC") == {"J02AB", "J02AC"}
