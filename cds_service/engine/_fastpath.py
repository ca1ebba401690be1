"""A direct evaluator for the plain part of FHIRPath, with fhirpathpy as the judge.

fhirpathpy interprets its parse tree node by node: ``%features.x.status = 'met'`` costs
~100 µs and a ``where(...)`` a few hundred, so a rule plan of a dozen conditions would
alone exceed the engine's 2 ms budget. Rule expressions mostly navigate the small
``%features`` data, filter it and compare it with literals. For that subset this module
builds Python closures from fhirpathpy's own parse tree (~2-10 µs per expression):

- terms: ``%variable``, string literals (unescaped by fhirpathpy's own ``string_literal``),
  numbers, booleans, ``{}``,
  ``$this``, member names, parentheses;
- member navigation (``.name``, lower-case names only: no type-name paths);
- functions ``where(criteria)``, ``select(projection)``, ``exists()``, ``empty()``,
  ``count()``, ``first()``, ``join(separator)``, ``toString()``, ``iif(criterion, a[, b])``
  (only the chosen branch is evaluated, as in fhirpathpy's ``iif_macro``);
- ``=``, ``!=``, ``<``, ``<=``, ``>``, ``>=``, ``and``, ``or``; ``|`` of distinct strings
  (fhirpathpy de-duplicates by a key that depends on its internal wrapping, so any
  duplicate, or a non-string, is left to it);
- arithmetic ``+``, ``-``, ``*``, ``/``, ``abs()``, ``round(<number literal>)``, computed by
  fhirpathpy's own functions (``invocations/math.py``, ``check_number_param``) on the same
  Python types it would see (ints stay ints, floats become ``Decimal(str(x))`` as in its
  ``util.get_data``), so results agree to the last digit.

Anything else is not compiled here (``compile_fast`` returns None) and fhirpathpy runs.
At run time the closures handle only values whose FHIRPath meaning is plain: comparisons
of two single strings, two single numbers (bools excluded) or two single bools; empty
propagating as empty; member access on JSON objects without primitive extensions
(``_name``). Any other case (comparing collections, mixed types, nested lists, ``null``
inside a list, a non-string ``join``) raises :class:`Fallback`, and the whole expression
is evaluated by fhirpathpy, so the result — or the error — is fhirpathpy's own. Both sides
of ``and``/``or`` are always evaluated, as fhirpathpy does, so no error is hidden by a
short cut. tests/test_engine_conditions.py checks both agree over a matrix of
expressions and values.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

from fhirpathpy.engine import check_number_param
from fhirpathpy.engine.evaluators import number_literal, string_literal
from fhirpathpy.engine.invocations import math as fp_math

#: (variables, focus) -> collection
Closure = Callable[[Mapping[str, Any], list[Any]], list[Any]]


class Fallback(Exception):
    """This value is outside the plain subset: let fhirpathpy evaluate the expression."""


class _Unsupported(Exception):
    pass


_COMPARE = {
    "=": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


def compile_fast(tree: Mapping[str, Any]) -> Callable[[Mapping[str, Any]], list[Any]] | None:
    """``variables -> collection`` for ``tree`` (fhirpathpy's parse), or None if the
    expression is outside the subset. The root focus is empty, as fhirpathpy's is ``{}``."""
    try:
        node = tree["children"][0] if tree.get("type") is None else tree
        fn = _expr(node)
    except (_Unsupported, KeyError, IndexError, TypeError, ValueError):
        return None
    root: list[Any] = [{}]
    return lambda variables: fn(variables, root)


# -- values -------------------------------------------------------------------------------


_SCALARS = (str, int, bool, Decimal)


def _is_object(x: Any) -> bool:
    return type(x) is dict or (not isinstance(x, _SCALARS) and isinstance(x, Mapping))


def _norm(x: Any) -> Any:
    """A JSON value as fhirpathpy sees it (``util.get_data``): a float becomes
    ``Decimal(str(x))``; ints, bools, strings and objects stay as they are."""
    if type(x) is float:
        return Decimal(str(x))
    return x


def _kind(x: Any) -> str:
    if isinstance(x, bool):
        return "bool"
    if isinstance(x, (int, Decimal)):
        return "number"
    if isinstance(x, str):
        return "str"
    raise Fallback(type(x).__name__)


def _collection(value: Any) -> list[Any]:
    if value is None:
        return []
    kind = type(value)
    if kind is list or kind is tuple:
        out = []
        for item in value:
            if item is None or type(item) is list or type(item) is tuple:
                raise Fallback("null or nested list")
            out.append(Decimal(str(item)) if type(item) is float else item)
        return out
    if kind is float:
        return [Decimal(str(value))]
    return [value]


def _single(coll: list[Any]) -> Any:
    """The one scalar of a collection, None if empty; Fallback otherwise."""
    if not coll:
        return None
    if len(coll) != 1 or _is_object(coll[0]):
        raise Fallback("not a single scalar")
    return coll[0]


# -- nodes --------------------------------------------------------------------------------


def _children(node: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return list(node.get("children") or ())


def _text(node: Mapping[str, Any]) -> str:
    return (node.get("terminalNodeText") or [""])[0]


def _identifier(node: Mapping[str, Any]) -> str:
    if node.get("type") != "Identifier":
        raise _Unsupported("identifier")
    text = _text(node)
    return text[1:-1] if text.startswith("`") else text


def _expr(node: Mapping[str, Any]) -> Closure:
    kind = node.get("type")
    handler = _HANDLERS.get(kind)
    if handler is None:
        raise _Unsupported(kind)
    return handler(node)


def _term(node: Mapping[str, Any]) -> Closure:
    (term,) = _children(node)
    kind = term.get("type")
    if kind == "ParenthesizedTerm":
        return _expr(_children(term)[0])
    if kind == "LiteralTerm":
        return _literal(_children(term)[0])
    if kind == "ExternalConstantTerm":
        (const,) = _children(term)
        (ident,) = _children(const)
        name = _identifier(ident)
        return lambda v, _f: _collection(v[name]) if name in v else _missing(name)
    if kind == "InvocationTerm":
        return _invocation(_children(term)[0], None)
    raise _Unsupported(kind)


def _missing(name: str) -> list[Any]:
    raise Fallback(f"%{name} undefined")  # fhirpathpy raises its own error


def _literal(lit: Mapping[str, Any]) -> Closure:
    kind, text = lit.get("type"), _text(lit)
    if kind == "NullLiteral":
        value: list[Any] = []
    elif kind == "BooleanLiteral":
        value = [text == "true"]
    elif kind == "NumberLiteral":
        value = number_literal(None, None, lit)  # int if integral, else Decimal
    elif kind == "StringLiteral":
        value = string_literal(None, None, lit)
    else:
        raise _Unsupported(kind)
    return lambda _v, _f: list(value)


def _literal_value(node: Mapping[str, Any]) -> Any:
    """The number of a number-literal term, else None."""
    if node.get("type") == "TermExpression":
        (term,) = _children(node)
        if term.get("type") == "LiteralTerm":
            (lit,) = _children(term)
            if lit.get("type") == "NumberLiteral":
                return lit
    return None


def _invocation_expression(node: Mapping[str, Any]) -> Closure:
    target, call = _children(node)
    return _invocation(call, _expr(target))


def _invocation(call: Mapping[str, Any], target: Closure | None) -> Closure:
    """``.member`` / ``.function()`` / ``$this`` on the target (or on the focus)."""
    source: Closure = target or (lambda _v, focus: focus)
    kind = call.get("type")
    if kind == "ThisInvocation" and target is None:
        return source
    if kind == "MemberInvocation":
        name = _identifier(_children(call)[0])
        if not name[:1].islower():
            raise _Unsupported("type-name path")
        return lambda v, f: _member(source(v, f), name)
    if kind == "FunctionInvocation":
        functn = _children(call)[0]
        parts = _children(functn)
        fname = _identifier(parts[0])
        params = _children(parts[1]) if len(parts) > 1 else []
        if fname == "round":
            if len(params) != 1 or _literal_value(params[0]) is None:
                raise _Unsupported("round without a number literal")
            return _round(source, [_expr(params[0])])
        builder = _FUNCTIONS.get((fname, len(params)))
        if builder is None:
            raise _Unsupported(fname)
        return builder(source, [_expr(p) for p in params])
    raise _Unsupported(kind)


def _member(items: list[Any], name: str) -> list[Any]:
    extension = "_" + name
    out: list[Any] = []
    for item in items:
        if not _is_object(item) or extension in item:
            raise Fallback("member of a non-object or a primitive extension")
        out.extend(_collection(item.get(name)))
    return out


def _where(source: Closure, params: list[Closure]) -> Closure:
    (criteria,) = params

    def run(v: Mapping[str, Any], f: list[Any]) -> list[Any]:
        out = []
        for item in source(v, f):
            keep = _single(criteria(v, [item]))
            if keep is True:
                out.append(item)
            elif keep is not None and keep is not False:
                raise Fallback("where() criteria not boolean")
        return out

    return run


def _join(source: Closure, params: list[Closure]) -> Closure:
    (sep_fn,) = params

    def run(v: Mapping[str, Any], f: list[Any]) -> list[Any]:
        items = source(v, f)
        sep = _single(sep_fn(v, f))
        if not items or not isinstance(sep, str) or not all(isinstance(i, str) for i in items):
            raise Fallback("join of non-strings")
        return [sep.join(items)]

    return run


def _select(source: Closure, params: list[Closure]) -> Closure:
    (projection,) = params

    def run(v: Mapping[str, Any], f: list[Any]) -> list[Any]:
        out: list[Any] = []
        for item in source(v, f):
            out.extend(projection(v, [item]))
        return out

    return run


def _to_string(source: Closure, _params: list[Closure]) -> Closure:
    def run(v: Mapping[str, Any], f: list[Any]) -> list[Any]:
        items = source(v, f)
        if len(items) != 1:
            return []
        if isinstance(items[0], Mapping):
            raise Fallback("toString of an object")
        return [str(items[0])]  # fhirpathpy: str(value), so True -> 'True'

    return run


def _iif(source: Closure, params: list[Closure]) -> Closure:
    criterion, ok = params[0], params[1]
    fail = params[2] if len(params) == 3 else None

    def run(v: Mapping[str, Any], f: list[Any]) -> list[Any]:
        focus = source(v, f)
        cond = criterion(v, focus)
        if len(cond) == 1 and cond[0] == True:  # noqa: E712 - fhirpathpy util.is_true
            return ok(v, focus)
        return fail(v, focus) if fail is not None else []

    return run


_FUNCTIONS: dict[tuple[str, int], Callable[[Closure, list[Closure]], Closure]] = {
    ("where", 1): _where,
    ("select", 1): _select,
    ("toString", 0): _to_string,
    ("iif", 2): _iif,
    ("iif", 3): _iif,
    ("exists", 0): lambda s, _p: lambda v, f: [bool(s(v, f))],
    ("empty", 0): lambda s, _p: lambda v, f: [not s(v, f)],
    ("count", 0): lambda s, _p: lambda v, f: [len(s(v, f))],
    ("first", 0): lambda s, _p: lambda v, f: s(v, f)[:1],
    ("join", 1): _join,
}


def _comparison(node: Mapping[str, Any]) -> Closure:
    op = _COMPARE.get(_text(node))
    if op is None:
        raise _Unsupported(_text(node))
    left, right = (_expr(c) for c in _children(node))
    ordered = op not in (operator.eq, operator.ne)

    def run(v: Mapping[str, Any], f: list[Any]) -> list[Any]:
        a, b = _single(left(v, f)), _single(right(v, f))
        if a is None or b is None:
            return []
        kind = _kind(a)
        if kind != _kind(b):
            raise Fallback("mixed types")
        if ordered and kind == "bool":
            raise Fallback("ordered bool")
        return [op(a, b)]

    return run


def _logic(node: Mapping[str, Any]) -> Closure:
    word = _text(node)
    if word not in ("and", "or"):
        raise _Unsupported(word)
    left, right = (_expr(c) for c in _children(node))
    decisive = word == "or"  # or: any True decides; and: any False decides

    def run(v: Mapping[str, Any], f: list[Any]) -> list[Any]:
        a, b = _single(left(v, f)), _single(right(v, f))
        for x in (a, b):
            if x is not None and not isinstance(x, bool):
                raise Fallback("logic on a non-boolean")
        if a is decisive or b is decisive:
            return [decisive]
        if a is None or b is None:
            return []
        return [not decisive]

    return run


def _arraify(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _call(fn: Callable[..., Any], *args: Any) -> list[Any]:
    """fhirpathpy's own function; whatever it raises means "let fhirpathpy decide"."""
    try:
        return _arraify(fn(None, *args))
    except Exception as exc:  # noqa: BLE001 - fhirpathpy raises plain Exception
        raise Fallback(str(exc)) from exc


def _additive(node: Mapping[str, Any]) -> Closure:
    """``+``/``-``: "Any" operands, nullable (engine ``infix_invoke``, math.plus/minus)."""
    fn = {"+": fp_math.plus, "-": fp_math.minus}.get(_text(node))
    if fn is None:
        raise _Unsupported(_text(node))
    left, right = (_expr(c) for c in _children(node))

    def run(v: Mapping[str, Any], f: list[Any]) -> list[Any]:
        a, b = left(v, f), right(v, f)
        if not a or not b:
            return []
        return _call(fn, a, b)

    return run


def _multiplicative(node: Mapping[str, Any]) -> Closure:
    """``*``/``/``: "Number" operands checked one by one, then nullable (math.mul/div)."""
    fn = {"*": fp_math.mul, "/": fp_math.div}.get(_text(node))
    if fn is None:
        raise _Unsupported(_text(node))
    left, right = (_expr(c) for c in _children(node))

    def number(coll: list[Any]) -> list[Any]:
        if len(coll) > 1:
            raise Fallback("collection where a number is expected")
        if not coll:
            return []
        try:
            return [check_number_param(coll[0])]
        except Exception as exc:  # noqa: BLE001
            raise Fallback(str(exc)) from exc

    def run(v: Mapping[str, Any], f: list[Any]) -> list[Any]:
        a, b = number(left(v, f)), number(right(v, f))
        if not a or not b:
            return []
        return _call(fn, a[0], b[0])

    return run


def _abs(source: Closure, _params: list[Closure]) -> Closure:
    return lambda v, f: _call(fp_math.abs, source(v, f))


_FUNCTIONS[("abs", 0)] = _abs


def _round(source: Closure, params: list[Closure]) -> Closure:
    (precision,) = params
    digits = precision({}, [])  # a number literal (checked when compiled)
    return lambda v, f: _call(fp_math.rround, source(v, f), digits)


def _union(node: Mapping[str, Any]) -> Closure:
    if _text(node) != "|":
        raise _Unsupported(_text(node))
    left, right = (_expr(c) for c in _children(node))

    def run(v: Mapping[str, Any], f: list[Any]) -> list[Any]:
        items = left(v, f) + right(v, f)
        if not all(isinstance(i, str) for i in items) or len(set(items)) != len(items):
            raise Fallback("union needing de-duplication")
        return items

    return run


_HANDLERS: dict[str, Callable[[Mapping[str, Any]], Closure]] = {
    "TermExpression": _term,
    "InvocationExpression": _invocation_expression,
    "EqualityExpression": _comparison,
    "InequalityExpression": _comparison,
    "AndExpression": _logic,
    "OrExpression": _logic,
    "AdditiveExpression": _additive,
    "MultiplicativeExpression": _multiplicative,
    "UnionExpression": _union,
}
