"""InferenceSession over real bundles and ONNX Runtime (tiny hand-built models)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from onnxruntime.capi import onnxruntime_pybind11_state as ort_state

from tests.fixtures.runtime import (
    COLOURS,
    colour_classifier_onnx,
    colour_contract,
    flat_png,
    write_colour_bundle,
)
from visionyard.bundle.store import Bundle
from visionyard.errors import (
    BundleError,
    BundleIntegrityError,
    ConfigError,
    ContractError,
    InferenceError,
    InvalidInputError,
)
from visionyard.runtime import InferenceSession

IMAGES = [flat_png(colour) for colour in COLOURS.values()]


def test_open_and_classify(colour_bundle: Bundle) -> None:
    session = InferenceSession.open(colour_bundle.path)
    assert session.variant == "fp32"
    assert session.providers == ["CPUExecutionProvider"]
    assert session.contract == colour_bundle.contract
    assert session.input_meta.shape[1:] == (3, 8, 8)
    assert [o.name for o in session.output_meta] == ["logits"]
    top = [preds[0].label for preds in session.classify(IMAGES)]
    assert top == list(COLOURS)


def test_predict_images_accepts_bytes_and_paths(colour_bundle: Bundle, tmp_path: Path) -> None:
    path = tmp_path / "blue.png"
    path.write_bytes(flat_png((10, 20, 240)))
    session = InferenceSession.open(colour_bundle)
    results = session.predict_images([IMAGES[0], path, str(path)])
    assert [r.predictions[0].label for r in results] == ["red", "blue", "blue"]
    assert len(results[0].predictions) == 5
    assert results[0].predictions[0].score > 0.99


def test_run_returns_raw_outputs_by_name(colour_bundle: Bundle) -> None:
    session = InferenceSession.open(colour_bundle)
    tensor = np.zeros((3, 3, 8, 8), np.float32)
    tensor[:, 0] = 1.0  # pure red: logits 2*10*c.r - 10*|c|^2
    logits = session.run(tensor)["logits"]
    np.testing.assert_allclose(logits[0], [10.0, -10.0, -10.0, -10.0, 0.0], atol=1e-5)
    assert logits.shape == (3, 5)


def test_explicit_and_reported_variants(tmp_path: Path) -> None:
    bundle = write_colour_bundle(
        tmp_path / "b",
        variants={"int8": colour_classifier_onnx(sharpness=5.0)},
        metadata={"variant_reports": {"int8": {"passed": True, "latency_p50_ms": 1.0}}},
    )
    assert InferenceSession.open(bundle).variant == "int8"
    session = InferenceSession.open(bundle, variant="fp32")
    assert session.variant == "fp32"
    with pytest.raises(BundleError, match="no variant 'fp16'"):
        InferenceSession.open(bundle, variant="fp16")


def test_unavailable_provider_is_refused(colour_bundle: Bundle) -> None:
    with pytest.raises(ConfigError, match="TensorrtExecutionProvider"):
        InferenceSession.open(colour_bundle, providers=["TensorrtExecutionProvider"])


def test_corrupted_variant_is_refused_by_its_checksum(tmp_path: Path) -> None:
    bundle = write_colour_bundle(tmp_path / "b", variants={"int8": colour_classifier_onnx()})
    target = bundle.path / "variants" / "int8.onnx"
    data = bytearray(target.read_bytes())
    data[-5] ^= 0xFF
    target.write_bytes(bytes(data))
    with pytest.raises(BundleIntegrityError, match="int8.onnx does not match its sha256"):
        InferenceSession.open(bundle.path, variant="fp32")


def test_unloadable_model_reports_the_runtime_reason(tmp_path: Path) -> None:
    bundle = write_colour_bundle(tmp_path / "b", model=b"this is not an onnx protobuf")
    with pytest.raises(BundleError, match=r"'fp32' \(model.onnx\) cannot be loaded") as caught:
        InferenceSession.open(bundle)
    assert not isinstance(caught.value, BundleIntegrityError)
    assert "INVALID_PROTOBUF" not in str(caught.value)
    assert "protobuf" in str(caught.value).lower()


@pytest.mark.parametrize(
    ("model", "field"),
    [
        (colour_classifier_onnx(size=16), "preprocessing.input_size.height"),
        (colour_classifier_onnx(input_name="pixels"), "input_name"),
        (colour_classifier_onnx(output_name="probs"), "decoding.output"),
        (colour_classifier_onnx(input_dtype="uint8"), "preprocessing.dtype"),
        (colour_classifier_onnx(tuple(COLOURS.values())[:4]), "labels"),
    ],
)
def test_model_and_contract_mismatch(tmp_path: Path, model: bytes, field: str) -> None:
    bundle = write_colour_bundle(tmp_path / "b", model=model)
    with pytest.raises(ContractError) as caught:
        InferenceSession.open(bundle)
    assert caught.value.field == field


def test_wrong_tensors_are_domain_errors(colour_bundle: Bundle) -> None:
    session = InferenceSession.open(colour_bundle)
    with pytest.raises(InvalidInputError, match=r"takes \[N, 3, 8, 8\] float32"):
        session.run(np.zeros((1, 3, 16, 16), np.float32))
    with pytest.raises(InvalidInputError, match="dtype is uint8"):
        session.run(np.zeros((1, 3, 8, 8), np.uint8))


class _Failing:
    """Stands in for an ORT session whose ``run`` raises."""

    def __init__(self, real: object, error: Exception) -> None:
        self._real = real
        self._error = error

    def __getattr__(self, name: str) -> object:
        return getattr(self._real, name)

    def run(self, *_args: object) -> None:
        raise self._error


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (
            ort_state.InvalidArgument("[ONNXRuntimeError] : 2 : INVALID_ARGUMENT : bad"),
            InvalidInputError,
        ),
        (ort_state.Fail("[ONNXRuntimeError] : 1 : FAIL : kernel blew up"), InferenceError),
    ],
)
def test_runtime_exceptions_are_translated(
    colour_bundle: Bundle, error: Exception, expected: type[Exception]
) -> None:
    session = InferenceSession.open(colour_bundle)
    session._ort = _Failing(session._ort, error)
    with pytest.raises(expected) as caught:
        session.run(session.dummy_input(1))
    assert type(caught.value) is expected
    assert "[ONNXRuntimeError]" not in str(caught.value)


def test_fixed_batch_model_runs_any_batch(tmp_path: Path) -> None:
    fixed = write_colour_bundle(tmp_path / "fixed", model=colour_classifier_onnx(batch=2))
    dynamic = write_colour_bundle(tmp_path / "dynamic")
    session = InferenceSession.open(fixed)
    assert session.fixed_batch == 2
    tensor = np.random.default_rng(0).random((5, 3, 8, 8), dtype=np.float32)
    expected = InferenceSession.open(dynamic).run(tensor)["logits"]
    np.testing.assert_allclose(session.run(tensor)["logits"], expected, rtol=1e-6)
    assert [p[0].label for p in session.classify(IMAGES)] == list(COLOURS)


def test_concurrent_runs_agree(colour_bundle: Bundle) -> None:
    session = InferenceSession.open(colour_bundle, intra_op_threads=1)
    tensors = [session.dummy_input(4, seed=i) for i in range(8)]
    serial = [session.run(t)["logits"] for t in tensors]
    with ThreadPoolExecutor(max_workers=4) as pool:
        parallel = list(pool.map(lambda t: session.run(t)["logits"], tensors))
    for a, b in zip(serial, parallel, strict=True):
        np.testing.assert_array_equal(a, b)


def test_task_specific_helpers_check_the_task(
    colour_bundle: Bundle, detector_bundle: Bundle
) -> None:
    with pytest.raises(ContractError, match="classification model, not detection"):
        InferenceSession.open(colour_bundle).detect(IMAGES[:1])
    with pytest.raises(ContractError, match="detection model, not classification"):
        InferenceSession.open(detector_bundle).classify(IMAGES[:1])


def test_detector_boxes_in_original_pixels(detector_bundle: Bundle) -> None:
    session = InferenceSession.open(detector_bundle)
    square, wide = flat_png((0, 0, 0), (64, 64)), flat_png((0, 0, 0), (128, 64))
    first, second = session.detect([square, wide])
    assert [(d.label, d.box) for d in first] == [
        ("cat", (8.0, 8.0, 24.0, 24.0)),
        ("dog", (32.0, 32.0, 56.0, 60.0)),
    ]
    # 128x64 is letterboxed to 64x32 at y offset 16: x doubles, y = (y - 16) * 2, clipped
    assert second[0].box == (16.0, 0.0, 48.0, 16.0)


def test_dummy_input_and_thread_options(tmp_path: Path) -> None:
    contract = colour_contract(dtype="uint8", scale=1.0)
    bundle = write_colour_bundle(
        tmp_path / "u8", model=colour_classifier_onnx(input_dtype="uint8"), contract=contract
    )
    session = InferenceSession.open(bundle, intra_op_threads=2, inter_op_threads=1)
    tensor = session.dummy_input(3)
    assert tensor.dtype == np.uint8
    assert tensor.shape == (3, 3, 8, 8)
    assert session.run(tensor)["logits"].shape == (3, 5)
    with pytest.raises(ConfigError, match="thread counts"):
        InferenceSession.open(bundle, intra_op_threads=-1)


@pytest.mark.parametrize(("threads", "stops"), [(1, None), (2, "1"), (0, "1")])
def test_a_session_with_a_thread_pool_stops_its_spinning_when_a_run_returns(
    threads: int, stops: str | None
) -> None:
    """ORT's intra-op threads spin on their cores after a run by default. Between runs the
    server decodes the next image and answers on the event loop, which then wait for a core
    (measured: ~1 ms a lone request on 2 cores). A one-thread session has no pool."""
    from visionyard.runtime.session import session_options

    options = session_options(intra_op_threads=threads)
    try:
        found = options.get_session_config_entry("session.force_spinning_stop")
    except RuntimeError:  # ORT: "does not have configuration with key"
        found = None
    assert found == stops
