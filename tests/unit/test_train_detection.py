"""Detection training parts: targets and decoding agree, boxes follow the augmentation, the
configuration fits the task, the split holds out images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from visionyard.data.manifest import read_dataset
from visionyard.errors import ConfigError
from visionyard.train.config import Augmentation, make_config
from visionyard.train.detection.data import augment_boxes, split_images
from visionyard.train.detection.model import STRIDE, build_detector, decode
from visionyard.train.detection.targets import build_targets, losses


def _maps_from_targets(heat: torch.Tensor, size: torch.Tensor, offset: torch.Tensor) -> tuple[
    torch.Tensor, torch.Tensor, torch.Tensor
]:  # fmt: skip
    """The raw maps a perfect model would output for these targets (logits, log size, offset
    logits)."""
    logits = torch.where(heat >= 1.0, torch.tensor(9.0), torch.tensor(-9.0))
    centre = offset.clamp(1e-4, 1 - 1e-4)
    return logits, size, torch.log(centre / (1 - centre))


def test_decoding_the_targets_gives_back_the_boxes() -> None:
    boxes = [np.array([[10.0, 12.0, 30.0, 20.0], [40.0, 36.0, 62.0, 63.0]])]
    labels = [np.array([2, 0])]
    targets = build_targets(boxes, labels, 3, (64, 64))
    assert targets.objects == 2
    assert targets.heat.shape == (1, 3, 64 // STRIDE, 64 // STRIDE)
    assert float(targets.heat[0, 2].max()) == 1.0
    assert float(targets.heat[0, 1].max()) == 0.0
    found_boxes, scores = decode(*_maps_from_targets(targets.heat, targets.size, targets.offset))
    kept = scores[0].max(dim=1).values > 0.5
    got = found_boxes[0][kept].numpy()
    classes = scores[0][kept].argmax(dim=1).tolist()
    order = np.argsort(got[:, 0])
    np.testing.assert_allclose(got[order], boxes[0], atol=1e-3)
    assert [classes[i] for i in order] == [2, 0]


def test_the_loss_is_lower_for_the_right_maps_and_counts_per_object() -> None:
    boxes = [np.array([[8.0, 8.0, 24.0, 24.0]]), np.zeros((0, 4))]
    labels = [np.array([1]), np.zeros(0, np.int64)]
    targets = build_targets(boxes, labels, 2, (32, 32))
    right = losses(*_maps_from_targets(targets.heat, targets.size, targets.offset), targets)
    zeros = torch.zeros_like(targets.heat), torch.zeros_like(targets.size)
    wrong = losses(zeros[0], zeros[1], torch.zeros_like(targets.offset), targets)
    assert float(right["loss"]) < 0.1 * float(wrong["loss"])
    halves = [losses(*(m[i : i + 1] for m in zeros), torch.zeros_like(targets.offset)[i : i + 1],
                     targets.chunk(i, i + 1))["loss"] for i in range(2)]  # fmt: skip
    assert float(sum(halves)) == pytest.approx(float(wrong["loss"]), rel=1e-5)


def _white_box_image(box: tuple[int, int, int, int]) -> Image.Image:
    pixels = np.zeros((48, 64, 3), np.uint8)
    x0, y0, x1, y1 = box
    pixels[y0:y1, x0:x1] = 255
    return Image.fromarray(pixels)


@pytest.mark.parametrize("seed", range(6))
def test_boxes_follow_flips_shifts_and_scaling(seed: int) -> None:
    box = (10, 8, 30, 20)
    augment = Augmentation(
        hflip=True, vflip=True, translate=0.1, scale=(0.8, 1.2), brightness=0, contrast=0,
        saturation=0,
    )  # fmt: skip
    rng = np.random.default_rng(seed)
    image, boxes, labels = augment_boxes(
        _white_box_image(box), np.array([box], np.float64), np.array([3]), augment, rng
    )
    bright = np.argwhere(np.asarray(image)[..., 0] > 127)
    (y0, x0), (y1, x1) = bright.min(axis=0), bright.max(axis=0) + 1
    assert labels.tolist() == [3]
    np.testing.assert_allclose(boxes[0], [x0, y0, x1, y1], atol=1.5)


def test_a_box_shifted_out_of_the_image_is_dropped() -> None:
    augment = Augmentation(hflip=False, translate=0.5, scale=(1.0, 1.0), brightness=0,
                           contrast=0, saturation=0)  # fmt: skip
    dropped = 0
    for seed in range(20):
        rng = np.random.default_rng(seed)
        _, boxes, labels = augment_boxes(
            _white_box_image((0, 0, 4, 4)), np.array([[0.0, 0.0, 4.0, 4.0]]), np.array([1]),
            augment, rng,
        )  # fmt: skip
        assert len(boxes) == len(labels)
        dropped += len(boxes) == 0
        if len(boxes):
            assert (boxes[0, 2:] - boxes[0, :2] >= 2).all()
    assert dropped > 0


def test_a_detection_config_monitors_map_and_letterboxes(tmp_path: Path) -> None:
    config = make_config(data=tmp_path, task="detection")
    assert (config.monitor, config.resize) == ("val_map_50_95", "letterbox")
    contract = config.contract(["a", "b"])
    assert contract.task == "detection"
    assert contract.decoding.score_threshold == 0.2  # type: ignore[union-attr]
    with pytest.raises(ConfigError, match="a detection run monitors val_map_50_95 or val_map_50"):
        make_config(data=tmp_path, task="detection", monitor="val_accuracy")
    with pytest.raises(ConfigError, match="a classification run monitors"):
        make_config(data=tmp_path, monitor="val_map_50")
    assert make_config(data=tmp_path).monitor == "val_accuracy"


@pytest.mark.parametrize("arch", ["small_cnn", "resnet18", "mobilenet_v2"])
def test_a_detector_on_each_backbone_answers_at_stride_4(arch: str) -> None:
    model = build_detector(arch, 3, 0.25, (64, 96)).eval()
    heat, size, offset = model(torch.zeros(2, 3, 64, 96))
    assert heat.shape == (2, 3, 16, 24)
    assert size.shape == offset.shape == (2, 2, 16, 24)
    boxes, scores = decode(heat, size, offset)
    assert boxes.shape == (2, 16 * 24, 4)
    assert scores.shape == (2, 16 * 24, 3)


def test_an_input_size_off_the_stride_grid_is_refused() -> None:
    with pytest.raises(ConfigError, match="multiple of 16, got 60x64"):
        build_detector("small_cnn", 2, 0.25, (60, 64))


def test_the_split_holds_out_images_by_seed(synth_detection: Path) -> None:
    dataset = read_dataset(synth_detection)
    train, val = split_images(dataset, 0.25, seed=3)
    assert len(val) == 2
    assert len(train) == len(dataset) - 2
    assert not {i.id for i in train} & {i.id for i in val}
    assert split_images(dataset, 0.25, seed=3) == (train, val)
    assert split_images(dataset, 0.99, seed=3)[0]  # at least one image trains


def test_an_image_without_objects_trains_as_background(
    synth_detection: Path, tmp_path: Path
) -> None:
    import json
    import shutil

    from visionyard.train.detection.data import read_box_data

    data = shutil.copytree(synth_detection, tmp_path / "coco")
    coco = json.loads((data / "annotations.json").read_text())
    coco["annotations"] = [a for a in coco["annotations"] if a["image_id"] != 1]
    (data / "annotations.json").write_text(json.dumps(coco))
    dataset = read_dataset(data)
    contract = make_config(data=data, task="detection").contract(dataset.labels)
    images = list(dataset.images)  # type: ignore[union-attr]
    _, train, _ = read_box_data(dataset, images[:3], images[3:], contract, 10**7)  # type: ignore[arg-type]
    assert train.boxes[0].shape == (0, 4)
    assert train.labels[0].shape == (0,)
    targets = build_targets(train.boxes, train.labels, 4, (64, 64))
    assert float(targets.heat[0].max()) == 0.0
    assert targets.objects == sum(len(b) for b in train.boxes[1:])
    assert [t.objects for t in train.truth()[:1]] == [()]


def test_an_exif_turned_set_annotated_in_displayed_pixels_trains_on_its_boxes(
    tmp_path: Path,
) -> None:
    from tests.fixtures.datasets import EXIF_DISPLAYED, exif_coco_set
    from visionyard.contract.preprocess import decode_for_contract
    from visionyard.train.detection.data import read_box_data

    data = exif_coco_set(tmp_path / "coco")
    dataset = read_dataset(data)
    contract = make_config(data=data, task="detection").contract(dataset.labels)
    images = list(dataset.images)  # type: ignore[union-attr]
    _, train, val = read_box_data(dataset, images[:1], images[1:], contract, 10**7)  # type: ignore[arg-type]
    for box_set in (train, val):
        (image,), (boxes,) = box_set.images, box_set.boxes
        assert image.size == EXIF_DISPLAYED
        x0, y0, x1, y1 = boxes[0].astype(int)
        pixels = np.asarray(image)[..., 0].astype(int)
        assert pixels[y0 + 1 : y1 - 1, x0 + 1 : x1 - 1].min() > 200  # the box is on the object
        outside = pixels.copy()
        outside[y0 - 1 : y1 + 1, x0 - 1 : x1 + 1] = 0
        assert outside.max() < 60  # and nothing bright lies outside it
        # evaluation and serving decode the same way (the contract's decoder, EXIF applied)
        served = decode_for_contract(box_set.coco[0].path, contract)
        assert np.array_equal(np.asarray(served), np.asarray(image))


def _keep_annotations(source: Path, target: Path, keep: set[int] | None) -> Path:
    """A copy of a COCO folder holding only the annotations of images ``keep`` (None: all)."""
    import json
    import shutil

    data = shutil.copytree(source, target)
    coco = json.loads((data / "annotations.json").read_text())
    coco["annotations"] = [a for a in coco["annotations"] if keep is None or a["image_id"] in keep]
    (data / "annotations.json").write_text(json.dumps(coco))
    return data


def test_a_validation_split_without_objects_is_refused_naming_the_split(
    synth_detection: Path, tmp_path: Path
) -> None:
    import json

    from visionyard.errors import DatasetError
    from visionyard.train.detection.trainer import prepare_box_data

    config = make_config(data=synth_detection, task="detection", val_fraction=0.25, seed=0)
    _, val = split_images(read_dataset(synth_detection), 0.25, 0)  # type: ignore[arg-type]
    held = {i.id for i in val}
    train_only = _keep_annotations(synth_detection, tmp_path / "sparse", {1, 2, 3, 4} - held)
    with pytest.raises(DatasetError, match=r"^the validation split \(2 images\) holds no objects: "
                       "annotate more images or change --val-fraction$"):  # fmt: skip
        prepare_box_data(config.model_copy(update={"data": train_only}))
    empty = _keep_annotations(synth_detection, tmp_path / "empty", set())
    with pytest.raises(DatasetError, match=r"^the dataset has no annotations$"):
        prepare_box_data(config.model_copy(update={"data": empty}))
    crowd = _keep_annotations(synth_detection, tmp_path / "crowd", None)
    coco = json.loads((crowd / "annotations.json").read_text())
    for ann in coco["annotations"]:
        ann["iscrowd"] = 1
    (crowd / "annotations.json").write_text(json.dumps(coco))
    with pytest.raises(DatasetError, match=r"^the dataset has only crowd regions \(iscrowd\)"):
        prepare_box_data(config.model_copy(update={"data": crowd}))


def test_validation_truth_ignores_crowd_boxes_as_evaluate_does(
    synth_detection: Path, tmp_path: Path
) -> None:
    import json

    from visionyard.contract.postprocess import Detection
    from visionyard.evaluate.detection import detection_report, truth_from_coco
    from visionyard.train.detection.data import read_box_data

    data = _keep_annotations(synth_detection, tmp_path / "crowd", None)
    coco = json.loads((data / "annotations.json").read_text())
    coco["annotations"][0]["iscrowd"] = 1
    (data / "annotations.json").write_text(json.dumps(coco))
    dataset = read_dataset(data)
    labels = list(dataset.labels)
    contract = make_config(data=data, task="detection").contract(labels)
    images = list(dataset.images)  # type: ignore[union-attr]
    _, _, val = read_box_data(dataset, images[:1], images, contract, 10**7)  # type: ignore[arg-type]
    found = [
        [Detection((x, y, x + w, y + h), 0.9, a.label, labels[a.label])
         for a in dataset.annotations_for(image.id) if not a.iscrowd  # type: ignore[union-attr]
         for x, y, w, h in [a.bbox]]
        for image in images
    ]  # fmt: skip
    evaluated = detection_report(truth_from_coco(dataset, labels), found, labels)  # type: ignore[arg-type]
    trained = detection_report(val.truth(), found, labels)
    assert trained.object_count == evaluated.object_count == len(coco["annotations"]) - 1
    assert (trained.map_50_95, trained.map_50) == (evaluated.map_50_95, evaluated.map_50) == (1, 1)
