"""Out-of-memory backoff: run a step; on CUDA OOM free the cache, halve the batch, retry.

The step is a callable taking the current batch size, so the caller decides what "the step at
a smaller batch size" means (the trainer splits a batch into chunks and accumulates gradients,
so the optimisation itself is unchanged). Any exception that is not an out-of-memory error
passes through untouched. Written by hand: the logic is a dozen lines, and testing it on CPU
needs nothing but an injected exception.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

import torch

from visionyard.errors import TrainingError

T = TypeVar("T")
log = logging.getLogger(__name__)
BackoffCallback = Callable[[int, int], None]


def is_out_of_memory(exc: BaseException) -> bool:
    """True for ``torch.cuda.OutOfMemoryError`` and RuntimeErrors that say 'out of memory'."""
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def _empty_cuda_cache() -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


class OomBackoff:
    """Holds the current batch size and halves it on every out-of-memory error.

    ``on_backoff(old, new)`` is called after each halving (the trainer records a tag there);
    a warning is logged as well. Below a batch size of 1 it gives up with TrainingError.
    """

    def __init__(
        self,
        batch_size: int,
        *,
        on_backoff: BackoffCallback | None = None,
        empty_cache: Callable[[], None] = _empty_cuda_cache,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.batch_size = batch_size
        self.history: list[tuple[int, int]] = []
        self._on_backoff = on_backoff
        self._empty_cache = empty_cache

    def run(self, step: Callable[[int], T]) -> T:
        """Call ``step(batch_size)`` until it succeeds, halving on out-of-memory errors."""
        while True:
            try:
                return step(self.batch_size)
            except RuntimeError as exc:  # torch.cuda.OutOfMemoryError is a RuntimeError
                if not is_out_of_memory(exc):
                    raise
                reason = (str(exc).splitlines() or [type(exc).__name__])[0]
            # outside the except block: the traceback (and the tensors its frames hold) is gone
            self._halve(reason)

    def _halve(self, reason: str) -> None:
        self._empty_cache()
        old = self.batch_size
        new = old // 2
        if new < 1:
            raise TrainingError(
                f"out of memory even at batch size 1 ({reason}); use a smaller model or input "
                "size, or train on a device with more memory"
            )
        self.batch_size = new
        self.history.append((old, new))
        log.warning("out of memory at batch size %d: retrying the step at %d", old, new)
        if self._on_backoff is not None:
            self._on_backoff(old, new)
