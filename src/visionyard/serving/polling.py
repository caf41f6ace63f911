"""The pool's poll loop: every ``serving.poll_interval_s`` each source is refreshed, so that a
moved alias is followed.

A refresh that raises, whatever it raises (an ``OSError`` while caching a new version, a bug),
is recorded like a failed load (:meth:`ModelPool.failed`: logged once while it repeats, without
a traceback, counted in ``visionyard_model_load_failures_total``, shown as ``last_error``) and
polling goes on: one failure must not leave a server that looks ready but never follows its
aliases again. Each model is refreshed on its own: one model's failure does not hold the others.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from visionyard.errors import VisionyardError

if TYPE_CHECKING:
    from visionyard.serving.pool import ModelPool


async def poll(pool: ModelPool, interval_s: float) -> None:
    """Refresh every source every ``interval_s`` seconds, forever (cancel the task to stop)."""
    while True:
        await asyncio.sleep(interval_s)
        await asyncio.gather(*(_refresh(pool, name) for name in pool.names))


async def _refresh(pool: ModelPool, name: str) -> None:
    try:
        await pool.refresh(name)
    except Exception as exc:  # any failure: recorded, and the next poll comes
        pool.failed(pool.entry(name), None, domain_error(exc))


def domain_error(exc: Exception) -> VisionyardError:
    """``exc`` as a domain error (an unexpected one: its type and message, code ``error``)."""
    if isinstance(exc, VisionyardError):
        return exc
    return VisionyardError(f"{type(exc).__name__}: {exc}")
