"""Out-of-memory backoff, tested on CPU by injecting the errors CUDA would raise."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest
import torch

from visionyard.errors import TrainingError
from visionyard.train.oom import OomBackoff, is_out_of_memory


def _fits_at(limit: int, seen: list[int]) -> Callable[[int], str]:
    def step(batch_size: int) -> str:
        seen.append(batch_size)
        if batch_size > limit:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return f"ok at {batch_size}"

    return step


def test_halves_until_the_step_fits(caplog: pytest.LogCaptureFixture) -> None:
    changes: list[tuple[int, int]] = []
    cleared: list[bool] = []
    backoff = OomBackoff(
        32, on_backoff=lambda old, new: changes.append((old, new)),
        empty_cache=lambda: cleared.append(True),
    )  # fmt: skip
    seen: list[int] = []
    with caplog.at_level(logging.WARNING, logger="visionyard.train.oom"):
        result = backoff.run(_fits_at(8, seen))
    assert result == "ok at 8"
    assert seen == [32, 16, 8]
    assert backoff.batch_size == 8
    assert changes == backoff.history == [(32, 16), (16, 8)]
    assert len(cleared) == 2
    assert [r.getMessage() for r in caplog.records] == [
        "out of memory at batch size 32: retrying the step at 16",
        "out of memory at batch size 16: retrying the step at 8",
    ]


def test_later_steps_keep_the_smaller_batch() -> None:
    backoff = OomBackoff(16, empty_cache=lambda: None)
    seen: list[int] = []
    backoff.run(_fits_at(4, seen))
    seen.clear()
    backoff.run(_fits_at(4, seen))
    assert seen == [4]


def test_gives_up_below_batch_size_one() -> None:
    backoff = OomBackoff(4, empty_cache=lambda: None)
    seen: list[int] = []
    with pytest.raises(TrainingError, match="out of memory even at batch size 1"):
        backoff.run(_fits_at(0, seen))
    assert seen == [4, 2, 1]


def test_runtime_error_saying_out_of_memory_counts() -> None:
    calls: list[int] = []

    def step(batch_size: int) -> int:
        calls.append(batch_size)
        if batch_size == 8:
            raise RuntimeError("CUDA error: out of memory")
        return batch_size

    assert OomBackoff(8, empty_cache=lambda: None).run(step) == 4
    assert calls == [8, 4]


@pytest.mark.parametrize("error", [RuntimeError("shape mismatch"), ValueError("out of memory")])
def test_other_errors_pass_through_untouched(error: Exception) -> None:
    def step(batch_size: int) -> int:
        raise error

    backoff = OomBackoff(8, empty_cache=lambda: None)
    with pytest.raises(type(error)) as caught:
        backoff.run(step)
    assert caught.value is error
    assert backoff.batch_size == 8


def test_is_out_of_memory() -> None:
    assert is_out_of_memory(torch.cuda.OutOfMemoryError("x"))
    assert is_out_of_memory(RuntimeError("DefaultCPUAllocator: can't allocate: out of memory"))
    assert not is_out_of_memory(RuntimeError("size mismatch"))
    assert not is_out_of_memory(MemoryError())


def test_batch_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="batch_size"):
        OomBackoff(0)
