"""What a batcher is given and gives back (:mod:`visionyard.serving.batching`): its settings,
one request's :class:`Work` and :class:`BatchResult`, one execution's :class:`Executed`, and
how a batch's results reach the event loop (:class:`Settled`, :func:`settle`)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

Outputs = dict[str, np.ndarray]


@dataclass(frozen=True)
class BatchConfig:
    max_batch_size: int = 8
    max_queue_delay_s: float = 0.002
    workers: int = 2


@dataclass(frozen=True)
class Work:
    """One request: ``count`` rows made by ``prepare() -> (rows, context)`` on a worker, then
    ``finish(outputs_slice, context)`` is the request's result, then ``after()``."""

    count: int
    prepare: Callable[[], tuple[np.ndarray, Any]]
    finish: Callable[[Outputs, Any], Any]
    #: what the request also needs done once its answer has gone (monitoring), on the same
    #: worker; it must not raise
    after: Callable[[], None] | None = None

    @classmethod
    def of(cls, tensor: np.ndarray) -> Work:
        """A ready tensor; the result is its slice of the raw outputs."""
        return cls(len(tensor), lambda: (tensor, None), lambda outputs, _: outputs)


@dataclass(frozen=True)
class BatchResult:
    value: Any
    queue_s: float
    preprocess_s: float
    inference_s: float
    batch_size: int
    output_s: float = 0.0
    #: thread CPU seconds of the request's work (background lane only)
    cpu_s: float | None = None


@dataclass(frozen=True)
class Executed:
    """One model execution: its batch size and seconds spent per stage (summed over rows)."""

    batch_size: int
    input_s: float
    infer_s: float
    output_s: float


@dataclass
class Settled:
    """Results of one batch, handed to the event loop in one call (:func:`settle`)."""

    done: list[tuple[asyncio.Future[BatchResult], BatchResult | BaseException]] = field(
        default_factory=list
    )
    #: set by the event loop once the callers it woke have run (see ``_run_after``)
    answered: threading.Event | None = None


def settle(settled: Settled) -> None:
    for future, outcome in settled.done:
        if future.done():
            continue
        if isinstance(outcome, BaseException):
            future.set_exception(deliverable(outcome))
        else:
            future.set_result(outcome)
    if settled.answered is not None:  # after the callers' own steps, queued just before it
        asyncio.get_running_loop().call_soon(settled.answered.set)


def deliverable(exc: BaseException) -> BaseException:
    """An exception an asyncio future accepts and the event loop can carry (a future refuses
    StopIteration; a KeyboardInterrupt from a worker must not surface in a request)."""
    if isinstance(exc, StopIteration | StopAsyncIteration) or not isinstance(exc, Exception):
        return RuntimeError(f"{type(exc).__name__}: {exc}")
    return exc
