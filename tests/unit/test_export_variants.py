"""Export variants without building any: names, operators, calibration choice, report forms."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper
from PIL import Image

from tests.fixtures.runtime import colour_contract, detector_contract
from visionyard.data import make_classification_set, read_coco, read_imagefolder
from visionyard.errors import DatasetError, ExportError
from visionyard.export.operators import check_operators, ort_load_error, unsupported_operators
from visionyard.export.quantize import calibration_digest, select_calibration
from visionyard.export.reports import (
    ClassChange,
    DataRef,
    Quality,
    Speed,
    VariantReport,
    report_files,
    tag_summary,
)
from visionyard.export.variants import parse_variants
from visionyard.export.workflow import resolve_sets
from visionyard.runtime import parse_variant_reports, pick_variant

SHAPES = ("circle", "square", "triangle", "star")


def _model(*nodes: tuple[str, str], functions: tuple[str, ...] = ()) -> onnx.ModelProto:
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 4])
    y = helper.make_tensor_value_info("out", TensorProto.FLOAT, ["N", 4])
    names = ["input"] + [f"t{i}" for i in range(len(nodes))]
    graph_nodes = [
        helper.make_node(op, [names[i]], [names[i + 1]], domain=domain)
        for i, (domain, op) in enumerate(nodes)
    ]
    graph_nodes.append(helper.make_node("Identity", [names[-1]], ["out"]))
    graph = helper.make_graph(graph_nodes, "g", [x], [y])
    relu = [helper.make_node("Relu", ["a"], ["b"])]
    opset = [helper.make_opsetid("", 17)]
    local = [
        helper.make_function("local.fn", name, ["a"], ["b"], relu, opset) for name in functions
    ]
    return helper.make_model(graph, functions=local, opset_imports=[helper.make_opsetid("", 17)])


def test_parse_variants_puts_the_reference_first_and_refuses_unknown_names() -> None:
    assert parse_variants("int8, FP16,int8") == ["fp32", "int8", "fp16"]
    assert parse_variants(["fp16", "fp32"]) == ["fp32", "fp16"]
    with pytest.raises(ExportError, match="unknown variant.*bf16.*fp32, int8, fp16"):
        parse_variants("int8,bf16")


def test_unsupported_operators_are_named_with_their_domain() -> None:
    model = _model(
        ("", "Relu"),
        ("", "FancyOp"),
        ("my.domain", "Gadget"),
        ("com.microsoft", "FusedConv"),
        ("local.fn", "Helper"),
        functions=("Helper",),
    )
    assert unsupported_operators(model) == ["ai.onnx::FancyOp", "my.domain::Gadget"]
    with pytest.raises(ExportError, match=r"ai\.onnx::FancyOp, my\.domain::Gadget"):
        check_operators(model, "the test model")
    check_operators(_model(("", "Relu"), ("ai.onnx", "Sigmoid")))


@pytest.mark.parametrize(
    ("message", "op"),
    [
        (
            "[ONNXRuntimeError] : 10 : INVALID_GRAPH : ... No Op registered for FancyOp with",
            "FancyOp",
        ),
        (
            "[ONNXRuntimeError] : 1 : FAIL : Fatal error: my.domain:Gadget(-1) is not a registered "
            "function/op",
            "my.domain:Gadget",
        ),
        ("Could not find an implementation for TopK(11) node with name 't'", "TopK(11)"),
    ],
)
def test_onnxruntime_load_errors_name_the_operator(message: str, op: str) -> None:
    error = ort_load_error(RuntimeError(message), "the int8 variant")
    assert f"operator {op} is not supported" in str(error)
    assert "the int8 variant" in str(error)


def test_unrecognised_onnxruntime_error_is_kept() -> None:
    assert "disk on fire" in str(ort_load_error(RuntimeError("disk on fire"), "the model"))


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_classification_set(
        tmp_path_factory.mktemp("shapes"), seed=1, train_per_class=3, val_per_class=2, size=32
    )


def test_calibration_choice_is_seeded_and_bounded(shapes: Path) -> None:
    train = read_imagefolder(shapes).split("train")
    contract = colour_contract(SHAPES)
    first = select_calibration(train, contract, count=5, seed=3)
    assert first == select_calibration(train, contract, count=5, seed=3)
    choices = {select_calibration(train, contract, count=5, seed=s).paths for s in range(6)}
    assert len(choices) > 1
    per_class = select_calibration(train, contract, count=4, seed=3).paths
    assert sorted(p.parent.name for p in per_class) == sorted(SHAPES)  # stratified
    assert (first.ref.count, first.ref.method) == (5, "minmax")
    assert first.ref.source == f"imagefolder:{train.root}"
    everything = select_calibration(train, contract, count=1000, method="entropy")
    assert everything.ref.count == len(train)
    assert everything.ref.method == "entropy"


def test_calibration_digest_is_content_addressed(shapes: Path, tmp_path: Path) -> None:
    paths = sorted((shapes / "train" / "star").iterdir())
    copies = [Path(shutil.copy(p, tmp_path / f"renamed-{i}.png")) for i, p in enumerate(paths)]
    assert calibration_digest(paths) == calibration_digest(list(reversed(copies)))
    Image.new("RGB", (32, 32), (1, 2, 3)).save(copies[0])
    assert calibration_digest(paths) != calibration_digest(copies)


def test_calibration_set_must_have_images_of_the_models_task_and_labels(
    shapes: Path, synth_detection: Path
) -> None:
    train = read_imagefolder(shapes).split("train")
    with pytest.raises(DatasetError, match="calibration set is empty"):
        select_calibration([], colour_contract(SHAPES), count=10)
    with pytest.raises(DatasetError, match="calibration set is empty"):
        select_calibration(train, colour_contract(SHAPES), count=0)
    coco = read_coco(synth_detection / "annotations.json", synth_detection / "images")
    with pytest.raises(DatasetError, match=r"detection \(COCO\) dataset but the model is a cl"):
        select_calibration(coco, colour_contract(SHAPES), count=10)
    with pytest.raises(DatasetError, match=r"classification \(ImageFolder\) dataset but the mo"):
        select_calibration(train, detector_contract(SHAPES), count=10)
    with pytest.raises(DatasetError, match="not in the model's contract: circle"):
        select_calibration(train, colour_contract(("square", "triangle", "star")), count=10)
    with pytest.raises(ExportError, match="unknown calibration method 'kl'"):
        select_calibration(train, colour_contract(SHAPES), count=10, method="kl")


def test_resolve_sets_uses_val_for_evaluation_and_train_for_calibration(
    shapes: Path, tmp_path: Path
) -> None:
    evaluation, calibration = resolve_sets(shapes)
    assert {s.split for s in evaluation} == {"val"}  # type: ignore[union-attr]
    assert {s.split for s in calibration} == {"train"}  # type: ignore[union-attr]
    with pytest.raises(DatasetError, match="no 'test' split"):
        resolve_sets(shapes, eval_split="test")
    flat = tmp_path / "flat"
    shutil.copytree(shapes / "val", flat)
    evaluation, calibration = resolve_sets(flat)
    assert calibration is evaluation
    assert len(evaluation) == 2 * len(SHAPES)


def _report(name: str = "int8", *, passed: bool = True, p50: float = 5.0) -> VariantReport:
    return VariantReport(
        name=name,
        precision="int8" if name == "int8" else "fp32",
        status="passed" if passed else "rejected",
        passed=passed,
        stored=passed,
        reason="",
        max_drop_points=1.0,
        file=f"variants/{name}.onnx",
        file_size_bytes=2_500_000,
        sha256="0" * 64,
        quality=Quality(
            metric="accuracy",
            value=0.957,
            reference=0.96,
            delta_points=-0.3,
            agreement=0.99,
            max_abs_diff=0.2,
            class_metric="recall",
            per_class=[ClassChange(label="cat", before=1.0, after=0.9, delta=-0.1)],
        ),
        speed=Speed(
            provider="CPUExecutionProvider",
            threads=1,
            latency_p50_ms=p50,
            latency_p90_ms=p50 * 1.1,
            throughput_batch_size=16,
            throughput_images_per_s=200.0,
        ),
        speedup_vs_fp32=2.8,
        eval_set=DataRef(digest="e" * 64, count=100),
        tool_versions={"onnxruntime": "1.32.0"},
    )


def test_tag_summary_is_one_short_line() -> None:
    assert tag_summary(_report()) == "passed accuracy -0.3pt 2.80x 2.5MB"


def test_stored_summaries_are_what_the_runtime_reads_and_merge_with_older_ones() -> None:
    files = report_files(
        {"int8": _report(p50=5.0), "fp32": _report("fp32", p50=15.0)},
        {"fp16": {"passed": True, "precision": "fp16", "latency_p50_ms": 3.0}},
    )
    summaries = json.loads(files["reports/variants.json"])
    assert set(summaries) == {"int8", "fp32", "fp16"}
    assert summaries["int8"]["delta_points"] == -0.3
    parsed = parse_variant_reports(summaries)
    assert parsed["int8"].latency_p50_ms == 5.0
    assert parsed["int8"].precision == "int8"
    cpu = ["CPUExecutionProvider"]
    assert pick_variant(["fp32", "int8", "fp16"], parsed, cpu) == "int8"
    assert VariantReport.model_validate_json(files["reports/variants/int8.json"]) == _report()


def test_rejected_summary_is_never_picked() -> None:
    files = report_files({"int8": _report(passed=False, p50=1.0), "fp32": _report("fp32")}, {})
    parsed = parse_variant_reports(json.loads(files["reports/variants.json"]))
    assert pick_variant(["fp32", "int8"], parsed, ["CPUExecutionProvider"]) == "fp32"
