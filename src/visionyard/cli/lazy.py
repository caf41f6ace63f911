"""A typer group whose sub-commands are imported only when one of them is run.

Typer builds every sub-command up front, so importing them all for ``visionyard --help`` costs
the import of every command module and what it pulls in (about 0.2 s here). click documents
lazy loading as a ``Group`` subclass overriding ``list_commands``/``get_command``
(click's "Lazily Loading Subcommands"); typer (which vendors click as ``typer._click``) has
no such option, so this is that recipe on typer's own group class. Help and completion of the
root list each command from its entry in :data:`LAZY` (name, module, attribute, one-line
help) without importing it; a test checks that each entry's help matches its command's own.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from difflib import get_close_matches
from typing import Any

import typer
import typer.main
from typer import _click as click  # typer 0.2x vendors click: its groups take these types
from typer._click.exceptions import UsageError
from typer.core import TyperCommand, TyperGroup


@dataclass(frozen=True)
class LazyCommand:
    """Where a sub-command lives: ``module:attr`` is a ``typer.Typer`` or a command function."""

    module: str
    attr: str
    help: str


#: The root's sub-commands in the order ``--help`` lists them (filled by ``cli.main``).
LAZY: dict[str, LazyCommand] = {}


def load_command(name: str) -> click.Command:
    """Import the module behind ``name`` and build its click command (a group or a command)."""
    spec = LAZY[name]
    target = getattr(importlib.import_module(spec.module), spec.attr)
    if isinstance(target, typer.Typer):
        command: click.Command = typer.main.get_group(target)
    else:
        holder = typer.Typer()
        holder.command(name)(target)
        command = typer.main.get_command(holder)
    command.name = name
    return command


class LazyGroup(TyperGroup):
    """The root group: sub-commands from :data:`LAZY`, imported on first use."""

    _stubs: bool = False

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [*super().list_commands(ctx), *(n for n in LAZY if n not in self.commands)]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.commands or cmd_name not in LAZY:
            return super().get_command(ctx, cmd_name)
        if self._stubs:  # listing names and help only: do not import the command
            return TyperCommand(cmd_name, help=LAZY[cmd_name].help)
        command = load_command(cmd_name)
        self.commands[cmd_name] = command
        return command

    def format_help(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with self._listing():
            super().format_help(ctx, formatter)

    def shell_complete(self, ctx: click.Context, incomplete: str) -> list[Any]:
        with self._listing():
            return super().shell_complete(ctx, incomplete)

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        try:
            return super().resolve_command(ctx, args)
        except UsageError as exc:
            matches = get_close_matches(args[0], self.list_commands(ctx)) if args else []
            if matches and "Did you mean" not in exc.message:
                suggestions = ", ".join(repr(m) for m in matches)
                exc.message = f"{exc.message.rstrip('.')}. Did you mean {suggestions}?"
            raise

    @contextmanager
    def _listing(self) -> Iterator[None]:
        self._stubs = True
        try:
            yield
        finally:
            self._stubs = False
