"""`cds-service`: one thin click group over library calls (STYLE.md §12).

Each command lives in ``cds_service/commands/<name>.py`` and is imported lazily, so
``cds-service --help`` stays fast and one broken command cannot take the others down.
"""

from __future__ import annotations

import importlib

import click

from cds_service.commands import CONTEXT_SETTINGS

#: command name -> module under cds_service.commands exporting a click command of that name
COMMANDS: dict[str, str] = {
    "serve": "serve",
    "validate": "validate",
    "bundle": "bundle",
    "trace": "trace",
    "replay": "replay",
    "audit": "audit",
    "cards-doc": "cards_doc",
    "readme": "readme",
    "safety": "safety",
}


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        module_name = COMMANDS.get(name)
        if module_name is None:
            return None
        module = importlib.import_module(f"cds_service.commands.{module_name}")
        return getattr(module, module_name)


@click.group(cls=_LazyGroup, context_settings=CONTEXT_SETTINGS)
@click.version_option(package_name="sact-cds", prog_name="cds-service")
def main() -> None:
    """CDS Hooks service and FHIR knowledge tooling for SACT decision support."""
