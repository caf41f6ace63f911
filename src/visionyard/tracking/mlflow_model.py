"""A stock MLflow model directory (ONNX flavor) for a visionyard bundle, and mlflow's noise.

The directory is what ``mlflow.onnx.save_model`` writes (``MLmodel``, ``model.onnx``,
environment files), with the whole verified bundle copied beside it under ``bundle/`` so that
visionyard can load the checksummed bundle from any registered version while stock MLflow
loads the ONNX flavor. Requirements are pinned to the flavor's defaults (mlflow's inference of
requirements would start a subprocess that loads the model).
"""

from __future__ import annotations

import shutil
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from visionyard.tracking.translate import translate_errors

BUNDLE_DIR = "bundle"


def build_model_dir(
    bundle_dir: Path,
    model_onnx: Path,
    target: Path,
    input_shape: list[int],
    input_name: str,
    dtype: str = "float32",
) -> Path:
    """Write a stock MLflow ONNX model of ``model_onnx`` into ``target``, with the bundle copied
    beside it under ``bundle/``. The signature is the model's input tensor."""
    with translate_errors("local", "write the MLflow ONNX model"), quiet_mlflow():
        import mlflow.onnx
        import numpy as np
        import onnx
        from mlflow.models import ModelSignature
        from mlflow.types import Schema, TensorSpec

        spec = TensorSpec(np.dtype(dtype), tuple(input_shape), input_name)
        mlflow.onnx.save_model(
            onnx.load(str(model_onnx)),
            str(target),
            signature=ModelSignature(inputs=Schema([spec])),
            pip_requirements=mlflow.onnx.get_default_pip_requirements(),
            save_as_external_data=False,
        )
    shutil.copytree(bundle_dir, target / BUNDLE_DIR)
    return target


@contextmanager
def scratch_dir(prefix: str = "vy-registry-") -> Iterator[Path]:
    """A temporary folder removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextmanager
def quiet_mlflow() -> Iterator[None]:
    """Warnings that are mlflow's to fix: its SQL stores trigger SQLAlchemy 2.1's ``noload``
    deprecation, and importing its pyfunc flavors warns about its own ``Any`` hints."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=r"The ``noload`` loader strategy is deprecated", category=Warning
        )
        # mlflow.pyfunc's own type hints, inspected when mlflow.onnx is first imported
        warnings.filterwarnings("ignore", message=r".*Any type hint is inferred as AnyType")
        yield
