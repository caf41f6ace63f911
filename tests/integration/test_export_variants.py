"""build_variants on tiny ONNX bundles: reports, rejection, storage, and the runtime's choice."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from tests.fixtures.runtime import (
    COLOURS,
    colour_classifier_onnx,
    colour_contract,
    detector_contract,
    fixed_detector_onnx,
    write_colour_bundle,
)
from visionyard.bundle import load_bundle, write_bundle
from visionyard.data import ImageFolderDataset, read_coco, read_imagefolder
from visionyard.errors import BundleIntegrityError, ContractError, DatasetError, ExportError
from visionyard.evaluate import LatencyReport
from visionyard.export.quantize import calibration_digest
from visionyard.export.reports import REPORTS_FILE, VariantReport, report_path
from visionyard.export.variants import (
    CalibrationOptions,
    Latency,
    TimingOptions,
    VariantOptions,
    build_variants,
)
from visionyard.runtime import InferenceSession, read_variant_reports
from visionyard.runtime.session import InferenceSession as Session

FAST = VariantOptions(timing=TimingOptions(warmup=1, iterations=5, throughput_iterations=2))
PER_CLASS = 4


def noisy_colour_set(root: Path, seed: int = 0) -> Path:
    """ImageFolder train/val of the colour classes: 12x12 images, colour + N(0, 30) noise."""
    rng = np.random.default_rng(seed)
    for split in ("train", "val"):
        for name, colour in COLOURS.items():
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(PER_CLASS):
                noise = rng.normal(0, 30, (12, 12, 3))
                pixels = np.clip(np.asarray(colour) + noise, 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.png")
    return root


def dark_set(root: Path) -> ImageFolderDataset:
    """A terrible calibration set: only near-black images (the input range collapses)."""
    (root / "black").mkdir(parents=True)
    for i in range(4):
        Image.new("RGB", (12, 12), (20 + i, 20, 20)).save(root / "black" / f"{i}.png")
    return read_imagefolder(root)


def fake_latency(ms: dict[str, float]) -> Latency:
    """Timing by variant name, so the runtime's choice does not depend on a busy CPU."""

    def measure(session: Session) -> LatencyReport:
        p50 = ms[session.variant]
        return LatencyReport(
            variant=session.variant,
            providers=session.providers,
            warmup=0,
            iterations=1,
            p50_ms=p50,
            p90_ms=p50,
            mean_ms=p50,
            throughput_batch_size=16,
            throughput_iterations=1,
            throughput_images_per_s=16_000 / p50,
        )

    return measure


@pytest.fixture(scope="module")
def colours(tmp_path_factory: pytest.TempPathFactory) -> ImageFolderDataset:
    return read_imagefolder(noisy_colour_set(tmp_path_factory.mktemp("colours")))


@pytest.fixture(scope="module")
def built(
    tmp_path_factory: pytest.TempPathFactory, colours: ImageFolderDataset
) -> tuple[Path, list[VariantReport], list[VariantReport]]:
    """int8 first, then fp16 in a second run (reports must merge)."""
    bundle = write_colour_bundle(tmp_path_factory.mktemp("built") / "bundle").path
    val, train = colours.split("val"), colours.split("train")
    first = build_variants(
        bundle, variants="int8", eval_set=val, calibration_set=train, options=FAST
    )
    second = build_variants(bundle, variants=["fp16"], eval_set=val, options=FAST)
    return bundle, first, second


def test_reports_carry_the_measurements(
    built: tuple[Path, list[VariantReport], list[VariantReport]], colours: ImageFolderDataset
) -> None:
    bundle_path, first, _ = built
    fp32, int8 = first
    assert (fp32.name, fp32.status, fp32.file) == ("fp32", "reference", "model.onnx")
    assert (int8.name, int8.precision, int8.status, int8.stored) == ("int8", "int8", "passed", True)
    assert int8.quality.metric == "accuracy"
    assert int8.quality.value == pytest.approx(1.0)
    assert int8.quality.delta_points == pytest.approx(0.0)
    assert int8.quality.agreement == pytest.approx(1.0)
    assert 0 < int8.quality.max_abs_diff < 1.0  # type: ignore[operator]
    assert int8.quality.class_metric == "recall"
    assert [c.label for c in int8.quality.per_class] == list(COLOURS)
    assert int8.eval_set.count == len(COLOURS) * PER_CLASS
    assert int8.eval_set.digest == fp32.eval_set.digest
    train = [s.path for s in colours.split("train").samples]
    assert int8.calibration is not None
    assert fp32.calibration is None
    assert int8.calibration.digest == calibration_digest(train)
    assert (int8.calibration.count, int8.calibration.method) == (len(train), "minmax")
    assert int8.speed.provider == "CPUExecutionProvider"
    assert int8.speed.throughput_batch_size == 16
    assert int8.speed.latency_p50_ms > 0
    assert int8.speedup_vs_fp32 == pytest.approx(
        fp32.speed.latency_p50_ms / int8.speed.latency_p50_ms
    )
    assert int8.tool_versions["onnxruntime"] == ort.__version__
    bundle = load_bundle(bundle_path)
    assert bundle.files["variants/int8.onnx"]["sha256"] == int8.sha256
    assert bundle.files["variants/int8.onnx"]["size"] == int8.file_size_bytes


def test_int8_is_static_qdq_with_unsigned_activations_and_per_channel_weights(
    built: tuple[Path, list[VariantReport], list[VariantReport]],
) -> None:
    model = onnx.load(str(built[0] / "variants" / "int8.onnx"))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    dequant = [n for n in model.graph.node if n.op_type == "DequantizeLinear"]
    zero_points = {inits[n.input[2]].dtype for n in dequant if len(n.input) > 2}
    assert {np.dtype(np.uint8), np.dtype(np.int8)} <= zero_points
    weight = next(n for n in dequant if n.input[0].startswith("weight"))
    assert inits[weight.input[1]].size == len(COLOURS)  # one scale per output channel
    assert not any(n.op_type == "DynamicQuantizeLinear" for n in model.graph.node)


def test_fp16_keeps_float32_io_and_opens_through_the_bundle(
    built: tuple[Path, list[VariantReport], list[VariantReport]], colours: ImageFolderDataset
) -> None:
    bundle_path, _, second = built
    fp16 = second[1]
    assert (fp16.name, fp16.precision, fp16.status) == ("fp16", "fp16", "passed")
    session = InferenceSession.open(bundle_path, variant="fp16")
    assert session.input_meta.dtype == "float32"
    model = onnx.load(str(bundle_path / "variants" / "fp16.onnx"))
    assert {i.data_type for i in model.graph.initializer} == {TensorProto.FLOAT16}
    sample = colours.split("val").samples[0]
    assert session.classify([sample.path])[0][0].label == sample.class_name


def test_reports_are_stored_and_merged_in_the_runtime_shape(
    built: tuple[Path, list[VariantReport], list[VariantReport]],
) -> None:
    bundle_path, first, second = built
    bundle = load_bundle(bundle_path)
    assert set(bundle.variants) == {"fp32", "int8", "fp16"}
    runtime = read_variant_reports(bundle)
    assert set(runtime) == {"fp32", "int8", "fp16"}
    assert runtime["int8"].passed
    assert runtime["int8"].precision == "int8"
    assert runtime["int8"].latency_p50_ms == first[1].speed.latency_p50_ms
    assert runtime["fp32"].latency_p50_ms == second[0].speed.latency_p50_ms  # re-measured
    full = json.loads((bundle_path / report_path("int8")).read_text())
    assert VariantReport.model_validate(full) == first[1]
    assert REPORTS_FILE in bundle.files
    assert report_path("fp16") in bundle.files


def test_runtime_picks_int8_on_cpu_when_it_passed_and_was_faster(
    tmp_path: Path, colours: ImageFolderDataset
) -> None:
    bundle = write_colour_bundle(tmp_path / "b").path
    val, train = colours.split("val"), colours.split("train")
    faster = fake_latency({"fp32": 3.0, "int8": 1.0})
    build_variants(bundle, variants="int8", eval_set=val, calibration_set=train, latency=faster)
    assert InferenceSession.open(bundle, providers=["CPUExecutionProvider"]).variant == "int8"
    slower = fake_latency({"fp32": 3.0, "int8": 4.0})
    reports = build_variants(
        bundle, variants="int8", eval_set=val, calibration_set=train, latency=slower
    )
    assert reports[1].speedup_vs_fp32 == pytest.approx(0.75)
    assert InferenceSession.open(bundle).variant == "fp32"


def test_variant_over_the_bound_is_rejected_and_not_stored(
    tmp_path: Path, colours: ImageFolderDataset
) -> None:
    bundle = write_colour_bundle(tmp_path / "b").path
    reports = build_variants(
        bundle,
        variants="fp32,int8",
        eval_set=colours.split("val"),
        calibration_set=dark_set(tmp_path / "dark"),
        options=FAST,
    )
    int8 = reports[1]
    assert (int8.status, int8.passed, int8.stored) == ("rejected", False, False)
    assert int8.quality.delta_points < -1.0
    assert "exceeds the bound of -1" in int8.reason
    loaded = load_bundle(bundle)
    assert "int8" not in loaded.variants
    assert not (bundle / "variants").exists()
    assert set(read_variant_reports(loaded)) == {"fp32"}


def test_forced_variant_is_stored_but_never_chosen_automatically(
    tmp_path: Path, colours: ImageFolderDataset
) -> None:
    bundle = write_colour_bundle(tmp_path / "b").path
    options = VariantOptions(force=True, max_drop_points=0.5)
    reports = build_variants(
        bundle,
        variants="int8",
        eval_set=colours.split("val"),
        calibration_set=dark_set(tmp_path / "dark"),
        options=options,
        latency=fake_latency({"fp32": 3.0, "int8": 1.0}),
    )
    assert (reports[1].status, reports[1].passed, reports[1].stored) == ("forced", False, True)
    assert reports[1].max_drop_points == 0.5
    assert InferenceSession.open(bundle).variant == "fp32"
    assert InferenceSession.open(bundle, variant="int8").variant == "int8"


def test_corrupted_variant_file_is_refused_at_load(
    built: tuple[Path, list[VariantReport], list[VariantReport]],
    tmp_path: Path,
    colours: ImageFolderDataset,
) -> None:
    copy = Path(shutil.copytree(built[0], tmp_path / "copy"))
    target = copy / "variants" / "int8.onnx"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))
    with pytest.raises(BundleIntegrityError, match=r"variants/int8.onnx .*tampered"):
        InferenceSession.open(copy, variant="int8")
    with pytest.raises(BundleIntegrityError):
        build_variants(copy, variants="fp16", eval_set=colours)


def _fancy_model() -> bytes:
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 8, 8])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 5])
    nodes = [
        helper.make_node("FancyOp", ["input"], ["fancy"]),
        helper.make_node("ReduceMean", ["fancy"], ["mean"], axes=[2, 3], keepdims=0),
        helper.make_node("MatMul", ["mean", "weight"], ["logits"]),
    ]
    weight = numpy_helper.from_array(np.ones((3, 5), np.float32), "weight")
    graph = helper.make_graph(nodes, "fancy", [x], [y], initializer=[weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return bytes(model.SerializeToString())


def test_unsupported_operator_is_named(tmp_path: Path, colours: ImageFolderDataset) -> None:
    bundle = write_colour_bundle(tmp_path / "b", model=_fancy_model())
    with pytest.raises(ExportError, match=r"ai\.onnx::FancyOp"):
        build_variants(bundle, variants="int8", eval_set=colours, calibration_set=colours)


def test_contract_input_size_must_match_the_model(
    tmp_path: Path, colours: ImageFolderDataset
) -> None:
    bundle = write_colour_bundle(
        tmp_path / "b", model=colour_classifier_onnx(size=8), contract=colour_contract(size=16)
    )
    with pytest.raises(ContractError, match=r"preprocessing\.input_size\.height"):
        build_variants(bundle, variants="fp16", eval_set=colours)


@pytest.mark.parametrize("calibration", [[], None])
def test_int8_refuses_a_missing_or_empty_calibration_set(
    tmp_path: Path, colours: ImageFolderDataset, calibration: list[Path] | None
) -> None:
    bundle = write_colour_bundle(tmp_path / "b").path
    with pytest.raises(DatasetError, match="calibration set"):
        build_variants(bundle, variants="int8", eval_set=colours, calibration_set=calibration)
    assert set(load_bundle(bundle).files) == {"model.onnx", "contract.json"}


def test_int8_refuses_a_calibration_set_of_the_other_task(
    tmp_path: Path, colours: ImageFolderDataset, synth_detection: Path
) -> None:
    bundle = write_colour_bundle(tmp_path / "b").path
    coco = read_coco(synth_detection / "annotations.json", synth_detection / "images")
    with pytest.raises(DatasetError, match=r"calibration set is a detection \(COCO\) dataset"):
        build_variants(bundle, variants="int8", eval_set=colours, calibration_set=coco)


def test_detector_variants_report_map_and_box_agreement(
    tmp_path: Path, synth_detection: Path
) -> None:
    labels = ("circle", "square", "triangle", "star")
    boxes = (((8.0, 8.0, 40.0, 40.0), (0.9, 0.05, 0.03, 0.02)),)
    bundle = write_bundle(
        tmp_path / "det", model=fixed_detector_onnx(boxes), contract=detector_contract(labels)
    )
    coco = read_coco(synth_detection / "annotations.json", synth_detection / "images")
    options = VariantOptions(calibration=CalibrationOptions(count=4), timing=FAST.timing)
    reports = build_variants(
        bundle, variants="int8,fp16", eval_set=coco, calibration_set=coco, options=options
    )
    assert [r.name for r in reports] == ["fp32", "int8", "fp16"]
    int8 = reports[1]
    assert (int8.quality.metric, int8.quality.class_metric) == ("map_50_95", "ap")
    assert int8.quality.agreement == pytest.approx(1.0)
    assert int8.calibration is not None
    assert int8.calibration.count == 4
    assert int8.calibration.source is not None
    assert int8.calibration.source.startswith("coco:")


@pytest.mark.parametrize("method", ["percentile", "entropy"])
def test_other_calibration_methods_build_a_passing_int8(
    tmp_path: Path, colours: ImageFolderDataset, method: str
) -> None:
    bundle = write_colour_bundle(tmp_path / "b").path
    options = VariantOptions(calibration=CalibrationOptions(method=method), timing=FAST.timing)  # type: ignore[arg-type]
    _, int8 = build_variants(
        bundle,
        variants="int8",
        eval_set=colours.split("val"),
        calibration_set=colours.split("train"),
        options=options,
    )
    assert int8.calibration is not None
    assert int8.calibration.method == method
    assert int8.quality.agreement >= 0.9
