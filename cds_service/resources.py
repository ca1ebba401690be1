"""Where the files the commands read at run time live: the checkout, or the installed copy.

The knowledge (``plan_definitions/``, ``fhir_profiles/``), the source documents and verified
codes (``provenance/``) and the traceability table (``docs/traceability.md``) sit at the top
of the repository, where the design wants them. A wheel cannot install top-level folders, so
``setup.py`` copies them into the package at build time, under ``cds_service/_data/`` with the
same layout. ``data_root()`` is the one place that decides which copy a command reads: the
checkout's when this package runs from one (edits take effect at once), else the copy that
shipped with the package (found with ``importlib.resources``). Nothing else in the package
should build a path from ``__file__``.
"""

from __future__ import annotations

import os
from functools import cache
from importlib.resources import files
from pathlib import Path

#: Top-level folders (and files) the wheel carries under ``cds_service/_data/``.
DATA_ITEMS: tuple[str, ...] = ("plan_definitions", "fhir_profiles", "provenance", "docs/traceability.md")
PACKAGED = "_data"


@cache
def source_checkout() -> Path | None:
    """The repository root when the package is imported from a source checkout, else None."""
    root = Path(__file__).resolve().parent.parent
    if (root / "pyproject.toml").is_file() and (root / "plan_definitions").is_dir():
        return root
    return None


@cache
def data_root() -> Path:
    """The folder holding ``plan_definitions/``, ``fhir_profiles/`` and ``provenance/``."""
    checkout = source_checkout()
    if checkout is not None:
        return checkout
    packaged = files("cds_service").joinpath(PACKAGED)
    # Installed wheels are plain directories; a zipped package would need extracting first,
    # which no supported install does, so say so rather than guess.
    if not isinstance(packaged, Path) or not (packaged / "plan_definitions").is_dir():
        raise FileNotFoundError(
            "the knowledge files are missing from this installation of sact-cds "
            f"(looked for {packaged}/plan_definitions); reinstall it from a wheel or a checkout"
        )
    return packaged


def cache_root() -> Path:
    """Where fetched files are cached: ``$CDS_CACHE_DIR``, the checkout's ``.cache/``, or the
    user's cache directory (``$XDG_CACHE_HOME/sact-cds``, default ``~/.cache/sact-cds``)."""
    explicit = os.environ.get("CDS_CACHE_DIR")
    if explicit:
        return Path(explicit)
    checkout = source_checkout()
    if checkout is not None:
        return checkout / ".cache"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "sact-cds"
