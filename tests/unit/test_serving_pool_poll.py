"""The pool's poll loop outlives any failure of one refresh: it is logged once, shown on the
entry, counted, and the next alias move is still followed (no server, no network)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.fixtures.runtime import write_colour_bundle
from visionyard.serving.metrics import ServingMetrics
from visionyard.serving.pool import ModelPool, PoolConfig
from visionyard.serving.registry_source import RegistrySource
from visionyard.serving.sources import Resolved
from visionyard.settings import Settings

POLL_S = 0.01


class Surprise(Exception):
    """An exception type nobody anticipated (not a VisionyardError, not an OSError)."""


def _os_error() -> Exception:
    return IsADirectoryError(21, "Is a directory", "/srv/cache/m/.9.lock")


def _surprise() -> Exception:
    return Surprise("the cache went away")


class FlakyRegistry:
    """An alias the test moves; version "9" raises ``error`` where ``where`` says."""

    def __init__(self, good: Path, where: str, error: Callable[[], Exception]) -> None:
        self.good, self.where, self.error = good, where, error
        self.version = "8"
        self.calls = 0

    def lookup(self, reference: str) -> str:
        self.calls += 1
        if self.version == "9" and self.where == "lookup":
            raise self.error()
        return self.version

    def resolve(self, reference: str) -> Resolved:
        if self.version == "9" and self.where == "resolve":
            raise self.error()
        return Resolved(self.version, self.good)


async def _until(
    check: Callable[[], bool], what: str, poller: asyncio.Task[None], timeout: float = 10.0
) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert not poller.done(), f"the poll loop died waiting for {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(POLL_S)


def _failures(pool: ModelPool) -> float:
    value = pool.metrics.registry.get_sample_value(
        "visionyard_model_load_failures_total", {"model": "m"}
    )
    return value or 0.0


@pytest.mark.parametrize("error", [_os_error, _surprise], ids=["oserror", "surprise"])
@pytest.mark.parametrize("where", ["resolve", "lookup"])
def test_polling_survives_an_unexpected_error_and_follows_the_next_move(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    where: str,
    error: Callable[[], Exception],
) -> None:
    registry = FlakyRegistry(write_colour_bundle(tmp_path / "good").path, where, error)
    source = RegistrySource("m@production", Settings(), registry.resolve, registry.lookup)
    pool = ModelPool({"m": source}, PoolConfig(), ServingMetrics())
    entry = pool.entry("m")

    async def scenario() -> None:
        await pool.start()
        assert entry.current is not None
        assert entry.current.version == "8"
        task = asyncio.create_task(pool.watch(POLL_S))
        try:
            with caplog.at_level(logging.DEBUG, "visionyard.serving"):
                registry.version = "9"  # caching it fails with an unexpected exception
                await _until(
                    lambda: entry.last_error is not None, "the failure to be recorded", task
                )
                calls = registry.calls
                await _until(lambda: registry.calls >= calls + 5, "more polls", task)
                assert not task.done(), "the poll loop died"
                assert entry.current.version == "8"  # the old version keeps serving
                assert entry.state == "ready"
                assert type(error()).__name__ in entry.last_error
                assert "/srv/cache" not in entry.last_error  # clients see no server path
                assert _failures(pool) >= 1
                registry.version = "10"  # the alias moves on: followed
                await _until(
                    lambda: entry.current is not None and entry.current.version == "10",
                    "the next alias move to be followed",
                    task,
                )
                assert entry.last_error is None
                assert not task.done()
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await pool.close()

    asyncio.run(scenario())
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, [r.getMessage() for r in errors]  # once, not once per poll
    assert not any(r.exc_info for r in caplog.records)  # no traceback
    fields = errors[0].fields  # type: ignore[attr-defined]
    assert fields["model"] == "m"
    assert fields["serving"] == "8"
    assert type(error()).__name__ in fields["error"]


def test_polling_survives_an_error_escaping_a_refresh(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever raises inside one refresh (a bug included), the loop records it and goes on."""
    registry = FlakyRegistry(write_colour_bundle(tmp_path / "good").path, "none", _surprise)
    source = RegistrySource("m@production", Settings(), registry.resolve, registry.lookup)
    pool = ModelPool({"m": source}, PoolConfig(), ServingMetrics())
    entry = pool.entry("m")
    refresh = pool.refresh
    broken = {"on": True}

    async def flaky_refresh(name: str, *, force: bool = False) -> bool:
        if broken["on"]:
            raise Surprise("a bug in one refresh")
        return await refresh(name, force=force)

    async def scenario() -> None:
        await pool.start()
        monkeypatch.setattr(pool, "refresh", flaky_refresh)
        task = asyncio.create_task(pool.watch(POLL_S))
        try:
            with caplog.at_level(logging.DEBUG, "visionyard.serving"):
                await _until(
                    lambda: entry.last_error is not None, "the failure to be recorded", task
                )
                await asyncio.sleep(POLL_S * 10)
                assert not task.done(), "the poll loop died"
                assert "Surprise" in entry.last_error
                assert _failures(pool) >= 1
                broken["on"] = False
                registry.version = "10"
                await _until(
                    lambda: entry.current is not None and entry.current.version == "10",
                    "the next alias move to be followed",
                    task,
                )
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await pool.close()

    asyncio.run(scenario())
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, [r.getMessage() for r in errors]


def test_polls_of_a_model_that_never_loaded_are_not_logged_each_time(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Nothing serving and the alias still on a version that fails: the first attempt is
    logged (INFO: looking up, fetching; ERROR: the failure), later polls only at DEBUG."""
    registry = FlakyRegistry(write_colour_bundle(tmp_path / "good").path, "resolve", _surprise)
    registry.version = "9"
    source = RegistrySource("m@production", Settings(), registry.resolve, registry.lookup)
    pool = ModelPool({"m": source}, PoolConfig(), ServingMetrics())

    async def scenario() -> None:
        with caplog.at_level(logging.DEBUG, "visionyard.serving"):
            await pool.start()
            task = asyncio.create_task(pool.watch(POLL_S))
            try:
                calls = registry.calls
                await _until(lambda: registry.calls >= calls + 5, "more polls", task)
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                await pool.close()

    asyncio.run(scenario())
    said = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    assert said.count("looking up reference") == 1, said
    assert pool.entry("m").current is None
