"""A saved window: round trip, and one clear error for whatever is not one (no pickle)."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from visionyard.errors import DatasetError
from visionyard.monitor import FeatureSample
from visionyard.monitor.saved_window import read_window, window_bytes


def sample(embeddings: bool = True) -> FeatureSample:
    rng = np.random.default_rng(0)
    rows = rng.normal(size=(5, 4)).astype(np.float32) if embeddings else None
    return FeatureSample(
        5,
        {"brightness_r": rng.random(5), "confidence": rng.random(5)},
        {"class": {"cat": 3, "dog": 2}},
        rows,
    )


def test_a_window_round_trips() -> None:
    original = sample()
    saved = read_window(window_bytes(original, {"model": "m", "version": "7"}), "w.npz")
    assert (saved.model, saved.version) == ("m", "7")
    assert saved.sample.images == 5
    assert saved.sample.categorical == {"class": {"cat": 3, "dog": 2}}
    for name, values in original.continuous.items():
        np.testing.assert_array_equal(saved.sample.continuous[name], values)
    assert saved.sample.embeddings is not None
    assert original.embeddings is not None
    np.testing.assert_array_equal(saved.sample.embeddings, original.embeddings)
    assert read_window(window_bytes(sample(False), {}), "w").sample.embeddings is None


def npz(**arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)  # type: ignore[arg-type]
    return buffer.getvalue()


def meta(**fields: object) -> np.ndarray:
    body = {"format": "visionyard-window", "format_version": 1, "images": 1, "counts": {}}
    return np.frombuffer(json.dumps({**body, **fields}).encode(), dtype=np.uint8)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "is not a saved window"),
        (b"not an npz at all", "is not a saved window"),
        (npz(x=np.zeros(3)), "no meta.json in it"),
        (npz(**{"meta.json": np.frombuffer(b"{oops", dtype=np.uint8)}), "not valid JSON"),
        (npz(**{"meta.json": meta(format="visionyard-profile")}), "is not a saved window"),
        (npz(**{"meta.json": meta(format_version=9)}), "format version 9"),
        (npz(**{"meta.json": meta(images="many")}), "lacks the image count"),
        (npz(**{"meta.json": meta(), "evil": np.array([{"a": 1}], dtype=object)}), "saved window"),
    ],
)
def test_what_is_not_a_window_is_one_clear_error(data: bytes, message: str) -> None:
    with pytest.raises(DatasetError, match=message):
        read_window(data, "w.npz")
