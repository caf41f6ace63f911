"""The vision contract: schema, the ONE preprocessing and the ONE postprocessing implementation."""

from visionyard.contract.diff import ContractDiff, FieldChange, diff_contracts
from visionyard.contract.image import DEFAULT_MAX_PIXELS, decode_rgb, open_image, to_rgb
from visionyard.contract.postprocess import (
    Detection,
    ImageResult,
    Prediction,
    classify,
    detect,
    postprocess,
    triton_strings,
)
from visionyard.contract.preprocess import (
    ImageMeta,
    PreprocessedBatch,
    decode_for_contract,
    preprocess_batch,
    preprocess_image,
)
from visionyard.contract.schema import (
    ClassificationDecoding,
    Conversion,
    DetectionDecoding,
    InputSize,
    Preprocessing,
    VisionContract,
    load_contract,
    parse_contract,
)

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "ClassificationDecoding",
    "ContractDiff",
    "Conversion",
    "Detection",
    "DetectionDecoding",
    "FieldChange",
    "ImageMeta",
    "ImageResult",
    "InputSize",
    "Prediction",
    "PreprocessedBatch",
    "Preprocessing",
    "VisionContract",
    "classify",
    "decode_for_contract",
    "decode_rgb",
    "detect",
    "diff_contracts",
    "load_contract",
    "open_image",
    "parse_contract",
    "postprocess",
    "preprocess_batch",
    "preprocess_image",
    "to_rgb",
    "triton_strings",
]
