"""Bring your own model: an ONNX file or a torch ``module:factory`` + weights -> an "import" run
(sha256, origin, contract, environment) -> bundle -> registered version.

torch is imported only on the torch path (:mod:`visionyard.importer.torch_source`), so an ONNX
import works without it.
"""

from visionyard.importer.contract_spec import ContractSpec
from visionyard.importer.labels import Labels, dedupe, read_labels_file
from visionyard.importer.prepare import CheckSpec, LabelSpec, ModelSource, Prepared
from visionyard.importer.service import ImportRequest, ImportResult, RegisterSpec, import_model

__all__ = [
    "CheckSpec",
    "ContractSpec",
    "ImportRequest",
    "ImportResult",
    "LabelSpec",
    "Labels",
    "ModelSource",
    "Prepared",
    "RegisterSpec",
    "dedupe",
    "import_model",
    "read_labels_file",
]
