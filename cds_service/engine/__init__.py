"""The engine: eca-rule PlanDefinitions -> CDS Hooks cards; ActivityDefinition $apply.

Generic by construction: every rule is knowledge (architecture.md §5.1). See
``evaluate.py`` for the evaluation steps, ``cards.py`` for the action -> card mapping,
``discovery.py`` for service entries and prefetch, ``apply.py`` for $apply.
"""

from cds_service.engine.apply import apply_activity
from cds_service.engine.cards import check_summary
from cds_service.engine.cards_doc import cards_doc_markdown
from cds_service.engine.conditions import VARIABLES, CompiledExpression, compile_expression
from cds_service.engine.discovery import ServiceDefinition
from cds_service.engine.evaluate import Engine, Evaluation, iter_rule_problems

__all__ = [
    "CompiledExpression",
    "Engine",
    "Evaluation",
    "ServiceDefinition",
    "VARIABLES",
    "apply_activity",
    "cards_doc_markdown",
    "check_summary",
    "compile_expression",
    "iter_rule_problems",
]
