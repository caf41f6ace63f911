"""export_torch (one self-contained ONNX file, dynamic batch) and the parity check."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from visionyard.contract.preprocess import preprocess_batch
from visionyard.contract.schema import VisionContract
from visionyard.errors import ExportError
from visionyard.export.onnx import ParityError, check_parity, export_torch
from visionyard.train.models import build_model

LABELS = ("circle", "square", "star", "triangle")


@pytest.fixture(scope="module")
def contract() -> VisionContract:
    return VisionContract.classification(LABELS, input_size=(32, 32), resize="resize")


@pytest.fixture
def model() -> nn.Module:
    torch.manual_seed(0)
    module = build_model("small_cnn", len(LABELS), 0.25)
    _randomise_batchnorm(module)
    return module.eval()


def _randomise_batchnorm(module: nn.Module) -> None:
    """Untrained BN statistics are 0/1; real ones make the folded weights non-trivial."""
    generator = torch.Generator().manual_seed(1)
    for layer in module.modules():
        if isinstance(layer, nn.BatchNorm2d):
            layer.running_mean.copy_(torch.randn(layer.num_features, generator=generator) * 0.1)
            layer.running_var.copy_(torch.rand(layer.num_features, generator=generator) + 0.5)


def _val_images(root: Path) -> list[Path]:
    return sorted(root.glob("val/*/*.png"))


def test_export_is_one_checked_file_with_a_dynamic_batch(
    model: nn.Module, contract: VisionContract
) -> None:
    data = export_torch(model, contract)
    proto = onnx.load_from_string(data)
    onnx.checker.check_model(proto, full_check=True)
    assert [i.name for i in proto.graph.input] == ["input"]
    assert [o.name for o in proto.graph.output] == ["logits"]
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    external = onnx.TensorProto.EXTERNAL
    assert all(t.data_location != external for t in proto.graph.initializer)
    assert proto.opset_import[0].version == 17
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    for batch in (1, 5):
        x = np.random.default_rng(batch).normal(size=(batch, 3, 32, 32)).astype(np.float32)
        (logits,) = session.run(["logits"], {"input": x})
        with torch.no_grad():
            expected = model(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(logits, expected, atol=1e-5)


def test_graph_is_optimised(model: nn.Module, contract: VisionContract) -> None:
    ops = {n.op_type for n in onnx.load_from_string(export_torch(model, contract)).graph.node}
    assert "BatchNormalization" not in ops  # folded into the convolutions
    assert "Identity" not in ops
    assert "Conv" in ops


def test_opset_is_configurable(model: nn.Module, contract: VisionContract) -> None:
    proto = onnx.load_from_string(export_torch(model, contract, opset=13))
    assert proto.opset_import[0].version == 13


def test_export_leaves_the_module_in_its_mode(model: nn.Module, contract: VisionContract) -> None:
    model.train()
    export_torch(model, contract)
    assert model.training


def test_unsupported_operator_is_named(contract: VisionContract) -> None:
    class Svd(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.linalg.svd(x.flatten(1))[1]

    with pytest.raises(ExportError, match=r"operator aten::linalg_svd is not supported at opset"):
        export_torch(Svd(), contract)


def test_output_names_must_match_the_contract(contract: VisionContract) -> None:
    class Two(nn.Module):
        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return x.mean((2, 3)), x.amax((2, 3))

    with pytest.raises(ExportError):
        export_torch(Two(), contract)


def test_parity_passes_on_real_images(
    model: nn.Module, contract: VisionContract, synth_classification: Path
) -> None:
    images = _val_images(synth_classification)
    report = check_parity(model, export_torch(model, contract), contract, images, batch_size=5)
    assert report.passed
    assert report.n_images == len(images) == 12
    assert report.top1_agreement == 1.0
    assert 0 <= report.max_abs_diff < 1e-4
    assert len(report.worst) == 5
    assert {w.source for w in report.worst} <= {str(p) for p in images}
    assert report.to_dict()["passed"] is True


def test_parity_uses_the_contract_preprocessing(
    model: nn.Module, contract: VisionContract, synth_classification: Path, tmp_path: Path
) -> None:
    images = _val_images(synth_classification)[:3]
    onnx_path = tmp_path / "model.onnx"
    onnx_path.write_bytes(export_torch(model, contract))
    report = check_parity(model, onnx_path, contract, images, n_worst=3)
    tensor = preprocess_batch(images, contract).tensor
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    (logits,) = session.run(None, {"input": tensor})
    top1 = {str(p): int(i) for p, i in zip(images, logits.argmax(1), strict=True)}
    assert {w.source: w.onnx_top1 for w in report.worst} == top1


def test_parity_failure_reports_the_worst_images(
    model: nn.Module, contract: VisionContract, synth_classification: Path
) -> None:
    exported = export_torch(model, contract)
    with torch.no_grad():  # the torch model changes after export
        model.head.bias.copy_(torch.tensor([5.0, 0.0, 0.0, 0.0]))
    images = _val_images(synth_classification)
    names = [p.relative_to(synth_classification).as_posix() for p in images]
    with pytest.raises(ParityError) as caught:
        check_parity(model, exported, contract, images, names=names, n_worst=3)
    error = caught.value
    assert isinstance(error, ExportError)
    assert error.code == "export.failed"
    report = error.report
    assert not report.passed
    assert report.max_abs_diff > 1.0
    assert len(report.worst) == 3
    assert all(w.source in names for w in report.worst)
    assert report.worst[0].torch_top1 == 0
    assert "worst: val/" in str(error)
    assert "max abs diff" in str(error)


def test_a_tight_bound_fails_and_can_be_reported_only(
    model: nn.Module, contract: VisionContract, synth_classification: Path
) -> None:
    exported = export_torch(model, contract)
    images = _val_images(synth_classification)[:4]
    with torch.no_grad():
        model.head.weight.mul_(1.0001)  # a tiny change: top-1 agrees, the values do not
    report = check_parity(model, exported, contract, images, max_abs=1e-9, raise_on_failure=False)
    assert not report.passed
    assert report.top1_agreement == 1.0
    with pytest.raises(ParityError, match="bound 1e-09"):
        check_parity(model, exported, contract, images, max_abs=1e-9)


def test_parity_needs_images(model: nn.Module, contract: VisionContract) -> None:
    with pytest.raises(ExportError, match="at least one"):
        check_parity(model, export_torch(model, contract), contract, [])


@pytest.mark.slow
def test_dynamo_exporter_also_gives_one_file(contract: VisionContract) -> None:
    torch.manual_seed(0)
    model = build_model("small_cnn", len(LABELS), 0.25).eval()
    with pytest.raises(ExportError, match="opset >= 18"):
        export_torch(model, contract, dynamo=True, opset=17)
    proto = onnx.load_from_string(export_torch(model, contract, dynamo=True, opset=18))
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert all(t.data_location != onnx.TensorProto.EXTERNAL for t in proto.graph.initializer)
