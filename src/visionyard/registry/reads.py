"""``models show | list | history`` over the cheapest client that answers them.

On the embedded default (a SQLite store) the views read the store through
:mod:`visionyard.tracking.sqlite_read`, which does not import MLflow: ``models show`` then
starts in a fraction of MLflow's own import time (``bench/bench_cli_startup.py``). Anywhere else
(a tracking server, PostgreSQL, a schema revision the shortcut was not checked against), and
whenever the SQLite read fails (locked, corrupt), the same views run on the MLflow client, so
the answer and its errors are MLflow's. Nothing here writes.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from visionyard.registry.history import AliasEvent, check_alias
from visionyard.registry.views import (
    AliasView,
    ModelRow,
    RegistryReads,
    VersionView,
    history,
    list_models,
    parse_reference,
    show,
)

if TYPE_CHECKING:
    from visionyard.settings import Settings

T = TypeVar("T")


class ReadViews:
    """The registry's read views for one invocation's settings; with ``client``, on that
    client only (the :class:`~visionyard.registry.Registry` API passes its own)."""

    def __init__(self, settings: Settings, client: RegistryReads | None = None) -> None:
        self.settings = settings
        self.client = client

    def show(self, reference: str) -> VersionView:
        parsed = parse_reference(reference)
        return self._read(lambda client: show(client, parsed))

    def history(
        self, name: str, alias: str | None = None, limit: int | None = None
    ) -> tuple[list[AliasEvent], list[AliasView]]:
        if alias is not None:
            check_alias(alias, list(self.settings.registry.aliases))
        return self._read(lambda client: history(client, name, alias, limit))

    def list(self) -> list[ModelRow]:
        return self._read(list_models)

    def _read(self, view: Callable[[RegistryReads], T]) -> T:
        from visionyard.tracking.sqlite_read import open_reader

        if self.client is not None:
            return view(self.client)
        tracking = self.settings.tracking
        reader = open_reader(self.settings.tracking_uri(), tracking.registry_uri)
        if reader is not None:
            try:
                return view(reader)
            except sqlite3.Error:
                pass  # locked past the timeout, or damaged: MLflow answers, with its own error
            finally:
                reader.close()
        return view(self._mlflow())

    def _mlflow(self) -> RegistryReads:
        from visionyard.tracking.registry_client import RegistryClient

        return RegistryClient.from_settings(self.settings)
