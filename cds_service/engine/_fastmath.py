"""The direct evaluator's arithmetic (_fastpath.py): fhirpathpy's own, minus the wrapping.

fhirpathpy's math functions (``invocations/math.py``) unwrap, check and convert every
operand on every call, so ``x.round(2)`` costs a few µs, and a dose check calls ``round``,
``abs``, ``+``, ``-``, ``*`` and ``/`` a few dozen times per evaluation. Once those checks
are done, each function is one Python operation on the operand values:

=============  ==========================================  ===========================
FHIRPath       fhirpathpy (math.py) on two numbers          here
=============  ==========================================  ===========================
``x + y``      ``plus``: ``x + y`` (two strings: the same)  :func:`plus`
``x - y``      ``minus``: ``x - y``                         :func:`minus`
``x * y``      ``mul``: ``x * y``                           :func:`times`
``x / y``      ``div``: ``[]`` if ``y == 0``, else ``x / y``  :func:`divide`
``x.abs()``    ``Decimal(x).copy_abs()``                    :func:`absolute`
``x.round(n)`` ``round(Decimal(x) * 10 ** Decimal(n)) /``   :func:`rounded`
               ``10 ** Decimal(n)``
=============  ==========================================  ===========================

These functions do exactly that operation, but only for operands whose type is exactly
``int`` or ``Decimal`` (the numbers fhirpathpy's checks let through unchanged: a JSON
float has already become ``Decimal(str(x))`` in _fastpath._collection, and ``bool``, an
``int`` subclass, is excluded) or, for ``+``, two ``str``. For anything else, or if the
operation raises (a Decimal infinity, say), they return None and the caller runs
fhirpathpy's own function, so the result, or the error, is fhirpathpy's. Python's
default decimal context is the one in force (nothing in the service sets another).
tests/test_engine_conditions.py compares both over a matrix of expressions and values.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from decimal import Decimal
from typing import Any

#: Operand types fhirpathpy's number checks pass through unchanged (``type(x) in``:
#: exact types, so ``bool`` is not one).
NUMBER_TYPES = frozenset({int, Decimal})

#: ``round(n)`` precisions whose ``10 ** Decimal(n)`` is exact in any decimal context of
#: at least 9 digits, so computing it once at compile time gives the very value fhirpathpy
#: computes on every call.
_ROUND_DIGITS = range(9)


def _numeric(op: Callable[[Any, Any], Any]) -> Callable[[Any, Any], list[Any] | None]:
    """``op`` of two single values as fhirpathpy's function for it, for the number types
    it passes through unchanged; None: ask fhirpathpy (any other operand, or ``op`` raised)."""

    def run(x: Any, y: Any) -> list[Any] | None:
        if type(x) in NUMBER_TYPES and type(y) in NUMBER_TYPES:
            try:
                return [op(x, y)]
            except ArithmeticError:
                return None
        return None

    return run


minus = _numeric(operator.sub)  # fhirpathpy ``minus``
times = _numeric(operator.mul)  # fhirpathpy ``mul``
_add = _numeric(operator.add)
_divide = _numeric(operator.truediv)


def plus(x: Any, y: Any) -> list[Any] | None:
    """``x + y`` as fhirpathpy's ``plus``: numbers, or two strings joined; None: ask fhirpathpy."""
    if type(x) is str and type(y) is str:
        return [x + y]
    return _add(x, y)


def divide(x: Any, y: Any) -> list[Any] | None:
    """``x / y`` as fhirpathpy's ``div`` (empty for a zero divisor; ``int / int`` is a
    Python float there too); None: ask fhirpathpy."""
    if type(x) in NUMBER_TYPES and type(y) in NUMBER_TYPES and y == 0:
        return []
    return _divide(x, y)


def absolute(x: Any) -> list[Any] | None:
    """``x.abs()`` of a single value as fhirpathpy's ``abs``; None: ask fhirpathpy."""
    if type(x) in NUMBER_TYPES:
        return [Decimal(x).copy_abs()]
    return None


def round_degree(digits: Any) -> Decimal | None:
    """``10 ** Decimal(digits)`` for a ``round(digits)`` literal computed once, or None
    where fhirpathpy's per-call result could depend on the context (see _ROUND_DIGITS)."""
    if type(digits) is int and digits in _ROUND_DIGITS:
        return 10 ** Decimal(digits)
    return None


def rounded(x: Any, degree: Decimal) -> list[Any] | None:
    """``x.round(n)`` of a single value as fhirpathpy's ``rround`` (Python's ``round``:
    half to even), ``degree`` being :func:`round_degree` of ``n``; None: ask fhirpathpy."""
    if type(x) in NUMBER_TYPES:
        try:
            return [round(Decimal(x) * degree) / degree]
        except (ArithmeticError, ValueError):
            return None
    return None
