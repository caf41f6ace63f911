"""The on-disk model bundle: ONNX variants + vision contract + checksummed manifest."""

from visionyard.bundle.store import (
    CONTRACT,
    MANIFEST,
    MODEL,
    Bundle,
    add_files,
    load_bundle,
    sha256_bytes,
    sha256_file,
    write_bundle,
)

__all__ = [
    "CONTRACT",
    "MANIFEST",
    "MODEL",
    "Bundle",
    "add_files",
    "load_bundle",
    "sha256_bytes",
    "sha256_file",
    "write_bundle",
]
