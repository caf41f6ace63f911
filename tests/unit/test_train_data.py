"""Training data: splits, one decode, seeded augmentation, and the eval transform = contract."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from visionyard.contract.preprocess import preprocess_batch
from visionyard.data.imagefolder import read_imagefolder
from visionyard.errors import DatasetError
from visionyard.train.config import Augmentation, make_config
from visionyard.train.data import (
    augment_image,
    eval_tensor,
    load_images,
    split_dataset,
    train_batches,
)

MAX_PIXELS = 1_000_000


@pytest.fixture(scope="module")
def flat_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """root/<class>/*.png without split folders: 5 images per class, 3 classes."""
    root = tmp_path_factory.mktemp("flat")
    rng = np.random.default_rng(0)
    for name in ("a", "b", "c"):
        (root / name).mkdir()
        for i in range(5):
            pixels = rng.integers(0, 255, (20, 30, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return root


def test_uses_the_datasets_val_split(synth_classification: Path) -> None:
    split = split_dataset(read_imagefolder(synth_classification), 0.5, seed=0)
    assert split.how == "dataset"
    assert {s.split for s in split.train} == {"train"}
    assert {s.split for s in split.val} == {"val"}


def test_holds_out_a_stratified_fraction_without_a_val_split(flat_dataset: Path) -> None:
    dataset = read_imagefolder(flat_dataset)
    split = split_dataset(dataset, 0.4, seed=1)
    assert split.how == "random 0.4"
    assert sorted(s.label for s in split.val) == [0, 0, 1, 1, 2, 2]
    assert not {s.relpath for s in split.train} & {s.relpath for s in split.val}
    assert len(split.train) + len(split.val) == len(dataset)
    assert split == split_dataset(dataset, 0.4, seed=1)
    assert split != split_dataset(dataset, 0.4, seed=2)


def test_a_val_split_without_train_is_refused(tmp_path: Path, flat_dataset: Path) -> None:
    (tmp_path / "val").mkdir()
    (tmp_path / "val" / "a").symlink_to(flat_dataset / "a")
    with pytest.raises(DatasetError, match="no train split"):
        split_dataset(read_imagefolder(tmp_path), 0.2, seed=0)


def test_eval_transform_is_exactly_the_contract_preprocessing(synth_classification: Path) -> None:
    """The trainer's validation tensors are the bytes the server would feed the model."""
    dataset = read_imagefolder(synth_classification)
    config = make_config(data=synth_classification, input_size=(40, 48), resize="center_crop")
    contract = config.contract(dataset.classes)
    val = split_dataset(dataset, 0.2, seed=0).val
    ours = eval_tensor(load_images(val, contract, MAX_PIXELS).images, contract)
    served = preprocess_batch([s.path for s in val], contract).tensor
    assert ours.dtype == served.dtype == np.float32
    assert ours.shape == (len(val), 3, 40, 48)
    np.testing.assert_array_equal(ours, served)


def test_augmentation_is_seeded_and_keeps_the_size(synth_classification: Path) -> None:
    image = Image.open(next(synth_classification.glob("train/*/*.png"))).convert("RGB")
    augment = Augmentation()
    first = augment_image(image, augment, np.random.default_rng(5))
    again = augment_image(image, augment, np.random.default_rng(5))
    other = augment_image(image, augment, np.random.default_rng(6))
    assert first.size == image.size
    assert np.array_equal(np.asarray(first), np.asarray(again))
    assert not np.array_equal(np.asarray(first), np.asarray(other))
    assert not np.array_equal(np.asarray(first), np.asarray(image))


def test_disabled_augmentation_returns_the_image(synth_classification: Path) -> None:
    image = Image.open(next(synth_classification.glob("train/*/*.png"))).convert("RGB")
    rng = np.random.default_rng(0)
    assert augment_image(image, Augmentation(enabled=False), rng) is image


def test_train_batches_cover_every_image_once_in_seeded_order(
    synth_classification: Path,
) -> None:
    dataset = read_imagefolder(synth_classification)
    config = make_config(data=synth_classification, input_size=(32, 32))
    contract = config.contract(dataset.classes)
    train = load_images(split_dataset(dataset, 0.2, 0).train, contract, MAX_PIXELS)

    def epoch(seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
        rng = np.random.default_rng(seed)
        return list(train_batches(train, contract, config.augment, 10, rng))

    batches = epoch(1)
    assert [len(y) for _, y in batches] == [10, 10, 4]
    assert sorted(np.concatenate([y for _, y in batches]).tolist()) == sorted(train.labels.tolist())
    assert all(x.shape[1:] == (3, 32, 32) for x, _ in batches)
    again = epoch(1)
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(batches, again, strict=True))
    assert not np.array_equal(batches[0][0], epoch(2)[0][0])


def test_a_training_run_decodes_each_image_once(
    synth_classification: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from PIL import ImageFile

    from visionyard.contract.preprocess import decode_for_contract
    from visionyard.data.manifest import build_manifest
    from visionyard.train.trainer import prepare_data

    decodes: list[str] = []
    real_load = ImageFile.ImageFile.load

    def counting_load(image: ImageFile.ImageFile) -> object:
        if image.tile:  # pixels not decoded yet
            decodes.append(str(image.size))
        return real_load(image)

    monkeypatch.setattr(ImageFile.ImageFile, "load", counting_load)
    data = prepare_data(make_config(data=synth_classification, seed=0))
    monkeypatch.setattr(ImageFile.ImageFile, "load", real_load)
    assert len(decodes) == len(data.manifest) == len(data.train) + len(data.val) == 36
    assert data.manifest.digest == build_manifest(synth_classification).digest
    first = synth_classification / data.val.sources[0]
    expected = np.asarray(decode_for_contract(first, data.contract, MAX_PIXELS))
    np.testing.assert_array_equal(np.asarray(data.val.images[0]), expected)
