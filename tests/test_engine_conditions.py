"""Rule conditions: compiled once and checked at load, evaluated on data they cannot harm."""

from __future__ import annotations

import copy
import json
from decimal import Decimal
from typing import Any

import fhirpathpy
import orjson
import pytest
from fixtures.engine import kit

import cds_service.engine as engine_pkg
from cds_service.engine import Engine, compile_expression
from cds_service.engine.conditions import all_true, private_copy, to_json
from cds_service.errors import ExpressionCompileError, KnowledgeError, UnknownFeature
from cds_service.features import FeatureValue

FEATURES = set(kit.FEATURES)


def compiled(expression: str) -> Any:
    return compile_expression(expression, known_features=FEATURES, artifact="PlanDefinition/T", where="condition[0]")


def select_plan(resources: dict[str, Any]) -> dict[str, Any]:
    return resources[kit.SELECT_PD]


def with_condition(expression: str) -> dict[str, Any]:
    resources = kit.fixture_resources()
    select_plan(resources)["action"][0]["condition"][0]["expression"]["expression"] = expression
    return resources


# -- checked at load ---------------------------------------------------------------------


@pytest.mark.parametrize("expression", ["%features.bsa_m2.value >", "%features.bsa_m2.value 1", "foo(", "'open"])
def test_a_syntax_error_fhirpathpy_would_swallow_is_refused_at_compile(expression: str) -> None:
    with pytest.raises(ExpressionCompileError, match="syntax error|LexerNoViableAlt"):
        compiled(expression)


def test_an_unknown_feature_stops_engine_construction_naming_artifact_and_action() -> None:
    resources = with_condition("%features.no_such_feature.status = 'met'")
    with pytest.raises(UnknownFeature) as info:
        Engine(kit.knowledge(resources), kit.registry())
    assert "no_such_feature" in str(info.value)
    assert info.value.artifact == kit.SELECT_PD and info.value.action_id == "azole"


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("%unknown.x = 1", "unknown variable"),
        ("today() > @2020-01-01", "reads the clock"),
        ("%now.toDateTime() > now()", "reads the clock"),
        ("%patient.resolve().exists()", "not available in fhirpathpy"),
        ("%features.select(status).exists()", "must be followed by a feature name"),
        ("   ", "empty"),
    ],
)
def test_expressions_that_would_fail_at_the_bedside_are_refused_at_compile(expression: str, message: str) -> None:
    with pytest.raises(ExpressionCompileError, match=message):
        compiled(expression)


def test_every_problem_of_the_rule_knowledge_is_reported_together() -> None:
    resources = kit.fixture_resources()
    actions = select_plan(resources)["action"]
    actions[0]["condition"][0]["expression"]["expression"] = "%features.nope.value"
    actions[1]["priority"] = "asap"
    actions[2]["condition"][0]["expression"]["language"] = "text/cql-identifier"
    with pytest.raises(KnowledgeError) as info:
        Engine(kit.knowledge(resources), kit.registry())
    text = str(info.value)
    assert "3 problems" in text and "nope" in text and "'asap'" in text and "text/cql-identifier" in text


def test_feature_references_are_read_from_the_parse_tree_not_from_string_literals() -> None:
    expr = compiled("%features.bsa_m2.value > 1 and '%features.fake.value' != %features.`ino_drafted`.status")
    assert expr.features == ("bsa_m2", "ino_drafted")
    assert expr.variables == {"features"}


def test_expressions_are_compiled_once_at_construction_not_per_evaluation(monkeypatch: pytest.MonkeyPatch) -> None:
    engine = Engine(kit.knowledge(), kit.registry())

    def no_compiling(*_a: Any, **_k: Any) -> None:
        raise AssertionError("compiled during evaluation")

    monkeypatch.setattr(fhirpathpy, "compile", no_compiling)
    rec = kit.record([kit.draft("d1", "inotuzumab ozogamicin")])
    assert engine.evaluate("TestOrderSelect", rec, kit.NOW).cards


# -- three-valued logic ------------------------------------------------------------------


def variables(**features: FeatureValue) -> dict[str, Any]:
    return {"features": {k: v.as_json() for k, v in features.items()}}


def test_false_and_unknown_is_false_so_a_rule_that_cannot_apply_stays_silent() -> None:
    v = variables(ino_drafted=FeatureValue("not_met", False), bsa_m2=FeatureValue.unknown("no BSA"))
    result = all_true([compiled("%features.ino_drafted.value = true"), compiled("%features.bsa_m2.value > 1")], v)
    assert result.truth is False


def test_true_and_unknown_cannot_be_told_and_names_the_empty_condition() -> None:
    v = variables(ino_drafted=FeatureValue("met", True), bsa_m2=FeatureValue.unknown("no BSA"))
    result = all_true([compiled("%features.ino_drafted.value = true"), compiled("%features.bsa_m2.value > 1")], v)
    assert result.truth is None and result.empty == ("condition[0]",)


def test_a_condition_that_returns_no_boolean_is_an_error_not_true() -> None:
    v = variables(bsa_m2=FeatureValue("met", 1.2))
    result = all_true([compiled("%features.bsa_m2.value")], v)
    assert result.truth is None
    assert result.errors and result.errors[0][1] == "ConditionError"


def test_a_failing_condition_is_reported_with_its_exception_type() -> None:
    v = variables(bsa_m2=FeatureValue("met", "tall"))
    result = all_true([compiled("%features.bsa_m2.value > 1")], v)
    assert result.truth is None and result.errors[0][0] == "condition[0]"


def test_no_conditions_means_the_rule_applies() -> None:
    assert all_true([], {}).truth is True


# -- inputs are not mutated --------------------------------------------------------------


def test_fhirpathpy_mutates_a_list_variable_so_the_engine_passes_a_private_copy() -> None:
    negate = fhirpathpy.compile("-%n", None)
    exposed = {"n": [3]}
    negate({}, exposed)
    assert exposed == {"n": [-3]}  # the hazard, in fhirpathpy 2.2.4
    ours = {"n": [3]}
    negate({}, private_copy(ours))
    assert ours == {"n": [3]}


def test_evaluation_leaves_the_record_and_the_feature_values_unchanged() -> None:
    resources = kit.fixture_resources()
    select_plan(resources)["action"][0]["condition"].append(
        {
            "kind": "applicability",
            "expression": {
                "language": "text/fhirpath",
                "expression": "%draftOrders.dosageInstruction.doseAndRate.doseQuantity.value.exists() "
                "and %patient.birthDate.exists() and %selections.count() > 0 "
                "and %draftOrders.dosageInstruction.doseAndRate.doseQuantity.value.first() ~ 200.5",
            },
        }
    )
    dosed = kit.draft(
        "d-flu",
        "fluconazole 200 mg",
        dosageInstruction=[{"doseAndRate": [{"doseQuantity": {"value": 200.5, "unit": "mg"}}]}],
    )
    value = FeatureValue("met", ["MedicationRequest/d-flu"])
    rec = kit.record([dosed, kit.draft("d-ino", "inotuzumab ozogamicin")])
    before = orjson.dumps([rec.patient, rec.draft_orders, dict(rec.resources)])
    value_before = copy.deepcopy(value.value)
    engine = Engine(kit.knowledge(resources), kit.registry(azole_drafted=lambda r, c: value))
    evaluation = engine.evaluate("TestOrderSelect", rec, kit.NOW)
    assert "azole-antifungal" in evaluation.rule_codes
    assert orjson.dumps([rec.patient, rec.draft_orders, dict(rec.resources)]) == before
    assert value.value == value_before


# -- features: only those referenced, each once -----------------------------------------


def test_only_the_features_the_service_references_are_computed_each_once() -> None:
    calls: dict[str, int] = {}

    def counting(name: str) -> Any:
        def fn(record: Any, ctx: Any) -> FeatureValue:
            calls[name] = calls.get(name, 0) + 1
            return kit.FEATURES[name](record, ctx)

        return fn

    unused = {"unused_feature": lambda r, c: pytest.fail("computed a feature no rule reads")}
    reg = kit.registry(**{n: counting(n) for n in kit.FEATURES}, **unused)
    engine = Engine(kit.knowledge(), reg)
    engine.evaluate("TestOrderSign", kit.record([kit.draft("d1", "inotuzumab ozogamicin")]), kit.NOW)
    assert calls == {"ino_drafted": 1}  # read by two rules, computed once
    calls.clear()
    engine.evaluate("TestOrderSelect", kit.record([kit.draft("d1", "inotuzumab ozogamicin")]), kit.NOW)
    assert set(calls) == set(kit.FEATURES) and set(calls.values()) == {1}


def test_now_is_an_iso_utc_string_and_policy_is_a_variable() -> None:
    resources = with_condition("%now = '2026-11-23T09:00:00Z' and %policy.azole_window_days = 56")
    engine = Engine(kit.knowledge(resources), kit.registry())
    evaluation = engine.evaluate("TestOrderSelect", kit.record([]), kit.NOW)
    assert "azole-antifungal" in evaluation.rule_codes


# -- the direct evaluator agrees with fhirpathpy ----------------------------------------

VALUES: list[Any] = [
    None, 0, 1, 1.0, 1.5, -2, "1", "abc", "ABC", "", "2026-11-20", "2026-11-20T10:00:00Z", True, False,
    [], [1], [1, 2], ["a", "b"], [None], [[1]], {"a": 1}, {"code": "x", "status": "unmet"},
    [{"code": "child", "status": "unmet"}, {"code": "mdt", "status": "met"}, {"code": "x", "status": None}],
    [{"code": 1}, {"code": "b"}], [{"status": "met", "_status": {"extension": []}}],
    {"value": 2, "unit": "mg", "system": "http://unitsofmeasure.org", "code": "mg"}, 1e-05, 2.0, 12345678901234567890,
    0.8, 0.1, [0.8, 0.5], [{"code": "d8", "mg_m2": 0.5}, {"code": "d1", "mg_m2": 0.8}],
    [{"code": "d1", "status": "met"}], {"a": {"b": 2.345}}, {"a": [{"b": 1}, {"b": 2.5}]}, {"a": {"b": None}},
    -0.0, 7,
]  # fmt: skip
EXPRESSIONS = [
    "%features.x.value = 1", "%features.x.value != 1", "%features.x.value > 1", "%features.x.value <= 1.5",
    "%features.x.value = 'abc'", "%features.x.value < 'b'", "%features.x.value = true", "%features.x.value > true",
    "%features.x.value.exists()", "%features.x.value.empty()", "%features.x.value.count() > 1",
    "%features.x.status = 'met' and %features.x.value > 1", "%features.x.status = 'met' or %features.x.value > 1",
    "(%features.x.value = 1) and false", "false or (%features.x.value = 1)", "%features.x.value.first()",
    "%features.x.value.where(status != 'met')", "%features.x.value.where(status != 'met').code",
    "%features.x.value.where(status = 'unmet').exists()", "%features.x.value.code.join(', ')",
    "'unmet: ' + %features.x.value.where(status != 'met').code.join(', ')", "%features.x.value + 'x'",
    "%features.x.value.where($this > 1)", "%features.x.value.where($this = 'a').count()",
    "%features.x.note.empty() and %features.x.status != 'unknown'", "%features.x.value > %policy.limit",
    "%features.x.value.a", "%features.x.value = {}", "{}.exists()", "true and {}", "%features.x.value",
    "%features.x.value.where(status = 'met').status = 'met'", "%features.x.value >= '2026-11-01'",
    "iif(%features.x.value > 1, 'big', 'small')", "iif(%features.x.value, 'yes')", "%features.x.value.toString()",
    "'n=' + %features.x.value.count().toString()", "%features.x.value.select(code)", "%features.x.value.select('- ' + code).join('; ')",
    "%features.x.value.iif($this.exists(), 'some', 'none')", "%features.x.value.select(status).where($this = 'met').count()",
    "%features.x.value.value.toString()", "iif(%features.x.status = 'met', {}, false)",
    "%features.x.value = 0.8", "%features.x.value.where($this = 0.8).exists()", "%features.x.value.where(mg_m2 = 0.8).code",
    "%features.x.value.toString() = '0.8'", "%features.x.value >= 0.8",
    "%features.x.value * 2", "%features.x.value / 3", "%features.x.value / 0", "%features.x.value - 1", "%features.x.value + 1",
    "(%features.x.value / 0.8 - 1).abs()", "((%features.x.value / 0.3 - 1).abs() * 100).round(2)", "%features.x.value.round(1)",
    "%features.x.value.where((mg_m2 / 0.8 - 1).abs() * 100 > 5).code", "%features.x.value.select(mg_m2 * 1.2).toString()",
    "(%features.x.value * 1).toString()", "3 / 2", "(1 / 3).toString()", "%features.x.value.count() / 2",
    "'a' - 1", "%features.x.value.abs()", "(2.5).round(0)", "(0.125).round(2).toString()",
    "%features.x.value.code | %features.x.value.status", "(%features.x.value.select('- ' + code) | 'end').join(',')",
    "%features.x.value | %features.x.value", "'a' | 'b' | 'a'",
    # flat paths, chains and _fastmath: each against fhirpathpy too
    "%features.x.value.a.b", "%features.x.value.a.b.round(1)", "%features.x.value.a.where(b > 2).b",
    "%features.x.value.a.exists() and %features.x.value.a.b > 1", "%features.x.value.code.status",
    "'<' + %features.x.value.code + '>' + 'end'", "%features.x.value + 1 - 2 + 3", "'a' + 'b' - 'c'",
    "%features.x.value.toString() + ', ' + %features.x.status", "%features.x.value - %features.x.value + 'x'",
    "%features.x.value > 0 and %features.x.value < 2 and %features.x.status = 'met'",
    "%features.x.value.empty() or %features.x.value = 1 or %features.x.value = 'abc'",
    "%features.x.value and true and %features.x.value", "false or {} or %features.x.value.exists()",
    "%features.x.value.round(10)", "%features.x.value.round(0)", "(%features.x.value * 3 / 7).round(3).toString()",
    "(%features.x.value / 2 * 2)", "%features.x.value.abs().round(2)", "(%features.x.value - 10).abs()",
    "%features.x.value.where(code = 'zzz').code.join('; ')", "%features.x.value.join(', ')",
    "%features.x.value != false", "%features.x.value < true", "%features.x.value = 7", "%features.x.value >= 2.345",
]  # fmt: skip


def _outcome(fn: Any, variables: Any) -> Any:
    try:
        return ("ok", json.dumps(to_json(fn(variables)), sort_keys=True, default=str))
    except Exception as exc:  # noqa: BLE001 - comparing failure with failure
        return ("error", type(exc).__name__)


@pytest.mark.parametrize("expression", EXPRESSIONS)
def test_the_direct_evaluator_agrees_with_fhirpathpy(expression: str) -> None:
    expr = compile_expression(expression, known_features=None)
    assert expr.fast, "expected inside the direct evaluator's subset"
    reference = fhirpathpy.compile(expression, None)
    for value in VALUES:
        v = {"features": {"x": {"status": "met", "value": value, "evidence": [], "note": None}}, "policy": {"limit": 1}}
        ours = _outcome(expr.evaluate, v)  # the direct evaluator reads the data as it is
        theirs = _outcome(lambda var: reference({}, var), private_copy(v))  # as the engine calls fhirpathpy
        if theirs[0] == "error":
            assert ours[0] == "error", f"{expression} with {value!r}: fhirpathpy fails, ours gives {ours}"
        else:
            assert ours == theirs, f"{expression} with {value!r}"


@pytest.mark.parametrize("expression", ["%draftOrders.ofType(MedicationRequest)", "%features.x.value ~ 1", "-%features.x.value"])
def test_anything_outside_the_subset_is_left_to_fhirpathpy(expression: str) -> None:
    assert not compile_expression(expression, known_features=None).fast


def test_a_top_level_and_chain_is_split_into_conditions_a_known_false_guard_ends() -> None:
    from cds_service.engine.conditions import conjuncts

    assert conjuncts("%a = 1 and (%b or %c)  and  %d.where(x and y).exists()") == [
        "%a = 1", "(%b or %c)", "%d.where(x and y).exists()"
    ]
    assert conjuncts("%a = 1 and %b or %c") == ["%a = 1 and %b or %c"]
    resources = with_condition("%features.ino_drafted.status = 'met' and %features.bilirubin_x_uln.value.foo.toInteger() > 1")
    engine = Engine(kit.knowledge(resources), kit.registry())
    # inotuzumab not drafted: the part after the guard (which would fail) is not evaluated,
    # and the unknown bilirubin does not make the rule undecided
    evaluation = engine.evaluate("TestOrderSelect", kit.record([], observations=[]), kit.NOW)
    assert "azole-antifungal" not in evaluation.rule_codes
    assert not any("`azole-antifungal`" in c.get("detail", "") for c in evaluation.cards)


def test_a_json_float_equals_the_same_decimal_literal_on_both_paths() -> None:
    # fhirpathpy alone compares binary 0.8 with decimal 0.8 exactly: false
    raw = {"features": {"x": {"status": "met", "value": 0.8}}}
    assert fhirpathpy.compile("%features.x.value = 0.8", None)({}, copy.deepcopy(raw)) == [False]
    assert fhirpathpy.compile("%features.x.value = 0.8", None)({}, private_copy(raw)) == [True]
    fast = compile_expression("%features.x.value = 0.8", known_features=None)
    slow = compile_expression("%features.x.value ~ 0.8 and %features.x.value = 0.8", known_features=None)
    assert fast.fast and not slow.fast
    assert fast.truth(raw) is True and slow.truth(raw) is True


def test_to_json_turns_fhirpath_numbers_back_into_json_numbers() -> None:
    assert to_json([Decimal("0.96"), Decimal("10"), {"a": [Decimal("1.5")]}]) == [0.96, 10, {"a": [1.5]}]


def test_the_engine_package_exports_a_sorted_public_api() -> None:
    assert engine_pkg.__all__ == sorted(engine_pkg.__all__)
    for name in ["Engine", "Evaluation", "ServiceDefinition", "apply_activity"]:
        assert name in engine_pkg.__all__ and hasattr(engine_pkg, name)


def test_the_ast_built_from_the_strict_parse_equals_fhirpathpys_own_for_every_shipped_expression() -> None:
    """The engine builds fhirpathpy's AST from the parse tree of its strict syntax check
    instead of parsing again; it must be the very AST fhirpathpy's ``parse`` gives."""
    import json as _json
    from pathlib import Path

    from fhirpathpy.parser import parse as fhirpathpy_parse

    from cds_service.engine.conditions import _parsed

    root = Path(__file__).resolve().parents[1] / "plan_definitions"
    expressions: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if node.get("language") == "text/fhirpath" and isinstance(node.get("expression"), str):
                expressions.append(node["expression"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    for path in sorted(root.rglob("*.json")):
        walk(_json.loads(path.read_text(encoding="utf-8")))
    assert len(expressions) > 50
    for expression in expressions:
        assert _parsed(expression) == fhirpathpy_parse(expression), expression
