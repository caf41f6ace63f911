"""The inference runtime: a verified bundle + its contract + one ONNX variant in ONNX Runtime."""

from visionyard.runtime.session import InferenceSession, Outputs, session_options
from visionyard.runtime.signature import TensorMeta, check_signature, expected_input_shape
from visionyard.runtime.variants import (
    VariantReport,
    choose_variant,
    parse_variant_reports,
    pick_variant,
    precision_of,
    read_variant_reports,
    resolve_providers,
)

__all__ = [
    "InferenceSession",
    "Outputs",
    "TensorMeta",
    "VariantReport",
    "check_signature",
    "choose_variant",
    "expected_input_shape",
    "parse_variant_reports",
    "pick_variant",
    "precision_of",
    "read_variant_reports",
    "resolve_providers",
    "session_options",
]
