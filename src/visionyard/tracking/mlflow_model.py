"""A stock MLflow model directory (ONNX flavor) for a visionyard bundle, and mlflow's noise.

The directory is what ``mlflow.onnx.save_model`` writes (``MLmodel``, environment files), with
the whole verified bundle under ``bundle/``. The ONNX file is stored once: the ONNX flavor's
``data`` points at ``bundle/model.onnx``, and the ``python_function`` flavor's loader is
:mod:`visionyard.tracking.pyfunc_model`, which checks the bundle against the registry before
``mlflow.pyfunc.load_model`` returns. Requirements are pinned to the flavor's defaults (mlflow's
inference of requirements would start a subprocess that loads the model).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from visionyard.quiet import ignore_warning
from visionyard.tracking.translate import translate_errors

BUNDLE_DIR = "bundle"
PYFUNC_LOADER = "visionyard.tracking.pyfunc_model"
OWNER_KEY = "visionyard_owner"
#: ``vy-<kind>-<pid>-*`` in the temp folder; ``.download-<pid>-*`` / ``.compose-<pid>-*`` in caches
_SCRATCH = re.compile(r"^(?:vy-[a-z]+|\.download|\.compose)-(\d+)-")


def build_model_dir(
    bundle_dir: Path,
    model_onnx: Path,
    target: Path,
    input_shape: list[int],
    input_name: str,
    dtype: str = "float32",
    owner: Mapping[str, str] | None = None,
) -> Path:
    """Write a stock MLflow ONNX model of ``model_onnx`` into ``target``, with the bundle copied
    beside it under ``bundle/``. The signature is the model's input tensor; ``owner`` (the
    registered model's name and the source run) goes into the pyfunc flavor, so the loader
    accepts only a version of that model from that run recording the bundle's digest."""
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
        (target / "model.onnx").unlink()
        _point_flavors_at_bundle(target, model_onnx.relative_to(bundle_dir).as_posix(), owner)
    return target


def _point_flavors_at_bundle(target: Path, model_rel: str, owner: Mapping[str, str] | None) -> None:
    from mlflow.models import Model

    model = Model.load(str(target / "MLmodel"))
    model.flavors["onnx"]["data"] = f"{BUNDLE_DIR}/{model_rel}"
    pyfunc = model.flavors["python_function"]
    pyfunc["loader_module"] = PYFUNC_LOADER
    pyfunc["data"] = BUNDLE_DIR
    if owner:
        pyfunc[OWNER_KEY] = dict(owner)
    model.save(str(target / "MLmodel"))


@contextmanager
def scratch_dir(prefix: str = "vy-registry-") -> Iterator[Path]:
    """A temporary folder removed afterwards. Its name carries this process's id, so the
    folders of a command that was killed (``kill -9`` skips every ``finally``) are removed by
    the next command that opens one."""
    sweep_scratch()
    path = Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def sweep_scratch(root: Path | None = None) -> list[Path]:
    """Remove scratch folders whose process is gone; returns what was removed."""
    removed = []
    base = Path(root or tempfile.gettempdir())
    for path in base.iterdir() if base.is_dir() else ():
        match = _SCRATCH.match(path.name)
        if match and path.is_dir() and not _alive(int(match.group(1))):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process: alive, and not ours to clean
        return True
    return True


def ignore_noload_warning() -> None:
    """mlflow's SQL store configures its ORM mappers with SQLAlchemy 2.1's deprecated ``noload``
    strategy; the warning is mlflow's to fix (a standing filter: thread-safe)."""
    ignore_warning(Warning, r"The ``noload`` loader strategy is deprecated")


@contextmanager
def quiet_mlflow() -> Iterator[None]:
    """Warnings that are mlflow's to fix: its SQL stores trigger SQLAlchemy 2.1's ``noload``
    deprecation, and importing its pyfunc flavors warns about its own ``Any`` hints.

    Standing filters (:mod:`visionyard.quiet`), not ``catch_warnings``: the server's alias polls
    call MLflow from worker threads."""
    ignore_noload_warning()
    # mlflow.pyfunc's own type hints, inspected when mlflow.onnx is first imported
    ignore_warning(Warning, r".*Any type hint is inferred as AnyType")
    yield
