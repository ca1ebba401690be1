"""Per-evaluation memoisation of the helpers the clinical features share.

Features are pure functions of (record, context), and many of them need the same
intermediate results: the inotuzumab course is placed by nine features, the liver tests
are read by four. Recomputing them made one evaluation of a real-sized record (~800
resources) take ~0.4 s. :func:`memo` keeps each helper's result for the lifetime of the
record object it was computed from (a weak reference: the entry goes when the record
does), keyed by the context values that can change the result (``now``, the
terminology, the site policy, the regimens) and the helper's further arguments. Memoised helpers must
return values their callers never mutate (tuples, frozen objects).
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

#: id(record) -> {context values: {(helper, args): result}, id(context): (context, that dict)};
#: each entry is removed when its record is collected.
_STORES: dict[int, dict[Any, Any]] = {}


def _store(record: object) -> dict[Any, Any]:
    key = id(record)
    store = _STORES.get(key)
    if store is None:
        store = _STORES[key] = {}
        weakref.finalize(record, _STORES.pop, key, None)
    return store


#: The (record, context) pair asked about last and its results: one evaluation asks ~500
#: times in a row for the same pair, and this check is a third of the dict lookups below.
#: The record is held weakly and the entry is dropped when the record goes (no patient
#: data outlives its record here); reading and replacing the tuple are single steps under
#: the GIL, so threads cannot see a torn pair.
_NOTHING: tuple[Any, Any, dict[tuple[Any, ...], Any]] = (lambda: None, None, {})
_LAST = _NOTHING


def _forget(ref: weakref.ref[Any]) -> None:
    global _LAST
    if _LAST[0] is ref:
        _LAST = _NOTHING


def _results(record: object, ctx: Any) -> dict[tuple[Any, ...], Any]:
    """The results kept for ``record`` under the context values that can change them
    (``now``, the terminology, the site policy, the regimens). Found by the context object's identity
    first (the context is kept alive with its entry, so its id is not reused), since
    hashing the policy on every call of a helper costs more than the helper's lookup."""
    global _LAST
    last = _LAST
    if last[1] is ctx and last[0]() is record:
        return last[2]
    results = _lookup(record, ctx)
    _LAST = (weakref.ref(record, _forget), ctx, results)
    return results


def _lookup(record: object, ctx: Any) -> dict[tuple[Any, ...], Any]:
    store = _store(record)
    seen = store.get(id(ctx))
    if seen is not None and seen[0] is ctx:
        return seen[1]
    results = store.setdefault((ctx.now, id(ctx.terminology), ctx.policy, id(ctx.regimens)), {})
    store[id(ctx)] = (ctx, results)
    return results


def memo(fn: F) -> F:
    """Memoise ``fn(record, ctx, *args)`` per record (module docstring)."""
    name = fn.__qualname__

    @functools.wraps(fn)
    def wrapper(record: Any, ctx: Any, *args: Any) -> Any:
        results = _results(record, ctx)
        key = (name, args)
        try:
            return results[key]
        except KeyError:
            result = results[key] = fn(record, ctx, *args)
            return result

    return wrapper  # type: ignore[return-value]


#: Terminology -> {key: membership}: ValueSet membership of a concept (or a medication
#: without an external reference) is a pure function of the compiled knowledge, so it is
#: kept across evaluations; the entry goes with its Terminology. Bounded: cleared when full.
_SHARED: weakref.WeakKeyDictionary[Any, dict[tuple[Any, ...], bool]] = weakref.WeakKeyDictionary()
SHARED_MAX = 50_000


#: The terminology asked about last and its cache: an evaluation asks ~250 times in a row
#: for the same one, and the weak dictionary's look-up is a Python call each time. Only the
#: weak reference is kept, so this keeps no terminology alive.
_LAST_SHARED: tuple[Any, dict[tuple[Any, ...], bool]] = (lambda: None, {})


def shared(terminology: Any) -> dict[tuple[Any, ...], bool]:
    """The membership cache of ``terminology`` that outlives one record (see ``_SHARED``)."""
    global _LAST_SHARED
    ref, cache = _LAST_SHARED
    if ref() is not terminology:
        try:
            cache = _SHARED[terminology]
        except KeyError:
            cache = _SHARED[terminology] = {}
        except TypeError:  # an object that cannot be weakly referenced: no sharing
            return {}
        _LAST_SHARED = (weakref.ref(terminology), cache)
    if len(cache) > SHARED_MAX:
        cache.clear()
    return cache
