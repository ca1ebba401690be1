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
- arithmetic ``+``, ``-``, ``*``, ``/``, ``abs()``, ``round(<number literal>)``, on the
  same Python types fhirpathpy would see (ints stay ints, floats become
  ``Decimal(str(x))`` as in its ``util.get_data``): plain numbers (and ``+`` of two
  strings) by the very operation of fhirpathpy's function (_fastmath.py), anything else by
  that function itself (``invocations/math.py``, ``check_number_param``), so results
  agree to the last digit.

The closures are the per-request cost of every rule, so the common shapes are built
flat: a member path ``%features.x.value.y`` walks the JSON in one loop
(_fastvalues.walk_value), a chain ``a + b + ...`` or ``a and b and ...`` is one loop over
its operands, in fhirpathpy's order, and a comparison with a literal knows the literal's
type beforehand. What the closures do to values is in _fastvalues.py.

Anything else is not compiled here (``compile_fast`` returns None) and fhirpathpy runs.
At run time the closures handle only values whose FHIRPath meaning is plain: comparisons
of two single strings, two single numbers (bools excluded) or two single bools; empty
propagating as empty; member access on JSON objects without primitive extensions
(``_name``). Any other case (comparing collections, mixed types, nested lists, ``null``
inside a list, a ``join`` of non-strings) raises :class:`Fallback`, and the whole expression
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

from cds_service.engine import _fastmath as fastmath
from cds_service.engine._fastvalues import (
    KINDS,
    Fallback,
    boolean,
    collection,
    kind_of,
    path_plan,
    single,
    walk,
    walk_value,
)

#: (variables, focus) -> collection
Closure = Callable[[Mapping[str, Any], list[Any]], list[Any]]


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
        name = _variable_name(node)
        return lambda v, _f: collection(v[name]) if name in v else _missing(name)
    if kind == "InvocationTerm":
        return _invocation(_children(term)[0], None)
    raise _Unsupported(kind)


def _variable_name(node: Mapping[str, Any]) -> str | None:
    """``name`` of a ``%name`` term, else None."""
    if node.get("type") != "TermExpression":
        return None
    (term,) = _children(node)
    if term.get("type") != "ExternalConstantTerm":
        return None
    (const,) = _children(term)
    (ident,) = _children(const)
    return _identifier(ident)


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
    if not value:
        return lambda _v, _f: []
    (constant,) = value
    return lambda _v, _f: [constant]


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
    if call.get("type") == "MemberInvocation":  # a.b.c: one closure walks the whole path
        names = [_member_name(call)]
        while target.get("type") == "InvocationExpression":
            inner_target, inner_call = _children(target)
            if inner_call.get("type") != "MemberInvocation":
                break
            names.append(_member_name(inner_call))
            target = inner_target
        variable = _variable_name(target)
        if variable is not None:
            return _variable_path(variable, names[::-1])
        return _path(_expr(target), names[::-1])
    return _invocation(call, _expr(target))


def _member_name(call: Mapping[str, Any]) -> str:
    name = _identifier(_children(call)[0])
    if not name[:1].islower():
        raise _Unsupported("type-name path")
    return name


def _path(source: Closure | None, names: list[str]) -> Closure:
    """``source.a.b...`` (``source`` None: the focus); see :func:`walk_value`."""
    plan = path_plan(names)

    def run(v: Mapping[str, Any], f: list[Any]) -> list[Any]:
        items = f if source is None else source(v, f)
        if len(items) == 1 and type(items[0]) is dict:
            return walk_value(items[0], plan)
        return walk(items, plan)

    return run


def _variable_path(variable: str, names: list[str]) -> Closure:
    """``%variable.a.b...``: the walk starts at the variable's value."""
    plan = path_plan(names)

    def run(v: Mapping[str, Any], _f: list[Any]) -> list[Any]:
        if variable not in v:
            return _missing(variable)
        return walk_value(v[variable], plan)

    return run


def _invocation(call: Mapping[str, Any], target: Closure | None) -> Closure:
    """``.member`` / ``.function()`` / ``$this`` on the target (or on the focus)."""
    source: Closure = target or (lambda _v, focus: focus)
    kind = call.get("type")
    if kind == "ThisInvocation" and target is None:
        return source
    if kind == "MemberInvocation":
        return _path(target, [_member_name(call)])  # target None: a member of the focus
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


def _where(source: Closure, params: list[Closure]) -> Closure:
    (criteria,) = params

    def run(v: Mapping[str, Any], f: list[Any]) -> list[Any]:
        out = []
        for item in source(v, f):
            if boolean(criteria(v, [item])) is True:
                out.append(item)
        return out

    return run


def _join(source: Closure, params: list[Closure]) -> Closure:
    (sep_fn,) = params

    def run(v: Mapping[str, Any], f: list[Any]) -> list[Any]:
        items = source(v, f)
        sep = single(sep_fn(v, f))
        if not items and (sep is None or isinstance(sep, str)):
            return []  # strings.join: an empty input is empty (the separator checked first)
        if not isinstance(sep, str) or not all(isinstance(i, str) for i in items):
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
        kind = type(items[0])
        if kind is str or kind is int or kind is Decimal or kind is bool:
            return [str(items[0])]
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
    left_node, right_node = _children(node)
    left, right = _expr(left_node), _expr(right_node)
    ordered = op not in (operator.eq, operator.ne)

    def compare(a_coll: list[Any], b_coll: list[Any]) -> list[Any]:
        a, b = single(a_coll), single(b_coll)
        if a is None or b is None:
            return []
        kind = kind_of(a)
        if kind != kind_of(b):
            raise Fallback("mixed types")
        if ordered and kind == "bool":
            raise Fallback("ordered bool")
        return [op(a, b)]

    constant = _constant(right_node)
    if constant is None or (ordered and type(constant) is bool):
        return lambda v, f: compare(left(v, f), right(v, f))
    # ``x = 'met'``, ``x > 0``: the literal's kind is known when compiled, so a single
    # value of that very type is compared at once; anything else goes through compare()
    kind = KINDS[type(constant)]
    literal = [constant]

    def run(v: Mapping[str, Any], f: list[Any]) -> list[Any]:
        a = left(v, f)
        if len(a) == 1 and KINDS.get(type(a[0])) == kind:
            return [op(a[0], constant)]
        return compare(a, literal)

    return run


def _constant(node: Mapping[str, Any]) -> Any:
    """The value of a string, number or boolean literal term, else None."""
    if node.get("type") != "TermExpression":
        return None
    (term,) = _children(node)
    if term.get("type") != "LiteralTerm":
        return None
    value = _literal(_children(term)[0])({}, [])
    return value[0] if len(value) == 1 and type(value[0]) in KINDS else None


def _logic(node: Mapping[str, Any]) -> Closure:
    """``and``/``or`` in three-valued logic. A left-nested chain of the same word
    (``a and b and c``) runs as one loop, in fhirpathpy's order: ``a``, ``b``, ``a and
    b``, ``c``, ... (both sides are always evaluated, as fhirpathpy does)."""
    word = _text(node)
    if word not in ("and", "or"):
        raise _Unsupported(word)
    kind = node.get("type")
    operands: list[Closure] = []
    while node.get("type") == kind and _text(node) == word:
        left, right = _children(node)
        operands.append(_expr(right))
        node = left
    first = _expr(node)
    operands.reverse()
    decisive = word == "or"  # or: any True decides; and: any False decides

    def run(v: Mapping[str, Any], f: list[Any]) -> list[Any]:
        a = boolean(first(v, f))
        for operand in operands:
            b = boolean(operand(v, f))
            if a is decisive or b is decisive:
                a = decisive
            elif a is not None and b is not None:
                a = not decisive
            else:
                a = None
        return [] if a is None else [a]

    return run


def _arraify(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _call(fn: Callable[..., Any], *args: Any) -> list[Any]:
    """fhirpathpy's own function; whatever it raises means "let fhirpathpy decide"."""
    try:
        return _arraify(fn(None, *args))
    except Exception as exc:  # noqa: BLE001 - fhirpathpy raises plain Exception
        raise Fallback(str(exc)) from exc


#: ``+``/``-``: (fhirpathpy's function, _fastmath's).
_ADDITIVE = {"+": (fp_math.plus, fastmath.plus), "-": (fp_math.minus, fastmath.minus)}


def _additive(node: Mapping[str, Any]) -> Closure:
    """``+``/``-``: "Any" operands, nullable (engine ``infix_invoke``, math.plus/minus);
    two single plain operands are computed by _fastmath, anything else by fhirpathpy.

    A left-nested chain ``a + b - c + ...`` (a card text is dozens of ``+``) runs as one
    loop over its operands, in fhirpathpy's order: ``a``, ``b``, ``a + b``, ``c``, ...
    """
    steps: list[tuple[bool, Callable[..., Any], Callable[[Any, Any], list[Any] | None], Closure, str | None]] = []
    while node.get("type") == "AdditiveExpression":
        word = _text(node)
        if word not in _ADDITIVE:
            raise _Unsupported(word)
        left, right = _children(node)
        text = _constant(right)
        steps.append((word == "+", *_ADDITIVE[word], _expr(right), text if type(text) is str else None))
        node = left
    first = _expr(node)
    steps.reverse()

    def run(v: Mapping[str, Any], f: list[Any]) -> list[Any]:
        a = first(v, f)
        for concat, fn, native, operand, text in steps:
            if text is not None and concat and len(a) == 1 and type(a[0]) is str:
                a = [a[0] + text]  # ... + 'literal' on a single string, read at once
                continue
            b = operand(v, f)
            if not a or not b:
                a = []
                continue
            if len(a) == 1 and len(b) == 1:
                x, y = a[0], b[0]
                if concat and type(x) is str and type(y) is str:
                    a = [x + y]
                    continue
                out = native(x, y)
                if out is not None:
                    a = out
                    continue
            a = _call(fn, a, b)
        return a

    return run


def _multiplicative(node: Mapping[str, Any]) -> Closure:
    """``*``/``/``: "Number" operands checked one by one, then nullable (math.mul/div);
    two single ints or Decimals are computed by _fastmath, anything else as fhirpathpy."""
    word = _text(node)
    fn, native = {"*": (fp_math.mul, fastmath.times), "/": (fp_math.div, fastmath.divide)}.get(word, (None, None))
    if fn is None or native is None:
        raise _Unsupported(word)
    left, right = (_expr(c) for c in _children(node))
    numbers = fastmath.NUMBER_TYPES

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
        a = left(v, f)
        if len(a) != 1 or type(a[0]) not in numbers:  # else number(a) would be a itself
            a = number(a)
        b = right(v, f)
        if len(b) != 1 or type(b[0]) not in numbers:
            b = number(b)
        if not a or not b:
            return []
        out = native(a[0], b[0])
        return out if out is not None else _call(fn, a[0], b[0])

    return run


def _abs(source: Closure, _params: list[Closure]) -> Closure:
    def run(v: Mapping[str, Any], f: list[Any]) -> list[Any]:
        items = source(v, f)
        if not items:  # math.abs: is_empty -> []
            return []
        if len(items) == 1:
            out = fastmath.absolute(items[0])
            if out is not None:
                return out
        return _call(fp_math.abs, items)

    return run


_FUNCTIONS[("abs", 0)] = _abs


def _round(source: Closure, params: list[Closure]) -> Closure:
    (precision,) = params
    digits = precision({}, [])  # a number literal (checked when compiled)
    degree = fastmath.round_degree(digits[0])

    def run(v: Mapping[str, Any], f: list[Any]) -> list[Any]:
        items = source(v, f)
        if not items:  # math.rround: is_empty -> []
            return []
        if degree is not None and len(items) == 1:
            out = fastmath.rounded(items[0], degree)
            if out is not None:
                return out
        return _call(fp_math.rround, items, digits)

    return run


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
