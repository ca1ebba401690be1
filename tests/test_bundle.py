"""`cds-service bundle`: one transaction Bundle, PUT <Type>/<id> per artifact, that the R4B models
read back without changing any resource.

"Unchanged" means: each resource, re-serialised by the R4B models
(``model_dump(mode="json", exclude_none=True)``), is the same JSON as the artifact file, compared
as canonical text (``json.dumps(sort_keys=True)``): key order is free, but ``10`` vs ``10.0`` or a
dropped/added element is a difference. A difference is listed path by path, not hidden.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from fhir.resources.R4B.bundle import Bundle

from cds_service.cli import main
from cds_service.knowledge import KnowledgeBase, load_knowledge, terms, transaction_bundle
from cds_service.knowledge._loader import KNOWLEDGE_DIRS

BASE = terms.CANONICAL_BASE


def _kb(*resources: dict[str, Any]) -> KnowledgeBase:
    return KnowledgeBase(version=terms.KNOWLEDGE_VERSION,
                         resources={r["url"]: r for r in resources})


def _resource(rtype: str, rid: str) -> dict[str, Any]:
    return {"resourceType": rtype, "id": rid, "url": f"{BASE}/{rtype}/{rid}", "status": "draft"}


@pytest.fixture(scope="module")
def shipped() -> KnowledgeBase:
    return load_knowledge()


def differences(before: Any, after: Any, path: str = "") -> list[str]:
    """Where two JSON values differ (``10`` and ``10.0`` differ: FHIR decimals keep precision)."""
    if isinstance(before, dict) and isinstance(after, dict):
        return [d for key in sorted(set(before) | set(after))
                for d in differences(before.get(key), after.get(key), f"{path}.{key}")]
    if isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
        pairs = enumerate(zip(before, after, strict=True))
        return [d for i, (b, a) in pairs for d in differences(b, a, f"{path}[{i}]")]
    if json.dumps(before) != json.dumps(after):
        return [f"{path or '.'}: {json.dumps(before)[:80]} -> {json.dumps(after)[:80]}"]
    return []


def test_the_bundle_is_a_transaction_with_one_put_per_artifact_sorted_by_type_and_id() -> None:
    kb = _kb(_resource("ValueSet", "B"), _resource("PlanDefinition", "Z"), _resource("ValueSet", "A"))
    bundle = transaction_bundle(kb)
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "transaction"
    assert [(e["request"]["method"], e["request"]["url"], e["fullUrl"]) for e in bundle["entry"]] == [
        ("PUT", "PlanDefinition/Z", f"{BASE}/PlanDefinition/Z"),
        ("PUT", "ValueSet/A", f"{BASE}/ValueSet/A"),
        ("PUT", "ValueSet/B", f"{BASE}/ValueSet/B"),
    ]


def test_the_bundle_copies_resources_so_editing_it_cannot_change_the_knowledge() -> None:
    resource = _resource("ValueSet", "A")
    bundle = transaction_bundle(_kb(resource))
    bundle["entry"][0]["resource"]["status"] = "retired"
    assert resource["status"] == "draft"


def test_the_shipped_bundle_has_a_put_for_every_artifact(shipped: KnowledgeBase) -> None:
    bundle = transaction_bundle(shipped)
    puts = {e["request"]["url"] for e in bundle["entry"] if e["request"]["method"] == "PUT"}
    expected = {f"{r['resourceType']}/{r['id']}" for r in shipped.resources.values()}
    assert puts == expected and len(bundle["entry"]) == len(shipped.resources)
    assert all(e["fullUrl"] == f"{BASE}/{e['request']['url']}" for e in bundle["entry"])


def test_the_shipped_bundle_round_trips_through_the_r4b_models_unchanged(shipped: KnowledgeBase) -> None:
    bundle = transaction_bundle(shipped)
    again = Bundle.model_validate(bundle).model_dump(mode="json", exclude_none=True)
    changed = [f"{e['request']['url']}{d}" for e, a in zip(bundle["entry"], again["entry"], strict=True)
               for d in differences(e["resource"], a["resource"])]
    assert changed == [], "R4B changed these elements:\n" + "\n".join(changed)
    assert json.dumps(again, sort_keys=True) == json.dumps(bundle, sort_keys=True)


def _decimals(path: Path) -> list[str]:
    """Decimal literals as written in a JSON file (numbers with a fraction or an exponent)."""
    found: list[str] = []

    def keep(text: str) -> float:
        found.append(text)
        return float(text)

    json.loads(path.read_text("utf-8"), parse_float=keep)
    return found


def test_decimal_literals_in_the_artifact_files_survive_json_serialisation() -> None:
    """FHIR decimals keep their precision (``1.50`` is not ``1.5``); Python floats do not.

    The loader reads numbers as floats, so the bundle would rewrite a literal like ``1.50`` or
    ``1e2``. Rather than hide that, guard the files: no such literal is shipped.
    """
    lossy = [f"{path.relative_to(base.parent)}: {text}"
             for base in KNOWLEDGE_DIRS for path in sorted(base.rglob("*.json"))
             for text in _decimals(path) if json.dumps(float(text)) != text]
    assert lossy == []


def test_bundle_writes_the_file_and_a_summary(tmp_path: Path, shipped: KnowledgeBase) -> None:
    out = tmp_path / "knowledge-bundle.json"
    result = CliRunner().invoke(main, ["bundle", "-o", str(out)])
    assert result.exit_code == 0, result.output
    written = json.loads(out.read_text("utf-8"))
    assert written == transaction_bundle(shipped)
    assert "PlanDefinition" in result.output and str(len(written["entry"])) in result.output


def test_bundle_refuses_knowledge_that_does_not_load(tmp_path: Path) -> None:
    bad = tmp_path / "plan_definitions"
    bad.mkdir()
    (bad / "ValueSet-A.json").write_text(json.dumps(dict(_resource("ValueSet", "A"), status=5)))
    result = CliRunner().invoke(main, ["bundle", "-o", str(tmp_path / "b.json"), "--knowledge", str(bad)])
    assert result.exit_code == 1
    assert "ValueSet-A.json: status: R4B model" in result.output
    assert not (tmp_path / "b.json").exists()
