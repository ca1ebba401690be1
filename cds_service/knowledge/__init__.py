"""The knowledge package: load, check and index the FHIR artifacts (architecture.md §2).

``load_knowledge`` is what the service starts from; ``iter_problems`` is what ``validate``
prints; ``transaction_bundle`` is what ``bundle`` writes. Helpers live in ``_``-modules.
"""

from cds_service.knowledge._base import KnowledgeBase, split_canonical
from cds_service.knowledge._bundle import transaction_bundle
from cds_service.knowledge._checks import Problem
from cds_service.knowledge._loader import KNOWLEDGE_DIRS, iter_problems, load_knowledge
from cds_service.knowledge._regimen import CycleDefinition, RegimenSchedule, regimen_schedule
from cds_service.knowledge._terminology import Terminology

__all__ = [
    "CycleDefinition",
    "KNOWLEDGE_DIRS",
    "KnowledgeBase",
    "Problem",
    "RegimenSchedule",
    "Terminology",
    "iter_problems",
    "load_knowledge",
    "regimen_schedule",
    "split_canonical",
    "transaction_bundle",
]
