"""Build hook: ship the top-level knowledge folders inside the wheel.

``plan_definitions/``, ``fhir_profiles/``, ``provenance/`` and ``docs/traceability.md`` stay at
the top of the repository (the design wants them there, for people and FHIR tooling); at build
time they are copied into the package as ``cds_service/_data/<same path>``, where
``cds_service.resources.data_root`` finds them after a non-editable install. An editable
install reads the checkout directly, so nothing is copied for it (and nothing is ever written
into the source tree). Everything else about the build is in pyproject.toml.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT / "cds_service"))
from resources import DATA_ITEMS, PACKAGED  # noqa: E402  (the list lives with its reader)

sys.path.pop(0)


def _ignore(directory: str, names: list[str]) -> set[str]:
    return {n for n in names if n.startswith(".") or n == "__pycache__"}


class BuildPyWithKnowledge(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        target = Path(self.build_lib) / "cds_service" / PACKAGED
        for item in DATA_ITEMS:
            source, dest = ROOT / item, target / item
            if not source.exists():
                raise SystemExit(f"cannot build: {source} is missing (needed as package data)")
            if dest.exists():
                shutil.rmtree(dest) if dest.is_dir() else dest.unlink()
            dest.parent.mkdir(parents=True, exist_ok=True)
            if source.is_dir():
                shutil.copytree(source, dest, ignore=_ignore)
            else:
                shutil.copy2(source, dest)


setup(cmdclass={"build_py": BuildPyWithKnowledge})
