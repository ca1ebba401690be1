"""Each package's public surface is its sorted ``__all__`` and nothing else (STYLE.md §2).

Like httpx's test of the same name: every exported name exists, is public, is listed once,
and the list is sorted, so a reviewer sees every change to the public API in one place.
"""

from __future__ import annotations

import importlib

import pytest

PACKAGES = [
    "cds_service",
    "cds_service.api",
    "cds_service.engine",
    "cds_service.errors",
    "cds_service.features",
    "cds_service.knowledge",
    "cds_service.knowledge.terms",
    "cds_service.record",
    "cds_service.replay",
    "cds_service.store",
]


@pytest.mark.parametrize("name", PACKAGES)
def test_the_package_exports_a_sorted_list_of_public_names_that_exist(name: str) -> None:
    module = importlib.import_module(name)
    exported = module.__all__
    assert exported == sorted(exported), f"{name}.__all__ is not sorted"
    assert len(set(exported)) == len(exported), f"{name}.__all__ lists a name twice"
    for member in exported:
        assert not member.startswith("_") or member == "__version__", f"{name} exports private {member}"
        assert hasattr(module, member), f"{name}.__all__ names {member}, which does not exist"


@pytest.mark.parametrize("name", [p for p in PACKAGES if not p.endswith(("errors", "terms")) and p != "cds_service"])
def test_every_public_name_the_package_defines_or_imports_is_exported(name: str) -> None:
    module = importlib.import_module(name)
    public = {
        n
        for n, value in vars(module).items()
        if not n.startswith("_") and getattr(value, "__module__", "").startswith(name)
    }
    assert public <= set(module.__all__), f"{name} has public names outside __all__: {public - set(module.__all__)}"
