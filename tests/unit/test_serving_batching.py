"""The dynamic batcher: batches concurrent requests, adds no delay when idle, reports errors."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from visionyard.errors import InferenceError
from visionyard.serving.batching import BatchConfig, Batcher, Outputs


def _slow_double(sizes: list[int], delay: float = 0.05):  # type: ignore[no-untyped-def]
    def run(tensor: np.ndarray) -> Outputs:
        sizes.append(len(tensor))
        time.sleep(delay)
        return {"y": tensor * 2}

    return run


def test_concurrent_requests_are_batched_and_split_back() -> None:
    async def main() -> tuple[list[int], list[np.ndarray]]:
        sizes: list[int] = []
        batcher = Batcher(_slow_double(sizes), BatchConfig(max_batch_size=8, workers=1))
        batcher.start()
        tensors = [np.full((1 + i % 2, 2), i, np.float32) for i in range(9)]
        results = await asyncio.gather(*(batcher.submit(t) for t in tensors))
        await batcher.close()
        return sizes, [r.outputs["y"] for r in results]

    sizes, outputs = asyncio.run(main())
    assert sum(sizes) == 13
    assert max(sizes) > 1
    assert all(size <= 8 for size in sizes)
    for i, out in enumerate(outputs):
        assert out.shape == (1 + i % 2, 2)
        assert np.all(out == 2 * i)


def test_no_delay_when_idle() -> None:
    async def main() -> float:
        batcher = Batcher(_slow_double([], 0.0), BatchConfig(max_queue_delay_s=2.0))
        batcher.start()
        started = time.perf_counter()
        await batcher.submit(np.zeros((1, 2), np.float32))
        elapsed = time.perf_counter() - started
        await batcher.close()
        return elapsed

    assert asyncio.run(main()) < 0.5


def test_waits_for_more_only_while_another_worker_is_busy() -> None:
    async def main() -> list[int]:
        sizes: list[int] = []
        config = BatchConfig(max_batch_size=4, max_queue_delay_s=0.15, workers=2)
        batcher = Batcher(_slow_double(sizes, 0.3), config)
        batcher.start()
        first = asyncio.create_task(batcher.submit(np.zeros((1, 1))))
        await asyncio.sleep(0.02)  # worker 1 busy; worker 2 takes the next and waits a little
        rest = [asyncio.create_task(batcher.submit(np.zeros((1, 1)))) for _ in range(1)]
        await asyncio.sleep(0.01)
        rest += [asyncio.create_task(batcher.submit(np.zeros((1, 1)))) for _ in range(2)]
        await asyncio.gather(first, *rest)
        await batcher.close()
        return sizes

    assert asyncio.run(main()) == [1, 3]


def test_errors_reach_every_caller_of_the_batch() -> None:
    def fail(tensor: np.ndarray) -> Outputs:
        raise InferenceError("boom")

    async def main() -> list[BaseException | object]:
        batcher = Batcher(fail, BatchConfig())
        batcher.start()
        results = await asyncio.gather(
            *(batcher.submit(np.zeros((1, 1))) for _ in range(3)), return_exceptions=True
        )
        await batcher.close()
        return list(results)

    results = asyncio.run(main())
    assert all(isinstance(r, InferenceError) for r in results)


def test_closed_batcher_refuses_work() -> None:
    async def main() -> None:
        batcher = Batcher(_slow_double([]), BatchConfig())
        batcher.start()
        await batcher.close()
        await batcher.submit(np.zeros((1, 1)))

    with pytest.raises(RuntimeError, match="closed"):
        asyncio.run(main())
