"""sact-cds: clinical decision support for systemic anti-cancer therapy, as CDS Hooks.

The FHIR knowledge artifacts under ``plan_definitions/`` and ``fhir_profiles/`` are the
program; this package is the generic engine that loads, validates and executes them.
"""

__version__ = "0.1.0"

__all__ = [
    "__version__",
]
