"""Units of ``visionyard import``: contract presets, the layered contract, labels (files,
metadata, duplicates, dedupe) and the reference-range check."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from visionyard.cli.import_model import contract_flags
from visionyard.contract.presets import PRESETS, get_preset
from visionyard.errors import ConfigError, ContractError
from visionyard.importer.checks import reference_stats
from visionyard.importer.contract_spec import ContractSpec, build_contract, parse_set
from visionyard.importer.labels import (
    check_unique,
    dedupe,
    labels_from_metadata,
    read_labels_file,
)
from visionyard.runtime.signature import TensorMeta

# --- presets ----------------------------------------------------------------------------------


def test_presets_state_their_numbers() -> None:
    imagenet = get_preset("imagenet").contract().preprocessing
    assert (imagenet.input_size.height, imagenet.resize, imagenet.resize_shorter) == (
        224,
        "center_crop",
        256,
    )
    assert imagenet.mean == pytest.approx((0.485, 0.456, 0.406))
    assert imagenet.std == pytest.approx((0.229, 0.224, 0.225))
    inception = get_preset("inception").contract().preprocessing
    assert (inception.input_size.height, inception.mean, inception.std) == (
        299,
        (0.5, 0.5, 0.5),
        (0.5, 0.5, 0.5),
    )
    tflite = get_preset("tflite").contract().preprocessing
    assert (tflite.scale, tflite.mean, tflite.std) == (1.0, (127, 127, 127), (128, 128, 128))
    yolo = get_preset("yolo").contract()
    assert yolo.task == "detection"
    assert (yolo.preprocessing.resize, yolo.preprocessing.pad_value) == ("letterbox", 114)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset_range_is_what_it_says(name: str) -> None:
    """0 and 255 pixels map to the documented ends: [-1, 1] for inception, ~[-1, 1] for tflite."""
    pre = get_preset(name).contract().preprocessing
    low = [(0 * pre.scale - m) / s for m, s in zip(pre.mean, pre.std, strict=True)]
    high = [(255 * pre.scale - m) / s for m, s in zip(pre.mean, pre.std, strict=True)]
    expected = {
        "inception": (-1.0, 1.0),
        "tflite": (-127 / 128, 1.0),
        "yolo": (0.0, 1.0),
        "imagenet": (-2.1179, 2.64),
    }[name]
    assert min(low) == pytest.approx(expected[0], abs=1e-3)
    assert max(high) == pytest.approx(expected[1], abs=1e-3)


def test_unknown_preset_is_one_error_listing_them() -> None:
    with pytest.raises(ConfigError) as caught:
        get_preset("resnet")
    for name in PRESETS:
        assert f"{name} (" in str(caught.value)


# --- the layered contract ------------------------------------------------------------------


def test_flags_override_the_preset_and_the_shorter_side_follows() -> None:
    flags = dict.fromkeys(
        ("task", "resize", "resize_shorter", "color_order", "layout", "input_name", "output",
         "scores"),
    )  # fmt: skip
    given = {"input_size": "192", "mean": "0.5", "std": "0.25,0.5,1", "scale": "1/255"}
    spec = ContractSpec(preset="imagenet", overrides=contract_flags({**flags, **given}))
    contract = build_contract(spec, {})
    pre = contract.preprocessing
    assert (pre.input_size.height, pre.resize_shorter) == (192, 219)  # 192 * 256 / 224
    assert pre.mean == (0.5, 0.5, 0.5)
    assert pre.std == (0.25, 0.5, 1.0)


def test_the_model_fixes_names_dtype_layout_and_size_over_a_preset() -> None:
    facts = {
        "input_name": "images",
        "preprocessing": {"layout": "NHWC", "dtype": "float32", "input_size": {"height": 96,
                                                                              "width": 96}},
    }  # fmt: skip
    outputs = [TensorMeta("probs", ("N", 10), "float32")]
    contract = build_contract(ContractSpec(preset="inception"), facts, outputs)
    assert contract.input_name == "images"
    assert contract.preprocessing.layout == "NHWC"
    assert contract.preprocessing.input_size.height == 96
    assert contract.decoding.kind == "classification"
    assert contract.output_names == ["probs"]


def test_a_contract_file_is_explicit_the_model_does_not_override_it(tmp_path: Path) -> None:
    file = tmp_path / "c.json"
    file.write_text(get_preset("imagenet").contract(("x",)).to_json(), encoding="utf-8")
    facts = {"input_name": "images"}
    contract = build_contract(ContractSpec(file=file), facts)
    assert contract.input_name == "input"


def test_set_reaches_any_field_and_bad_values_name_the_field() -> None:
    spec = ContractSpec(preset="yolo", overrides=parse_set(["decoding.score_threshold=0.5"]))
    assert build_contract(spec, {}).decoding.score_threshold == 0.5
    bad = ContractSpec(preset="yolo", overrides=parse_set(["preprocessing.pad_value=300"]))
    with pytest.raises(ContractError, match=r"preprocessing\.pad_value"):
        build_contract(bad, {})
    with pytest.raises(ConfigError, match="FIELD=VALUE"):
        parse_set(["nonsense"])


def test_without_a_preset_the_input_size_must_come_from_somewhere() -> None:
    with pytest.raises(ConfigError, match="--input-size"):
        build_contract(ContractSpec(), {})


def test_preset_and_contract_file_together_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not both"):
        build_contract(ContractSpec(preset="imagenet", file=tmp_path / "c.json"), {})


# --- labels ---------------------------------------------------------------------------------


def test_labels_from_text_json_list_and_index_map(tmp_path: Path) -> None:
    text = tmp_path / "l.txt"
    text.write_text("cat\n\n dog \nbird\n", encoding="utf-8")
    assert read_labels_file(text) == ("cat", "dog", "bird")
    listed = tmp_path / "l.json"
    listed.write_text(json.dumps(["a", "b"]), encoding="utf-8")
    assert read_labels_file(listed) == ("a", "b")
    mapped = tmp_path / "m.json"
    mapped.write_text(json.dumps({"1": "b", "0": "a"}), encoding="utf-8")
    assert read_labels_file(mapped) == ("a", "b")
    gap = tmp_path / "gap.json"
    gap.write_text(json.dumps({"0": "a", "2": "c"}), encoding="utf-8")
    with pytest.raises(ConfigError, match="must run 0..1"):
        read_labels_file(gap)
    empty = tmp_path / "empty.txt"
    empty.write_text("\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="no labels"):
        read_labels_file(empty)


def test_labels_from_model_metadata() -> None:
    found = labels_from_metadata({"labels": '["x", "y"]'}, "m.onnx")
    assert found is not None
    assert (found.names, found.source) == (("x", "y"), "metadata:labels")
    ultralytics = labels_from_metadata({"names": "{0: 'person', 1: 'bicycle'}"}, "m.onnx")
    assert ultralytics is not None
    assert ultralytics.names == ("person", "bicycle")
    assert labels_from_metadata({"author": "me"}, "m.onnx") is None
    with pytest.raises(ConfigError, match="neither JSON"):
        labels_from_metadata({"labels": "{not python"}, "m.onnx")


def test_duplicates_are_named_and_dedupe_suffixes_them() -> None:
    with pytest.raises(ContractError) as caught:
        check_unique(["a", "b", "a", "c", "b"])
    message = str(caught.value)
    assert "'a' at 0, 2" in message
    assert "'b' at 1, 4" in message
    assert "--dedupe-labels" in message
    assert dedupe(["a", "b", "a", "a"]) == ("a", "b", "a_2", "a_3")
    assert dedupe(["a", "a_2", "a"]) == ("a", "a_2", "a_3")  # an existing a_2 is skipped
    check_unique(dedupe(["x", "x", "x_2", "x"]))


# --- the reference-range check ---------------------------------------------------------------


def _images(tmp_path: Path) -> list[Path]:
    rng = np.random.default_rng(0)
    paths = []
    for i in range(4):
        path = tmp_path / f"{i}.png"
        Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def test_reference_images_in_range_give_no_warning(tmp_path: Path) -> None:
    stats = reference_stats(get_preset("imagenet").contract(), _images(tmp_path))
    assert stats.warnings == ()
    assert all(abs(m) < 1 for m in stats.mean)
    assert stats.metrics()["reference_images"] == 4


def test_unscaled_pixels_and_wrong_standardisation_are_warned(tmp_path: Path) -> None:
    images = _images(tmp_path)
    unscaled = build_contract(
        ContractSpec(preset="yolo", overrides={"preprocessing": {"scale": 1.0}}), {}
    )
    assert any("scale" in w for w in reference_stats(unscaled, images).warnings)
    wrong = build_contract(
        ContractSpec(preset="imagenet", overrides={"preprocessing": {"mean": [5, 5, 5]}}), {}
    )
    assert any("standardises" in w for w in reference_stats(wrong, images).warnings)
