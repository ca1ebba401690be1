"""Performance benchmark of the CDS Hooks service (issue 6): ``python -m bench``.

Not part of the installed package and never run by CI as a gate; see
docs/performance.md for what it measures and how to run it.
"""
