"""The model pool's memory of bad versions and of an admin's unload (no server, no network)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from tests.fixtures.runtime import write_colour_bundle
from visionyard.errors import BundleIntegrityError, RegistryError
from visionyard.serving.metrics import ServingMetrics
from visionyard.serving.pool import ModelPool, PoolConfig
from visionyard.serving.registry_source import RegistrySource
from visionyard.serving.sources import Resolved
from visionyard.settings import Settings


class FakeRegistry:
    """An alias the test moves; version "7" fails verification, others download fine."""

    def __init__(self, good: Path) -> None:
        self.good = good
        self.version = "7"
        self.downloads: list[str] = []
        self.unreachable = False

    def lookup(self, reference: str) -> str:
        if self.unreachable:
            raise RegistryError("registry unreachable")
        return self.version

    def resolve(self, reference: str) -> Resolved:
        self.downloads.append(self.version)
        if self.version == "7":
            raise BundleIntegrityError("/srv/cache/m/7", "model.onnx does not match its digest")
        return Resolved(self.version, self.good)


def _pool(tmp_path: Path, registry: FakeRegistry) -> ModelPool:
    source = RegistrySource("m@production", Settings(), registry.resolve, registry.lookup)
    return ModelPool({"m": source}, PoolConfig(), ServingMetrics())


def test_a_version_that_failed_verification_is_not_downloaded_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    registry = FakeRegistry(write_colour_bundle(tmp_path / "good").path)
    pool = _pool(tmp_path, registry)

    async def scenario() -> None:
        with caplog.at_level(logging.ERROR, "visionyard.serving"):
            assert await pool.refresh("m") is False
            assert await pool.refresh("m") is False  # a poll: the alias has not moved
        assert registry.downloads == ["7"]
        registry.version = "8"  # the alias moves: try again
        assert await pool.refresh("m") is True
        assert registry.downloads == ["7", "8"]
        await pool.close()

    asyncio.run(scenario())
    failures = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(failures) == 1
    fields = failures[0].fields  # type: ignore[attr-defined]
    assert fields["version"] == "7"
    assert fields["serving"] is None
    assert "keeps serving" not in failures[0].getMessage()
    assert "no version is serving" in failures[0].getMessage()


def test_an_unreachable_registry_is_retried_on_the_next_poll(tmp_path: Path) -> None:
    registry = FakeRegistry(write_colour_bundle(tmp_path / "good").path)
    registry.version, registry.unreachable = "8", True
    pool = _pool(tmp_path, registry)

    async def scenario() -> None:
        assert await pool.refresh("m") is False
        registry.unreachable = False
        assert await pool.refresh("m") is True
        await pool.close()

    asyncio.run(scenario())


def test_unload_sticks_until_loaded_again(tmp_path: Path) -> None:
    registry = FakeRegistry(write_colour_bundle(tmp_path / "good").path)
    registry.version = "8"
    pool = _pool(tmp_path, registry)

    async def scenario() -> None:
        assert await pool.refresh("m") is True
        await pool.unload("m")
        registry.version = "9"  # even an alias that moves does not reload it
        assert await pool.refresh("m") is False
        assert pool.entry("m").current is None
        assert pool.entry("m").state == "unloaded"
        assert await pool.refresh("m", force=True) is True  # the admin's load
        assert pool.entry("m").state == "ready"
        await pool.close()

    asyncio.run(scenario())
