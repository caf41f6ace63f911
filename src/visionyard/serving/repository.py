"""The model repository extension (index, load, unload), once for REST and gRPC.

The repository is the server's configured models (``serving.models``: bundle paths and registry
references such as ``NAME@production``). A load resolves the model's reference again and
switches to its version (loading a registry reference downloads, verifies and warms it up); a
load that fails is an error (``not_found`` for a reference the registry does not know), and
the version that served before keeps serving. An unload stops the model until it is loaded
again. Callers check the admin token first (:func:`visionyard.serving.auth.check_admin`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from visionyard.serving.pool import ModelEntry, ModelPool


def index(pool: ModelPool, ready: bool = False) -> list[dict[str, Any]]:
    """Triton's repository index: one row per model (only the ready ones with ``ready``)."""
    rows = [index_row(pool.entry(name)) for name in pool.names]
    return [row for row in rows if row["state"] == "READY"] if ready else rows


async def load(pool: ModelPool, name: str) -> dict[str, Any]:
    """Load ``name`` (again); its index row and whether the serving version changed."""
    swapped = await pool.load(name)
    return {**index_row(pool.entry(name)), "swapped": swapped}


async def unload(pool: ModelPool, name: str) -> dict[str, Any]:
    await pool.unload(name)
    return index_row(pool.entry(name))


def index_row(entry: ModelEntry) -> dict[str, Any]:
    current = entry.current
    return {
        "name": entry.name,
        "version": current.version if current else "",
        "state": entry.state.upper(),
        "reason": entry.last_error or "",
    }
