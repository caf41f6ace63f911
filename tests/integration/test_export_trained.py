"""Variants of a model the trainer really trained and exported (torch -> ONNX -> INT8/FP16)."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import pytest

from tests.fixtures.models import TrainedBundle
from visionyard.bundle import load_bundle
from visionyard.data import read_imagefolder
from visionyard.export.reports import VariantReport
from visionyard.export.variants import TimingOptions, VariantOptions
from visionyard.export.workflow import (
    export_int8_for_quickstart,
    export_int8_for_version,
    resolve_sets,
)
from visionyard.runtime import InferenceSession

FAST = TimingOptions(warmup=1, iterations=5, throughput_iterations=2)


@pytest.fixture(scope="module")
def exported(
    trained_bundle: TrainedBundle,
    synth_classification: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, list[VariantReport]]:
    bundle = Path(shutil.copytree(trained_bundle.bundle_path, tmp_path_factory.mktemp("t") / "b"))
    reports = export_int8_for_quickstart(bundle, synth_classification, calibration_count=16)
    return bundle, reports


def test_quickstart_int8_of_the_trained_model_stays_within_a_point(
    exported: tuple[Path, list[VariantReport]], synth_classification: Path
) -> None:
    bundle, (fp32, int8) = exported
    assert (fp32.status, int8.name) == ("reference", "int8")
    assert int8.status == "passed"
    assert int8.quality.delta_points >= -1.0
    assert int8.quality.agreement >= 0.9
    assert int8.calibration is not None
    assert int8.calibration.count == 16
    val = read_imagefolder(synth_classification).split("val")
    assert int8.eval_set.count == len(val)
    assert fp32.quality.reference == pytest.approx(fp32.quality.value)


def test_trainer_files_survive_and_the_variant_loads_through_the_checksums(
    exported: tuple[Path, list[VariantReport]],
    trained_bundle: TrainedBundle,
    synth_classification: Path,
) -> None:
    bundle_path, _ = exported
    original = load_bundle(trained_bundle.bundle_path)
    bundle = load_bundle(bundle_path)
    for rel, info in original.files.items():
        assert bundle.files[rel] == info  # nothing the trainer wrote was touched
    assert bundle.metadata == original.metadata
    int8 = InferenceSession.open(bundle_path, variant="int8")
    fp32 = InferenceSession.open(bundle_path, variant="fp32")
    images = [s.path for s in read_imagefolder(synth_classification).split("val").samples[:4]]
    assert int8.variant == "int8"
    assert len(int8.classify(images)) == len(fp32.classify(images)) == 4


def test_fp16_of_the_trained_model_agrees_with_fp32(
    exported: tuple[Path, list[VariantReport]], synth_classification: Path
) -> None:
    from visionyard.export.variants import build_variants

    bundle, _ = exported
    evaluation, _ = resolve_sets(synth_classification)
    fp32, fp16 = build_variants(
        bundle, variants="fp16", eval_set=evaluation, options=VariantOptions(timing=FAST)
    )
    assert fp16.status == "passed"
    assert fp16.quality.agreement == pytest.approx(1.0)
    assert fp16.quality.max_abs_diff is not None
    assert fp16.quality.max_abs_diff < 0.05
    assert fp16.file_size_bytes < fp32.file_size_bytes
    assert set(load_bundle(bundle).variants) == {"fp32", "int8", "fp16"}


def test_quickstart_int8_of_a_registered_version(
    trained_bundle: TrainedBundle, synth_classification: Path
) -> None:
    from visionyard.registry import Registry

    settings = trained_bundle.settings
    name = f"quickstart-{uuid.uuid4().hex[:8]}"
    version = Registry(settings).register(trained_bundle.run_id, name).version.version
    reports = export_int8_for_version(
        settings, name, version, synth_classification, calibration_count=8
    )
    assert [r.status for r in reports] == ["reference", "passed"]
    tags = Registry(settings).client.get_version(name, version).tags
    assert tags["vy.variants"] == "fp32,int8"
    assert tags["vy.variant.int8"].startswith("passed ")
