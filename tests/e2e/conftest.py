"""Fixtures shared by the CLI end-to-end tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.registry_world import World, make_world


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path) -> World:
    """Runs logged once per module that uses it (see :mod:`tests.e2e.registry_world`)."""
    return make_world(tmp_path_factory.mktemp("registry-e2e"), sqlite_template)
