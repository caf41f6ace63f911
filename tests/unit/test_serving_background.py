"""The batcher's background lane (a shadow's work): it runs on its own thread at idle priority, on
the narrow session, never delays foreground work, and reports its own CPU seconds."""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time

import numpy as np
import pytest

from visionyard.serving.batching import BatchConfig, Batcher, Outputs, Work

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux scheduling")


def _recording(seen: list[tuple[str, str, int]], label: str, gate: threading.Event | None = None):  # type: ignore[no-untyped-def]
    def run(tensor: np.ndarray) -> Outputs:
        if gate is not None:
            gate.wait(5)
        thread = threading.current_thread().name
        seen.append((label, thread, os.sched_getscheduler(0)))
        return {"y": tensor + 1}

    return run


def test_background_work_runs_at_idle_priority_on_the_narrow_session() -> None:
    seen: list[tuple[str, str, int]] = []

    async def main() -> float | None:
        batcher = Batcher(
            _recording(seen, "narrow"), BatchConfig(workers=2), run_alone=_recording(seen, "wide")
        )
        batcher.start()
        result = await batcher.submit(Work.of(np.zeros((1, 2), np.float32)), background=True)
        await batcher.submit(Work.of(np.zeros((1, 2), np.float32)))  # a lone foreground one
        await batcher.close()
        assert np.all(result.value["y"] == 1)
        return result.cpu_s

    cpu_s = asyncio.run(main())
    (label, thread, policy), (fg_label, fg_thread, fg_policy) = seen
    assert (label, policy) == ("narrow", os.SCHED_IDLE)  # never the wide session, idle priority
    assert thread.endswith("-bg")
    assert (fg_label, fg_policy) == ("wide", os.SCHED_OTHER)  # the foreground is not lowered
    assert fg_thread != thread
    assert cpu_s is not None
    assert 0 <= cpu_s < 1.0


def test_foreground_work_is_served_while_background_work_is_stuck() -> None:
    seen: list[tuple[str, str, int]] = []
    gate = threading.Event()

    async def main() -> float:
        batcher = Batcher(_recording(seen, "run", gate), BatchConfig(workers=1))
        batcher.start()
        stuck = asyncio.create_task(
            batcher.submit(Work.of(np.zeros((1, 1), np.float32)), background=True)
        )
        await asyncio.sleep(0.05)  # the background thread holds its work, waiting on the gate
        started = time.perf_counter()
        gate.set()  # from here every call returns at once
        await batcher.submit(Work.of(np.zeros((1, 1), np.float32)))
        elapsed = time.perf_counter() - started
        await stuck
        await batcher.close()
        return elapsed

    assert asyncio.run(main()) < 1.0
    assert {thread.endswith("-bg") for _, thread, _ in seen} == {True, False}


def test_background_work_queued_at_close_is_finished() -> None:
    async def main() -> list[float]:
        batcher = Batcher(_recording([], "run"), BatchConfig(workers=1))
        batcher.start()
        tasks = [
            asyncio.create_task(
                batcher.submit(Work.of(np.full((1, 1), i, np.float32)), background=True)
            )
            for i in range(5)
        ]
        await asyncio.sleep(0)
        await batcher.close()
        return [float((await task).value["y"][0, 0]) for task in tasks]

    assert asyncio.run(main()) == [1.0, 2.0, 3.0, 4.0, 5.0]


def test_a_failing_background_request_gets_its_error_and_the_lane_goes_on() -> None:
    calls: list[int] = []

    def run(tensor: np.ndarray) -> Outputs:
        calls.append(len(tensor))
        if float(tensor[0, 0]) < 0:
            raise ValueError("bad rows")
        return {"y": tensor}

    async def main() -> float:
        batcher = Batcher(run, BatchConfig(workers=1))
        batcher.start()
        with pytest.raises(ValueError, match="bad rows"):
            await batcher.submit(Work.of(np.full((1, 1), -1, np.float32)), background=True)
        ok = await batcher.submit(Work.of(np.full((1, 1), 3, np.float32)), background=True)
        await batcher.close()
        return float(ok.value["y"][0, 0])

    assert asyncio.run(main()) == 3.0
    assert calls == [1, 1]
