"""Reference profiles: built through the contract, saved as JSON + npz, refused when changed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.fixtures.runtime import COLOURS, flat_png
from visionyard.bundle.store import Bundle
from visionyard.errors import BundleIntegrityError
from visionyard.monitor import (
    Profile,
    ProfileOptions,
    build_profile,
    compare,
    image_files,
    load_profile,
    save_profile,
)
from visionyard.monitor.profile import PROFILE_JSON, PROFILE_NPZ
from visionyard.runtime.session import InferenceSession


@pytest.fixture(scope="module")
def colours(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """40 flat images of each colour, sizes varying, plus one that is not an image."""
    root = tmp_path_factory.mktemp("colours")
    for name, rgb in COLOURS.items():
        folder = root / "val" / name
        folder.mkdir(parents=True)
        for i in range(40):
            (folder / f"{i}.png").write_bytes(flat_png(rgb, (16 + i % 7, 12 + i % 5)))
    (root / "val" / "red" / "broken.png").write_bytes(b"not a png")
    (root / "val" / ".hidden.png").write_bytes(flat_png((1, 2, 3)))
    return root


@pytest.fixture(scope="module")
def profile(colour_bundle: Bundle, colours: Path) -> Profile:
    session = InferenceSession.open(colour_bundle.path)
    paths = image_files(colours, "val")
    options = ProfileOptions(batch_size=16, cap=150)
    return build_profile(session, paths, root=colours, about={"model": "m"}, options=options)


def test_image_files_takes_the_split_folder_and_skips_hidden_files(colours: Path) -> None:
    paths = image_files(colours, "val")
    assert len(paths) == 201
    assert image_files(colours, "no-such-split") == paths
    assert all(not p.name.startswith(".") for p in paths)


def test_a_profile_holds_image_and_prediction_statistics(profile: Profile) -> None:
    sample = profile.sample
    assert sample.images == 200  # the unreadable file is counted apart
    assert profile.meta["unreadable"] == 1
    assert profile.meta["model"] == "m"
    assert profile.meta["task"] == "classification"
    assert profile.meta["data_digest"].startswith("sha256:")
    assert {"brightness_r", "contrast", "sharpness", "confidence", "margin", "entropy"} <= set(
        sample.continuous
    )
    assert sample.categorical["class"] == dict.fromkeys(COLOURS, 40)  # the model is right
    assert sample.categorical["encoding"] == {"png": 200}
    assert len(sample.continuous["width"]) == 150  # capped (reservoir)
    assert sample.embeddings is None


def test_a_saved_profile_loads_back_the_same(profile: Profile, tmp_path: Path) -> None:
    digest = save_profile(profile, tmp_path)
    loaded = load_profile(tmp_path, digest)
    assert loaded.images == profile.images
    assert loaded.meta["data_digest"] == profile.meta["data_digest"]
    assert loaded.sample.categorical == profile.sample.categorical
    for name, values in profile.sample.continuous.items():
        assert np.array_equal(loaded.sample.continuous[name], values)
    assert compare(loaded.sample, profile.sample).verdict == "ok"
    body = json.loads((tmp_path / PROFILE_JSON).read_text())
    assert body["summary"]["brightness_r"]["n"] == 150


def test_a_tampered_npz_is_refused(profile: Profile, tmp_path: Path) -> None:
    digest = save_profile(profile, tmp_path)
    with np.load(tmp_path / PROFILE_NPZ, allow_pickle=False) as arrays:
        values = {k: np.asarray(arrays[k]) for k in arrays.files}
    values["continuous.brightness_r"] = values["continuous.brightness_r"] * 0.5
    np.savez_compressed(tmp_path / PROFILE_NPZ, **values)  # type: ignore[arg-type]
    with pytest.raises(BundleIntegrityError, match="profile.npz does not match"):
        load_profile(tmp_path, digest)


def test_a_truncated_json_is_refused(profile: Profile, tmp_path: Path) -> None:
    digest = save_profile(profile, tmp_path)
    text = (tmp_path / PROFILE_JSON).read_bytes()
    (tmp_path / PROFILE_JSON).write_bytes(text[: len(text) // 2])
    with pytest.raises(BundleIntegrityError, match="changed or truncated"):
        load_profile(tmp_path, digest)
    with pytest.raises(BundleIntegrityError, match="not valid JSON"):
        load_profile(tmp_path)  # without a recorded digest, still no half a profile


def test_the_npz_holds_no_pickle(profile: Profile, tmp_path: Path) -> None:
    save_profile(profile, tmp_path)
    with np.load(tmp_path / PROFILE_NPZ, allow_pickle=False) as arrays:
        assert all(arrays[k].dtype != object for k in arrays.files)


def test_darker_images_drift_on_brightness(
    colour_bundle: Bundle, profile: Profile, colours: Path, tmp_path: Path
) -> None:
    session = InferenceSession.open(colour_bundle.path)
    for path in image_files(colours, "val")[:100]:
        try:
            image = Image.open(path).convert("RGB")
        except OSError:
            continue
        dark = Image.eval(image, lambda v: int(v * 0.6))
        dark.save(tmp_path / f"{path.parent.name}-{path.name}")
    window = build_profile(session, image_files(tmp_path), root=tmp_path).sample
    result = compare(profile.sample, window)
    assert result.verdict == "drift"
    assert "brightness_r" in result.drifting
