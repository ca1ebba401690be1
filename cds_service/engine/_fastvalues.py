"""What the direct evaluator's closures (_fastpath.py) do to the data: JSON values as
FHIRPath collections, the kind of a scalar, member paths.

Everything here reads the data as it is and never changes it. Whatever is outside the
plain subset raises :class:`Fallback`, and the whole expression goes to fhirpathpy.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any


class Fallback(Exception):
    """This value is outside the plain subset: let fhirpathpy evaluate the expression."""


_SCALARS = (str, int, bool, Decimal)


def _is_object(x: Any) -> bool:
    """A JSON object (a Mapping that is not one of the scalar types)."""
    return type(x) is dict or (not isinstance(x, _SCALARS) and isinstance(x, Mapping))


#: float -> ``Decimal(str(x))``, shared by every evaluation: a feature's floats are read
#: by several expressions and ``Decimal(str(x))`` costs ~1 µs, a look-up ~0.05. Equal
#: floats have the same ``str`` except 0.0 and -0.0, which are never stored; cleared when
#: full, so it stays small whatever the traffic.
_DECIMALS: dict[float, Decimal] = {}
_DECIMALS_MAX = 4096


def _decimal(x: float) -> Decimal:
    """A JSON float as fhirpathpy sees it (``util.get_data``): ``Decimal(str(x))``."""
    d = _DECIMALS.get(x)
    if d is None:
        d = Decimal(str(x))
        if x:
            if len(_DECIMALS) >= _DECIMALS_MAX:
                _DECIMALS.clear()
            _DECIMALS[x] = d
    return d


#: The kind of a scalar by exact type: the common case without an isinstance chain.
KINDS: dict[type, str] = {bool: "bool", int: "number", Decimal: "number", str: "str"}


def kind_of(x: Any) -> str:
    """``bool``, ``number`` or ``str`` for a scalar FHIRPath compares; Fallback otherwise."""
    kind = KINDS.get(type(x))
    if kind is not None:
        return kind
    if isinstance(x, bool):
        return "bool"
    if isinstance(x, (int, Decimal)):
        return "number"
    if isinstance(x, str):
        return "str"
    raise Fallback(type(x).__name__)


def collection(value: Any) -> list[Any]:
    """A JSON value as a FHIRPath collection: null is empty, a list its items (a null or
    a list inside it: Fallback), a float ``Decimal(str(x))``, anything else itself."""
    if value is None:
        return []
    kind = type(value)
    if kind is list or kind is tuple:
        out = []
        for item in value:
            if item is None or type(item) is list or type(item) is tuple:
                raise Fallback("null or nested list")
            out.append(_decimal(item) if type(item) is float else item)
        return out
    if kind is float:
        return [_decimal(value)]
    return [value]


def single(coll: list[Any]) -> Any:
    """The one scalar of a collection, None if empty; Fallback otherwise."""
    if not coll:
        return None
    if len(coll) != 1 or _is_object(coll[0]):
        raise Fallback("not a single scalar")
    return coll[0]


def boolean(coll: list[Any]) -> bool | None:
    """The one boolean of a collection, None if empty; Fallback otherwise (what
    :func:`single` followed by a bool check gives, in one step: ``and``/``or``/``where``)."""
    if not coll:
        return None
    if len(coll) == 1:
        x = coll[0]
        if x is True or x is False:
            return x
    raise Fallback("not a single boolean")


# -- member paths -------------------------------------------------------------------------


#: A member path ``.a.b...`` as compiled: per step ``(name, "_" + name, the steps after
#: it)``, so a walk can hand what is left to :func:`walk` at any step.
Path = tuple[tuple[str, str, tuple[Any, ...]], ...]


def path_plan(names: list[str]) -> Path:
    """The :data:`Path` of member names ``a, b, ...``."""
    plan: Path = ()
    for name in reversed(names):
        plan = ((name, "_" + name, plan), *plan)
    return plan


def walk_value(value: Any, plan: Path) -> list[Any]:
    """The collection ``plan`` gives from the JSON ``value``, as :func:`walk` of
    ``collection(value)`` would give it: while each step lands on one plain object (the
    usual case: ``%features.x.value.y``) the walk reads it directly, building no list;
    anything else is handed to :func:`walk` at that step."""
    for name, extension, rest in plan:
        if type(value) is not dict:
            items = collection(value)
            return walk(_member(items, name, extension), rest) if items else items
        if extension in value:
            raise Fallback("primitive extension")
        value = value.get(name)
    kind = type(value)
    if kind is dict or kind is str or kind is int or kind is bool:  # collection(), inlined
        return [value]
    return collection(value)


def walk(items: list[Any], plan: Path) -> list[Any]:
    """Each step is :func:`_member`; an empty step ends the walk (every further step of
    an empty collection is empty)."""
    for name, extension, _rest in plan:
        if not items:
            break
        items = _member(items, name, extension)
    return items


def _member(items: list[Any], name: str, extension: str) -> list[Any]:
    """``items.name``; ``extension`` is ``"_" + name`` (a primitive extension: Fallback)."""
    out: list[Any] = []
    for item in items:
        if not _is_object(item) or extension in item:
            raise Fallback("member of a non-object or a primitive extension")
        out.extend(collection(item.get(name)))
    return out
