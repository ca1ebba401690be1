"""Compile FHIRPath once at load; evaluate per request on data it cannot harm.

Rule conditions and dynamicValues are ``text/fhirpath`` expressions over documented
variables (architecture.md §5.1), never over a resource:

=================  ==============================================================
``%features``      ``{name: FeatureValue.as_json()}`` of the case features the
                   plan references (only those are computed)
``%draftOrders``   every unsigned order of the session (list of resources)
``%selections``    the selected draft orders (list of resources; on order-sign
                   every draft order)
``%patient``       the Patient resource, or ``{}`` when it could not be had
``%now``           the evaluation time, ISO dateTime in UTC with ``Z``
                   (``2026-11-23T09:00:00Z``); ``today()``/``now()`` are rejected
``%policy``        ``SitePolicy.as_json()``: the site policy values in force
=================  ==============================================================

Compilation does what fhirpathpy leaves to evaluation time, so a bad expression fails at
``validate``/startup and not at the bedside (STYLE.md §6):

- **syntax**: fhirpathpy's parser swallows syntax errors (``"a >"`` and ``"a b"`` compile
  and return ``[]``), so each expression is first parsed strictly against the grammar's
  ``entireExpression`` rule with an error listener that collects every error;
- **variables**: an undefined ``%var`` raises only when evaluated; unknown ones are refused;
- **functions**: a function fhirpathpy does not implement raises only when evaluated
  ("Not implemented: resolve"); unknown ones are refused, and so are ``today()``/``now()``
  (they read a module-global clock: time is an input, STYLE.md §7);
- **features**: every ``%features.<name>`` must name a registered case feature
  (:class:`~cds_service.errors.UnknownFeature`); ``%features`` must always be followed by a
  name, since only referenced features are computed. The names are read from the parsed
  tree rather than by regex, so a string literal like ``'%features.x'`` is not a reference.

Evaluation: an expression inside the plain subset of FHIRPath runs as a direct Python
closure built from the same parse tree (_fastpath.py, ~2-10 µs, with fhirpathpy as the
judge whenever a value is outside the subset); anything else runs in fhirpathpy (~0.1-2
ms). A condition's top-level ``and`` chain is split into separate conditions
(:func:`conjuncts`), and :func:`all_true` combines them in three-valued logic where a
false that rests on an unknown case feature counts as "cannot tell".

Inputs are never mutated, and numbers mean what they say:

- fhirpathpy writes into its input in one place we found by reading 2.2.4
  (``polarity_expression`` negates ``rtn[0]`` in place: ``-%n`` with ``%n = [3]`` turns
  the caller's list into ``[-3]``);
- fhirpathpy compares a JSON float with a decimal literal exactly: with ``%v = 0.8`` read
  from JSON, ``%v = 0.8`` is *false* (binary 0.8 is not decimal 0.8) while ``%v >= 0.8``
  is true.

So fhirpathpy never sees the caller's data: a :class:`Scope` gives it a copy made once per
evaluation, on first need, with every float read as a Decimal (``json.loads`` with
``parse_float=Decimal`` over an orjson dump; ~0.1-0.2 ms for features plus a few draft
orders). The direct evaluator (_fastpath.py) only reads, so it works on the data as it
is, and most evaluations need no copy at all.
"""

from __future__ import annotations

import copy
import datetime as _dt
import functools
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

import fhirpathpy
import orjson
from antlr4 import CommonTokenStream, InputStream
from antlr4.error.ErrorListener import ErrorListener
from antlr4.tree.Tree import ParseTreeWalker
from fhirpathpy.engine.invocations import invocation_registry
from fhirpathpy.engine.nodes import FP_Type, ResourceNode
from fhirpathpy.engine.util import set_paths as _FhirpathFunction
from fhirpathpy.parser import parse as _fhirpathpy_parse
from fhirpathpy.parser.ASTPathListener import ASTPathListener
from fhirpathpy.parser.generated.FHIRPathLexer import FHIRPathLexer
from fhirpathpy.parser.generated.FHIRPathParser import FHIRPathParser

from cds_service.engine._fastpath import Fallback, compile_fast
from cds_service.errors import ExpressionCompileError, UnknownFeature

#: The variables a rule expression may use (module docstring). ``context`` and ``ucum``
#: are fhirpathpy built-ins.
VARIABLES: frozenset[str] = frozenset(
    {"features", "draftOrders", "selections", "patient", "now", "policy", "context", "ucum"}
)

#: Functions refused although fhirpathpy has them: they read the wall clock.
CLOCK_FUNCTIONS: frozenset[str] = frozenset({"today", "now", "timeOfDay"})

Truth = Literal[True, False] | None


@dataclass(frozen=True, eq=False)
class CompiledExpression:
    """One FHIRPath expression of an artifact, parsed once.

    ``features`` are the case features it reads (in order of first use); ``variables``
    the ``%`` variables. ``artifact``/``action_id``/``where`` locate it for messages.
    """

    expression: str
    features: tuple[str, ...]
    variables: frozenset[str]
    artifact: str | None
    action_id: str | None
    where: str
    _fn: Callable[..., list[Any]]
    _fast: Callable[[Mapping[str, Any]], list[Any]] | None = None

    @property
    def fast(self) -> bool:
        """Whether the expression has a direct evaluator (_fastpath.py) tried first."""
        return self._fast is not None

    def evaluate(self, variables: Scope | Mapping[str, Any]) -> list[Any]:
        """The result collection (numbers may be Decimal: see :func:`to_json`); raises
        whatever fhirpathpy raises. The direct evaluator answers when it can; fhirpathpy
        gets the scope's private copy."""
        scope = variables if isinstance(variables, Scope) else Scope(variables)
        if self._fast is not None:
            try:
                return self._fast(scope.raw)
            except Fallback:
                pass
        return self._fn({}, scope.safe)

    def truth(self, variables: Scope | Mapping[str, Any]) -> Truth:
        """Three-valued result of a condition: True, False, or None for empty.

        Raises :class:`ConditionError` for a result that is not one boolean (a condition
        that returns ``[42]`` or ``[true, false]`` is a knowledge error, not "true").
        """
        result = self.evaluate(variables)
        if not result:
            return None
        if len(result) == 1 and isinstance(result[0], bool):
            return result[0]
        raise ConditionError(f"returned {len(result)} item(s), not one boolean")


class ConditionError(ValueError):
    """A condition evaluated to something other than a single boolean or empty."""


class _CollectErrors(ErrorListener):
    def __init__(self) -> None:
        self.errors: list[str] = []

    def syntaxError(self, recognizer, offendingSymbol, line, column, msg, e):  # noqa: N802,N803
        self.errors.append(f"column {column + 1}: {msg}")


@functools.lru_cache(maxsize=1024)
def _strict_parse(expression: str) -> tuple[Any, list[str]]:
    # cached: a condition is parsed whole (conjuncts) and then checked (syntax_errors);
    # callers only read the tree and the errors
    listener = _CollectErrors()
    lexer = FHIRPathLexer(InputStream(expression))
    lexer.removeErrorListeners()
    lexer.addErrorListener(listener)
    parser = FHIRPathParser(CommonTokenStream(lexer))
    parser.removeErrorListeners()
    parser.addErrorListener(listener)
    tree = parser.entireExpression()
    return tree, listener.errors


@functools.lru_cache(maxsize=1024)
def _parsed(expression: str) -> Any:
    """fhirpathpy's AST of ``expression``, built once per process from the parse tree the
    strict check already made (fhirpathpy's own ``parse`` runs the ANTLR parser again on
    the same grammar rule: half the engine's start-up). Callers get a deep copy."""
    tree, errors = _strict_parse(expression)
    if errors:  # callers check syntax first; keep fhirpathpy's own behaviour regardless
        return _fhirpathpy_parse(expression)
    listener = ASTPathListener()
    ParseTreeWalker().walk(listener, tree.expression())
    return listener.parentStack[0]


def syntax_errors(expression: str) -> list[str]:
    """Every syntax error of ``expression`` against the FHIRPath grammar (N1)."""
    return _strict_parse(expression)[1]


def conjuncts(expression: str) -> list[str]:
    """The operands of a top-level ``and`` chain, as exact slices of the source text
    (``a and (b or c) and d`` -> ``a``, ``(b or c)``, ``d``; anything else -> itself).

    The engine treats a condition ``A and B`` exactly like two conditions ``A`` and
    ``B`` (all_true): the same Kleene AND, but a guard that is false on known data
    ("inotuzumab is not selected") ends the rule without evaluating, or being blurred
    by, what follows it.
    """
    tree, errors = _strict_parse(expression)
    if errors:
        return [expression]

    def split(ctx: Any) -> list[str]:
        if isinstance(ctx, FHIRPathParser.AndExpressionContext):
            return split(ctx.expression(0)) + split(ctx.expression(1))
        return [expression[ctx.start.start : ctx.stop.stop + 1]]

    return split(tree.expression())


def compile_expression(
    expression: str,
    *,
    known_features: Iterable[str] | None,
    artifact: str | None = None,
    action_id: str | None = None,
    where: str = "expression",
) -> CompiledExpression:
    """Check and compile one expression (see the module docstring for the checks).

    ``known_features=None`` skips the feature check (for tooling that has no registry).
    Raises ExpressionCompileError or UnknownFeature, located by artifact/action/where.
    """
    loc = {"artifact": artifact, "action_id": action_id, "expression": expression}
    if not isinstance(expression, str) or not expression.strip():
        raise ExpressionCompileError(f"{where}: empty FHIRPath expression", **loc)
    errors = syntax_errors(expression)
    if errors:
        raise ExpressionCompileError(f"{where}: FHIRPath syntax error, " + "; ".join(errors), **loc)
    tree = copy.deepcopy(_parsed(expression))
    variables, features, functions, bare_features = _scan(tree)
    unknown_vars = sorted(variables - VARIABLES)
    if unknown_vars:
        raise ExpressionCompileError(
            f"{where}: unknown variable(s) {', '.join('%' + v for v in unknown_vars)}; "
            f"use {', '.join('%' + v for v in sorted(VARIABLES - {'context', 'ucum'}))}",
            **loc,
        )
    clock = sorted(functions & CLOCK_FUNCTIONS)
    if clock:
        raise ExpressionCompileError(
            f"{where}: {', '.join(f + '()' for f in clock)} reads the clock; use %now", **loc
        )
    unknown_fns = sorted(f for f in functions if f not in invocation_registry)
    if unknown_fns:
        raise ExpressionCompileError(
            f"{where}: function(s) not available in fhirpathpy: {', '.join(unknown_fns)}", **loc
        )
    if bare_features:
        raise ExpressionCompileError(
            f"{where}: %features must be followed by a feature name (%features.<name>)", **loc
        )
    if known_features is not None:
        known = set(known_features)
        missing = [f for f in features if f not in known]
        if missing:
            raise UnknownFeature(
                f"{where}: no case feature named {', '.join(repr(m) for m in missing)}", **loc
            )
    try:
        # what fhirpathpy.compile does, on a copy of the tree parsed above instead of a
        # third parse (ANTLR parsing dominates the engine's start-up: bench/, issue 6)
        fn = _FhirpathFunction(fhirpathpy.apply_parsed_path, parsedPath=copy.deepcopy(tree), model=None, options=None)
    except Exception as exc:  # the lexer raises on e.g. an unterminated string
        raise ExpressionCompileError(f"{where}: {type(exc).__name__}: {exc}", **loc) from exc
    return CompiledExpression(
        expression=expression,
        features=features,
        variables=frozenset(variables),
        artifact=artifact,
        action_id=action_id,
        where=where,
        _fn=fn,
        _fast=compile_fast(tree),
    )


def _identifier(node: Mapping[str, Any]) -> str:
    text = (node.get("terminalNodeText") or [""])[0]
    return text[1:-1] if text.startswith("`") and text.endswith("`") else text


def _scan(tree: Mapping[str, Any]) -> tuple[set[str], tuple[str, ...], set[str], bool]:
    """Variables, ``%features.<name>`` names, function names, and whether ``%features``
    appears without a member name, read from fhirpathpy's parse tree."""
    variables: set[str] = set()
    features: list[str] = []
    functions: set[str] = set()
    feature_terms: set[int] = set()  # ids of %features TermExpressions followed by a name
    all_feature_terms: set[int] = set()

    def var_name(node: Mapping[str, Any]) -> str | None:
        if node.get("type") != "TermExpression":
            return None
        for child in node.get("children", ()):
            if child.get("type") == "ExternalConstantTerm":
                const = child["children"][0]
                ident = [c for c in const.get("children", ()) if c.get("type") == "Identifier"]
                if ident:
                    return _identifier(ident[0])
                text = (const.get("terminalNodeText") or [""])[-1]
                return text.strip("'")
        return None

    def walk(node: Mapping[str, Any]) -> None:
        kind = node.get("type")
        name = var_name(node)
        if name is not None:
            variables.add(name)
            if name == "features":
                all_feature_terms.add(id(node))
        if kind == "InvocationExpression":
            children = node.get("children", ())
            if len(children) == 2 and var_name(children[0]) == "features":
                member = children[1]
                if member.get("type") == "MemberInvocation":
                    fname = _identifier(member["children"][0])
                    if fname not in features:
                        features.append(fname)
                    feature_terms.add(id(children[0]))
        if kind == "Functn":
            ident = node.get("children", ())[0]
            functions.add(_identifier(ident))
        for child in node.get("children", ()):
            walk(child)

    walk(tree)
    return variables, tuple(features), functions, bool(all_feature_terms - feature_terms)


@dataclass(frozen=True, slots=True)
class ConditionsResult:
    """Outcome of an action's conditions: ``truth`` True/False/None (cannot tell) and,
    for None, why: ``errors`` as (where, exception type, message), ``empty`` (conditions
    that gave no result) and ``undecided`` (false only on unknown data)."""

    truth: Truth
    errors: tuple[tuple[str, str, str], ...] = ()
    empty: tuple[str, ...] = ()
    undecided: tuple[str, ...] = ()


class Scope:
    """The variables of one evaluation (module docstring).

    ``raw`` is read by the direct evaluator as it is; ``safe`` is the private copy
    fhirpathpy gets (floats as Decimal), made on first use. ``unknown`` names the case
    features that are unknown; ``cache`` holds condition outcomes by expression text, so
    a guard shared by many rules is evaluated once.
    """

    __slots__ = ("raw", "unknown", "cache", "_safe")

    def __init__(self, raw: Mapping[str, Any], unknown: Iterable[str] = ()) -> None:
        self.raw = raw
        self.unknown = frozenset(unknown)
        self.cache: dict[str, Any] = {}
        self._safe: dict[str, Any] | None = None

    @property
    def safe(self) -> dict[str, Any]:
        if self._safe is None:
            self._safe = private_copy(self.raw)
        return self._safe


def all_true(conditions: Iterable[CompiledExpression], scope: Scope | Mapping[str, Any]) -> ConditionsResult:
    """AND of the conditions in three-valued (Kleene) logic, where a condition is
    *certainly* false only if every case feature it reads is known.

    - a condition that is false and reads no ``unknown`` feature -> False: the rule
      certainly does not apply and stays silent;
    - otherwise any condition that is empty, fails, or is false but reads an ``unknown``
      feature -> None (cannot tell: the caller shows a data-unavailable card). The last
      case catches ``%features.x.status = 'met'`` or ``....exists()``, which turn "not
      known" into a plain false; so each independent guard (e.g. "inotuzumab is drafted")
      belongs in its own condition, where being false on known data silences the rule;
    - else True (no conditions -> True).

    Outcomes are cached in the scope by expression text.
    """
    scope = scope if isinstance(scope, Scope) else Scope(scope)
    cache, unknown = scope.cache, scope.unknown
    empty: list[str] = []
    undecided: list[str] = []
    errors: list[tuple[str, str, str]] = []
    for cond in conditions:
        key = cond.expression
        outcome = cache.get(key)
        if outcome is None:
            try:
                outcome = ("ok", cond.truth(scope))
            except Exception as exc:  # noqa: BLE001 - any failure must become a visible card
                outcome = ("error", type(exc).__name__, str(exc)[:200])
            cache[key] = outcome
        if outcome[0] == "ok":
            if outcome[1] is False:
                if not unknown or unknown.isdisjoint(cond.features):
                    return _FALSE
                undecided.append(cond.where)
            elif outcome[1] is None:
                empty.append(cond.where)
        else:
            errors.append((cond.where, outcome[1], outcome[2]))
    if empty or errors or undecided:
        return ConditionsResult(None, tuple(errors), tuple(empty), tuple(undecided))
    return _TRUE


#: The two outcomes without details, shared (ConditionsResult is frozen): a frozen
#: dataclass costs about a microsecond to build, and all_true runs dozens of times a hook.
_TRUE = ConditionsResult(True)
_FALSE = ConditionsResult(False)


def to_json(value: Any) -> Any:
    """A FHIRPath result as plain JSON: numbers as int when integral, else float (a float
    first read as ``Decimal(str(x))``, as fhirpathpy's output does); FHIRPath dates and
    quantities as their string form; fhirpathpy nodes as their data."""
    if isinstance(value, ResourceNode):
        value = value.data
    if isinstance(value, bool) or value is None or isinstance(value, (str, int)):
        return value
    if isinstance(value, float):
        value = Decimal(str(value))
    if isinstance(value, Decimal):
        if not value.is_finite():
            return str(value)
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, FP_Type):
        return value.toJSON()
    if isinstance(value, Mapping):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    if isinstance(value, (_dt.date, _dt.datetime)):
        return value.isoformat()
    return str(value)


def private_copy(variables: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of the variables for fhirpathpy, floats read as Decimal (module docstring).

    Values orjson cannot serialise (e.g. a Decimal a feature returned) fall back to a
    ``copy.deepcopy`` with the same float conversion.
    """
    try:
        return json.loads(orjson.dumps(variables, option=orjson.OPT_NON_STR_KEYS), parse_float=Decimal)
    except TypeError:
        return _decimal_floats(copy.deepcopy(dict(variables)))


def _decimal_floats(value: Any) -> Any:
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, dict):
        return {k: _decimal_floats(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_decimal_floats(v) for v in value]
    return value


__all__ = sorted(
    [
        "CLOCK_FUNCTIONS",
        "CompiledExpression",
        "ConditionError",
        "ConditionsResult",
        "Scope",
        "Truth",
        "VARIABLES",
        "all_true",
        "compile_expression",
        "conjuncts",
        "private_copy",
        "syntax_errors",
        "to_json",
    ]
)
