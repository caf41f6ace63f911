"""The ``python_function`` loader of registered versions (``mlflow.pyfunc.load_model``).

A registered version's ``MLmodel`` names this module as its pyfunc ``loader_module`` (see
:mod:`visionyard.tracking.mlflow_model`), so ``mlflow.pyfunc.load_model("models:/NAME@alias")``
and ``mlflow models serve --env-manager local`` load through :func:`_load_pyfunc`, which:

1. verifies the bundle's own checksums;
2. asks the registry that MLflow is configured with (the one that resolved ``models:/``) whether
   a registered version records this bundle's digest (``vy.bundle_digest``): an edited and
   re-sealed bundle has a digest no version records, and is refused;
3. with ``VISIONYARD_REGISTRY__SIGNING_KEY`` set, requires a valid signature on that record;
4. runs the FP32 model through :class:`visionyard.runtime.InferenceSession` (inputs are checked
   against the contract's tensor shape; outputs are a dict name -> array, as MLflow's ONNX
   flavor returns them).

Stock MLflow cannot be made to check anything: whoever can rewrite ``MLmodel`` itself can point
it back at MLflow's own loader. For that threat, load through visionyard (``visionyard serve``,
``Registry.open_session``), which reads the digest from the registry, not from the files.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from visionyard.bundle.signing import check_signature, subject
from visionyard.bundle.store import load_bundle
from visionyard.errors import BundleIntegrityError
from visionyard.runtime.session import InferenceSession
from visionyard.tracking.translate import translate_errors

SIGNING_KEY_ENV = "VISIONYARD_REGISTRY__SIGNING_KEY"
# tracking cannot import registry (layers flow one way): the tag names of registry/tags.py
_DIGEST_TAG = "vy.bundle_digest"
_SIGNATURE_TAG = "vy.bundle_signature"


class BundlePyfunc:
    """What ``mlflow.pyfunc`` calls ``predict`` on."""

    def __init__(self, session: InferenceSession) -> None:
        self.session = session

    def predict(self, model_input: Any, params: dict[str, Any] | None = None) -> dict[str, Any]:
        if isinstance(model_input, dict):
            model_input = model_input[self.session.contract.input_name]
        values = getattr(model_input, "to_numpy", None)
        array = values() if callable(values) else np.asarray(model_input)
        dtype = self.session.contract.preprocessing.dtype
        return self.session.run(np.ascontiguousarray(array, dtype=dtype))


def _load_pyfunc(path: str) -> BundlePyfunc:
    """MLflow's entry point: ``path`` is the version's ``bundle/`` folder."""
    bundle = load_bundle(path)
    check_registered(bundle.digest(), Path(path))
    return BundlePyfunc(InferenceSession.from_bundle(bundle, variant="fp32"))


def check_registered(digest: str, where: Path) -> None:
    """Refuse a bundle whose digest no registered version records (or, with a signing key, no
    version records with a valid signature)."""
    import mlflow

    uri = mlflow.get_registry_uri()
    with translate_errors(uri, "look up the registered version of the bundle"):
        client = mlflow.MlflowClient(registry_uri=uri)
        found = client.search_model_versions(f"tags.`{_DIGEST_TAG}` = '{digest}'")
    if not found:
        raise BundleIntegrityError(
            where,
            f"digest {digest[:12]} is recorded by no registered version: the files were "
            "edited and re-sealed, or replaced; refusing to load",
        )
    key = os.environ.get(SIGNING_KEY_ENV)
    if key:
        _check_any_signed(key, digest, found)


def _check_any_signed(key: str, digest: str, versions: list[Any]) -> None:
    last: BundleIntegrityError | None = None
    for mv in versions:
        text = subject(mv.name, str(mv.version), "bundle", digest)
        try:
            check_signature(key, text, (mv.tags or {}).get(_SIGNATURE_TAG))
            return
        except BundleIntegrityError as exc:
            last = exc
    assert last is not None
    raise last
