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


def _file_problem(exc: OSError) -> str:
    """A person's reading of a file-system error: what could not be done, to which path."""
    name = exc.filename if exc.filename is not None else "a file"
    if isinstance(exc, (FileExistsError, NotADirectoryError)):
        return f"cannot use {name}: part of that path is a file, not a folder"
    if isinstance(exc, IsADirectoryError):
        return f"cannot use {name}: it is a folder, not a file"
    if isinstance(exc, PermissionError):
        return f"cannot use {name}: permission denied"
    if isinstance(exc, FileNotFoundError):
        return f"cannot use {name}: no such file or folder"
    return f"cannot use {name}: {exc.strerror or exc}"


class _LazyGroup(click.Group):
    def invoke(self, ctx: click.Context) -> object:
        """The backstop for user mistakes no command anticipated (GUIDE: a message and a
        non-zero exit, never a traceback): a path that cannot be read or written, a file
        that is not text. Programming errors still surface with their traceback."""
        try:
            return super().invoke(ctx)
        except OSError as exc:
            raise click.ClickException(_file_problem(exc)) from None
        except UnicodeError as exc:
            raise click.ClickException(f"a file given is not UTF-8 text ({exc.reason})") from None

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
