"""A live window saved to one file, so that a report can be made from it later.

The server hands out the window it holds (``GET /v2/models/{name}/monitor/window``, admin) as
one ``.npz`` file: the continuous values (``continuous.<feature>``), the embedding rows when
the model has them (``embeddings``), and ``meta.json`` (bytes as a uint8 array): format,
model, version, images, the categorical counts, the arrival span and when it was saved.
Written with numpy's ``savez_compressed`` and read with ``allow_pickle=False``: no pickle.
``visionyard monitor report NAME@ALIAS --window FILE`` compares it with the version's
reference profile.
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from visionyard.errors import DatasetError
from visionyard.monitor.sample import FeatureSample

FORMAT = "visionyard-window"
VERSION = 1
META = "meta.json"


@dataclass(frozen=True)
class SavedWindow:
    """A window read back: ``meta`` (model, version, span, ...) and its ``sample``."""

    meta: dict[str, Any]
    sample: FeatureSample

    @property
    def model(self) -> str:
        return str(self.meta.get("model", ""))

    @property
    def version(self) -> str:
        return str(self.meta.get("version", ""))


def window_bytes(sample: FeatureSample, about: dict[str, Any]) -> bytes:
    """``sample`` as one ``.npz`` file; ``about`` (model, version, span) goes into its meta."""
    meta = {
        **about, "format": FORMAT, "format_version": VERSION, "images": sample.images,
        "counts": {k: dict(v) for k, v in sample.categorical.items()},
        "saved": datetime.now(UTC).isoformat(timespec="seconds"),
    }  # fmt: skip
    arrays: dict[str, np.ndarray] = {
        f"continuous.{k}": np.asarray(v, np.float64) for k, v in sample.continuous.items()
    }
    if sample.embeddings is not None:
        arrays["embeddings"] = np.asarray(sample.embeddings, np.float32)
    arrays[META] = np.frombuffer(json.dumps(meta, sort_keys=True).encode(), dtype=np.uint8)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)  # type: ignore[arg-type]
    return buffer.getvalue()


def read_window(data: bytes, where: str) -> SavedWindow:
    """Read a saved window; a file that is not one (or is damaged) is one clear error."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            arrays = {k: np.asarray(npz[k]) for k in npz.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DatasetError(f"{where} is not a saved window ({_short(exc)})") from exc
    meta = _meta(arrays.pop(META, None), where)
    continuous = {
        k.removeprefix("continuous."): v.astype(np.float64)
        for k, v in arrays.items() if k.startswith("continuous.")
    }  # fmt: skip
    embeddings = arrays.get("embeddings")
    rows = None if embeddings is None else embeddings.astype(np.float32)
    counts = {str(k): {str(c): int(n) for c, n in v.items()} for k, v in meta["counts"].items()}
    return SavedWindow(meta, FeatureSample(int(meta["images"]), continuous, counts, rows))


def _meta(raw: np.ndarray | None, where: str) -> dict[str, Any]:
    if raw is None:
        raise DatasetError(f"{where} is not a saved window (no {META} in it)")
    try:
        meta = json.loads(raw.astype(np.uint8).tobytes())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetError(f"{where}: its {META} is not valid JSON ({exc})") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise DatasetError(f"{where} is not a saved window (format {FORMAT})")
    if meta.get("format_version") != VERSION:
        raise DatasetError(
            f"{where} is a saved window of format version {meta.get('format_version')}; "
            f"this visionyard reads version {VERSION}"
        )
    if not isinstance(meta.get("counts"), dict) or not isinstance(meta.get("images"), int):
        raise DatasetError(f"{where}: its {META} lacks the image count or the class counts")
    return meta


def _short(exc: BaseException) -> str:
    return str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
