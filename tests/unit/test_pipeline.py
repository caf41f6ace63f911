"""The pipeline spec, the crop geometry and the in-process runner on tiny known models."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from tests.fixtures.runtime import COLOURS
from tests.pipeline_support import scene
from visionyard.bundle.store import Bundle, load_bundle
from visionyard.errors import BundleError, ConfigError
from visionyard.pipeline.registry import revision, write_pipeline_bundle
from visionyard.pipeline.runner import PipelineRunner, crop_box, pipeline_contract
from visionyard.pipeline.spec import CropSpec, PipelineSpec, Stage, parse_pinned, parse_spec
from visionyard.runtime.session import InferenceSession
from visionyard.serving.pipeline_model import stage_parameters

BASE = {"pipeline": 1, "detector": "det@production", "classifier": "cls/3"}


def _spec(**changes: object) -> PipelineSpec:
    return parse_spec({**BASE, **changes})


def test_spec_defaults_and_stage_references() -> None:
    spec = _spec()
    assert spec.crop == CropSpec(padding=0.1, min_size=4)
    assert (spec.min_score, spec.max_crops) == (0.0, 32)
    assert spec.stage("detector") == Stage("detector", "det", alias="production")
    assert spec.stage("classifier") == Stage("classifier", "cls", version="3")
    assert [s.reference for s in spec.stages()] == ["det@production", "cls/3"]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"colour": "red"}, "colour: unknown field"),
        ({"crop": {"padding": 0.1, "pad": 2}}, "crop.pad: unknown field"),
        ({"crop": {"min_size": 0}}, "crop.min_size: Input should be greater than or equal to 1"),
        ({"max_crops": 0}, "max_crops:"),
        ({"min_score": 1.5}, "min_score:"),
        ({"pipeline": 2}, "pipeline:"),
        ({"detector": "det"}, "detector: 'det' is not a registry reference"),
        ({"classifier": "cls/latest"}, "classifier: 'cls/latest' is not a registry reference"),
    ],
)
def test_spec_refusals_name_the_field(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_spec({**BASE, **changes}, "spec p.yaml")
    assert str(info.value).startswith("spec p.yaml: ")
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_spec_missing_stage_and_non_mapping() -> None:
    with pytest.raises(ConfigError, match="classifier: required field missing"):
        parse_spec({"pipeline": 1, "detector": "d/1"})
    with pytest.raises(ConfigError, match="must be a mapping"):
        parse_spec(["pipeline", 1])


def test_pinned_spec_round_trips_through_yaml() -> None:
    import yaml

    data = {**BASE, "pinned": {"detector": "det/2", "classifier": "cls/3"}}
    pinned = parse_pinned(data)
    again = parse_pinned(yaml.safe_load(pinned.to_yaml()))
    assert again == pinned
    assert again.pinned_stage("detector") == Stage("detector", "det", version="2")
    with pytest.raises(ConfigError, match="pinned: required field missing"):
        parse_pinned(BASE)


@pytest.mark.parametrize(
    ("box", "crop", "size", "expected"),
    [
        ((10.0, 10.0, 30.0, 20.0), CropSpec(padding=0.0, min_size=1), (64, 64), (10, 10, 30, 20)),
        ((10.0, 10.0, 30.0, 20.0), CropSpec(padding=0.1, min_size=1), (64, 64), (8, 9, 32, 21)),
        ((10.2, 10.7, 29.5, 19.1), CropSpec(padding=0.0, min_size=1), (64, 64), (10, 10, 30, 20)),
        ((0.0, 2.0, 20.0, 62.0), CropSpec(padding=0.5, min_size=1), (64, 64), (0, 0, 30, 64)),
        ((50.0, 50.0, 64.0, 64.0), CropSpec(padding=0.5, min_size=1), (60, 58), (43, 43, 60, 58)),
        ((5.0, 5.0, 8.0, 30.0), CropSpec(padding=0.0, min_size=4), (64, 64), None),
        ((5.0, 5.0, 8.0, 30.0), CropSpec(padding=0.2, min_size=4), (64, 64), (4, 0, 9, 35)),
        ((70.0, 70.0, 80.0, 80.0), CropSpec(padding=0.1, min_size=1), (64, 64), None),
    ],
    ids=["exact", "padded", "rounded-outwards", "clipped-left-top", "clipped-right-bottom",
         "tiny", "tiny-grown-by-padding", "outside"],
)  # fmt: skip
def test_crop_box_geometry(
    box: tuple[float, float, float, float],
    crop: CropSpec,
    size: tuple[int, int],
    expected: tuple[int, int, int, int] | None,
) -> None:
    assert crop_box(box, *size, crop) == expected


@pytest.fixture(scope="module")
def sessions(
    detector_bundle: Bundle, colour_bundle: Bundle
) -> tuple[InferenceSession, InferenceSession]:
    return InferenceSession.open(detector_bundle.path), InferenceSession.open(colour_bundle.path)


def _runner(sessions: tuple[InferenceSession, InferenceSession], **spec: object) -> PipelineRunner:
    return PipelineRunner(_spec(**spec), *sessions, {"detector": "d/1", "classifier": "c/2"})


def test_each_crop_is_classified_by_its_own_pixels(
    sessions: tuple[InferenceSession, InferenceSession],
) -> None:
    runner = _runner(sessions)
    results = runner.detect([scene("red", "blue"), scene("white", "green")])
    assert [[d.label for d in row] for row in results] == [["red", "blue"], ["white", "green"]]
    first = results[0][0]
    assert first.box == pytest.approx((8, 8, 24, 24), abs=1e-3)  # the detector's, in pixels
    assert (first.detector.label, first.detector.score) == ("cat", pytest.approx(0.9))
    assert first.score == pytest.approx(0.9 * first.classifier.score)
    assert first.index == list(COLOURS).index("red")


def test_boxes_follow_the_original_image_size(
    sessions: tuple[InferenceSession, InferenceSession],
) -> None:
    (row,) = _runner(sessions).detect([scene("black", "red", size=128)])
    assert [d.label for d in row] == ["black", "red"]
    assert row[1].box == pytest.approx((64, 64, 112, 120), abs=1e-3)


def test_min_score_max_crops_and_min_size_drop_boxes(
    sessions: tuple[InferenceSession, InferenceSession],
) -> None:
    image = scene("red", "blue")
    assert [d.label for d in _runner(sessions, min_score=0.85).detect([image])[0]] == ["red"]
    assert [d.label for d in _runner(sessions, max_crops=1).detect([image])[0]] == ["red"]
    only_big = _runner(sessions, crop={"padding": 0.0, "min_size": 20}).detect([image])[0]
    assert [d.label for d in only_big] == ["blue"]  # 16 px box dropped, 24x28 kept
    assert _runner(sessions).detect([]) == []


def test_a_pil_image_is_taken_as_it_is(
    sessions: tuple[InferenceSession, InferenceSession],
) -> None:
    image = Image.new("RGB", (64, 64), COLOURS["green"])
    (row,) = _runner(sessions).detect([image])
    assert [d.label for d in row] == ["green", "green"]


def test_pipeline_contract_and_bundle_without_a_model(
    sessions: tuple[InferenceSession, InferenceSession], tmp_path: Path
) -> None:
    detector, classifier = sessions
    contract = pipeline_contract(detector.contract, classifier.contract)
    assert contract.task == "detection"
    assert contract.labels == classifier.contract.labels
    assert contract.preprocessing == detector.contract.preprocessing
    pinned = parse_pinned({**BASE, "pinned": {"detector": "det/2", "classifier": "cls/3"}})
    bundle = load_bundle(write_pipeline_bundle(tmp_path / "p", pinned, contract).path)
    assert bundle.variants == {}
    assert sorted(bundle.files) == ["contract.json", "pipeline.yaml"]
    with pytest.raises(BundleError, match="has no model of its own"):
        bundle.model_path()
    (tmp_path / "p" / "pipeline.yaml").write_text("pipeline: 1\n", encoding="utf-8")
    with pytest.raises(BundleError):
        load_bundle(tmp_path / "p")  # the spec is covered by the manifest like any file


def test_revision_and_response_parameters() -> None:
    assert revision("3", {"classifier": "c/1", "detector": "d/2"}) == "3+d/2+c/1"
    assert stage_parameters({"detector": "d/2", "classifier": "c/1"}) == {
        "classifier": "c/1", "classifier_version": "1", "detector": "d/2",
        "detector_version": "2",
    }  # fmt: skip
