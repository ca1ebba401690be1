"""Strict FHIRPath checking for ``validate``: what ``fhirpathpy.compile`` does not catch.

``fhirpathpy.compile`` parses with ANTLR's default error listener, which only *reports* syntax
errors (to nobody) and recovers: ``a.where(`` compiles to a function that evaluates to something.
An unknown function (``foo(1)``) or a wrong arity is only found at evaluation time ("Not
implemented: foo") -- at the bedside. So ``validate`` parses each expression a second time with a
listener that raises, walks the tree for the functions it calls and checks each against
fhirpathpy's own invocation table. That strict parse is a superset of ``fhirpathpy.compile``
(which is parse + bind, no evaluation), so it is not parsed a third time here: ANTLR in Python
costs ~10 ms per expression. The engine compiles every expression when ``validate`` builds it.

``today()``, ``now()`` and ``timeOfDay()`` read fhirpathpy's module-global clock
(``engine/invocations/datetime.py``); time is an input (``%now``), so they are refused
(STYLE.md §7) and replay stays deterministic.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, cast

from antlr4 import CommonTokenStream, InputStream
from antlr4.error.ErrorListener import ErrorListener
from antlr4.tree.Tree import ParseTreeWalker
from fhirpathpy.engine.invocations import invocation_registry
from fhirpathpy.parser.ASTPathListener import ASTPathListener
from fhirpathpy.parser.generated.FHIRPathLexer import FHIRPathLexer
from fhirpathpy.parser.generated.FHIRPathParser import FHIRPathParser

_REGISTRY = cast("dict[str, dict[str, Any]]", invocation_registry)  # fhirpathpy: name -> spec

#: Functions that read the wall clock; artifacts use the ``%now`` variable instead.
CLOCK_FUNCTIONS = frozenset({"today", "now", "timeOfDay"})


class _Raise(ErrorListener):  # type: ignore[misc]
    def syntaxError(self, recognizer: Any, offending: Any, line: int, column: int,
                    msg: str, e: Any) -> None:
        raise SyntaxError(f"column {column + 1}: {msg}")


def _parse_strict(expression: str) -> dict[str, Any]:
    """Parse the whole expression (to EOF) into fhirpathpy's AST; raise SyntaxError on any error."""
    lexer = FHIRPathLexer(InputStream(expression))
    lexer.removeErrorListeners()
    lexer.addErrorListener(_Raise())
    parser = FHIRPathParser(CommonTokenStream(lexer))
    parser.removeErrorListeners()
    parser.addErrorListener(_Raise())
    tree = parser.entireExpression()
    listener = ASTPathListener()
    ParseTreeWalker().walk(listener, tree)
    return listener.parentStack[0]


def _functions(node: dict[str, Any]) -> Iterator[tuple[str, int]]:
    """Every ``name(params)`` call in the AST, as (name, number of parameters)."""
    if node.get("type") == "Functn":
        children = node.get("children", [])
        name = children[0].get("text", "") if children else ""
        params = next((c for c in children[1:] if c.get("type") == "ParamList"), None)
        yield name, len(params.get("children", [])) if params else 0
    for child in node.get("children", []):
        yield from _functions(child)


def expression_errors(expression: str) -> Iterator[str]:
    """Yield why ``expression`` cannot be used as a rule condition; nothing if it can."""
    try:
        ast = _parse_strict(expression)
    except SyntaxError as exc:
        yield f"FHIRPath does not parse: {exc.msg}"
        return
    except Exception as exc:  # ANTLR raises its own recognition errors from the lexer
        yield f"FHIRPath does not parse: {exc}"
        return
    for name, arity in _functions(ast):
        if name in CLOCK_FUNCTIONS:
            yield f"{name}() reads the wall clock; use the %now variable (time is an input)"
            continue
        invocation: dict[str, Any] | None = _REGISTRY.get(name)
        if invocation is None:
            yield f"unknown FHIRPath function {name}()"
        elif "variadic" not in invocation and arity not in invocation.get("arity", {0: []}):
            allowed = sorted(invocation.get("arity", {0: []}))
            yield f"{name}() takes {' or '.join(map(str, allowed))} parameter(s), not {arity}"
