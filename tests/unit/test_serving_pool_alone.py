"""The pool gives each version's batcher a wide twin session for lone batches, when configured."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.fixtures.runtime import write_colour_bundle
from visionyard.runtime.session import InferenceSession
from visionyard.serving.app import pool_config
from visionyard.serving.batching import BatchConfig, Work
from visionyard.serving.metrics import ServingMetrics
from visionyard.serving.pool import ModelPool, PoolConfig
from visionyard.serving.sources import Resolved
from visionyard.serving.threads import usable_cores
from visionyard.settings import Settings


class Fixed:
    reference = "bundle"

    def __init__(self, path: Path) -> None:
        self.path = path

    def resolve(self) -> Resolved:
        return Resolved("1", self.path)


def _serve_one(tmp_path: Path, config: PoolConfig, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Load a version, serve one lone request; the intra-op threads of each session run."""
    runs: list[int] = []
    real_open = InferenceSession.from_bundle.__func__  # type: ignore[attr-defined]

    def from_bundle(cls: Any, *args: Any, **kwargs: Any) -> InferenceSession:
        session: InferenceSession = real_open(cls, *args, **kwargs)
        threads, run = kwargs.get("intra_op_threads", 1), session.run

        def traced(tensor: np.ndarray) -> Any:
            runs.append(threads)
            return run(tensor)

        session.run = traced  # type: ignore[method-assign]
        return session

    monkeypatch.setattr(InferenceSession, "from_bundle", classmethod(from_bundle))
    pool = ModelPool({"m": Fixed(write_colour_bundle(tmp_path).path)}, config, ServingMetrics())

    async def scenario() -> None:
        await pool.start()
        model = pool.current("m")
        runs.clear()  # warm-up runs
        await model.batcher.submit(Work.of(model.session.dummy_input(1)))
        await pool.close()

    asyncio.run(scenario())
    return runs


def test_a_lone_request_runs_on_the_wide_twin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = PoolConfig(BatchConfig(workers=2), intra_op_threads=1, alone_intra_op_threads=3)
    assert _serve_one(tmp_path, config, monkeypatch) == [3]


def test_no_twin_when_it_would_not_be_wider(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = PoolConfig(intra_op_threads=2, alone_intra_op_threads=2)
    assert _serve_one(tmp_path, config, monkeypatch) == [2]


def test_the_setting_sizes_the_twin_and_defaults_to_one_thread_per_core() -> None:
    assert pool_config(Settings()).alone_intra_op_threads == usable_cores()
    off = Settings(serving={"lone_intra_op_threads": 1})
    assert pool_config(off).alone_intra_op_threads == 1
