"""An ONNX import needs no torch; a torch source without torch is one DependencyMissingError."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import onnx
from onnx import TensorProto, helper

SCRIPT = """
import sys
sys.modules["torch"] = None  # "import torch" raises ImportError
from pathlib import Path
from visionyard.errors import DependencyMissingError
from visionyard.importer.contract_spec import ContractSpec
from visionyard.importer.prepare import CheckSpec, LabelSpec, ModelSource, prepare

prepared = prepare(ModelSource(onnx=Path(sys.argv[1])), ContractSpec(preset="imagenet"),
                   LabelSpec(), CheckSpec())
print(prepared.contract.input_name, prepared.contract.preprocessing.input_size.height,
      prepared.labels_source, ",".join(prepared.contract.labels))
try:
    prepare(ModelSource(factory="m:f", weights=Path(sys.argv[1])), ContractSpec(preset="imagenet"),
            LabelSpec(), CheckSpec())
except DependencyMissingError as exc:
    print("missing", exc.package)
"""


def _pooling_model(path: Path) -> Path:
    """[N, 3, 16, 16] -> global average -> [N, 3], labels in metadata_props."""
    x = helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["N", 3, 16, 16])
    y = helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", 3])
    nodes = [
        helper.make_node("GlobalAveragePool", ["pixels"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["scores"]),
    ]
    graph = helper.make_graph(nodes, "pool", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    helper.set_model_props(model, {"names": "{0: 'red', 1: 'green', 2: 'blue'}"})
    onnx.save(model, path)
    return path


def test_onnx_import_prepares_without_torch(tmp_path: Path) -> None:
    model = _pooling_model(tmp_path / "pool.onnx")
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(model)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    first, second = proc.stdout.strip().splitlines()
    assert first == "pixels 16 metadata:names red,green,blue"
    assert second == "missing torch"
