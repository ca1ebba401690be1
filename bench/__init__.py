"""Performance benchmark of the CDS Hooks service (issue 6): ``python -m bench``.

Not part of the installed package and never run by CI as a gate; see
the README's Performance section for what it measures and how to run it.
"""
