"""The ``python_function`` loader of registered versions (``mlflow.pyfunc.load_model``).

A registered version's ``MLmodel`` names this module as its pyfunc ``loader_module`` (see
:mod:`visionyard.tracking.mlflow_model`), so ``mlflow.pyfunc.load_model("models:/NAME@alias")``
and ``mlflow models serve --env-manager local`` load through :func:`_load_pyfunc`, which:

1. verifies the bundle's own checksums;
2. asks the registry that MLflow is configured with (the one that resolved ``models:/``) whether
   a version of THIS registered model, made from THIS run (both written into ``MLmodel`` at
   registration), records this bundle's digest (``vy.bundle_digest``): an edited and re-sealed
   bundle has a digest no version records, and a bundle of another model or run swapped in is
   refused too; a version that also recorded its manifest metadata's digest
   (``vy.metadata_digest``) must match that too. With no registry configured it refuses and
   says so (it never lets MLflow create a store in the working directory); an unreachable
   registry fails after a short retry budget, not MLflow's default minutes;
3. with ``VISIONYARD_REGISTRY__SIGNING_KEY`` set, requires a valid signature on that record
   (and on its metadata digest, when recorded);
4. runs the FP32 model through :class:`visionyard.runtime.InferenceSession` (inputs are checked
   against the contract's tensor shape; outputs are a dict name -> array, as MLflow's ONNX
   flavor returns them).

Stock MLflow cannot be made to check anything: whoever can rewrite ``MLmodel`` itself can point
it back at MLflow's own loader, and whoever can write the artifact store can swap in the bundle
of another version of the same model and run (registered with ``--force``). For that threat,
load through visionyard (``visionyard serve``, ``Registry.open_session``), which reads the
digest from the registry, not from the files.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from visionyard.bundle.signing import check_signature, subject
from visionyard.bundle.store import load_bundle
from visionyard.errors import BundleIntegrityError, TrackingError
from visionyard.runtime.session import InferenceSession
from visionyard.tracking.mlflow_model import OWNER_KEY
from visionyard.tracking.translate import translate_errors

SIGNING_KEY_ENV = "VISIONYARD_REGISTRY__SIGNING_KEY"
# tracking cannot import registry (layers flow one way): the tag names of registry/tags.py
_DIGEST_TAG = "vy.bundle_digest"
_METADATA_TAG = "vy.metadata_digest"
_METADATA_SIGNATURE_TAG = "vy.metadata_signature"
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
    owner = _owner(Path(path).parent / "MLmodel")
    check_registered(bundle.digest(), Path(path), owner, bundle.metadata_digest())
    return BundlePyfunc(InferenceSession.from_bundle(bundle, variant="fp32"))


def check_registered(
    digest: str, where: Path, owner: dict[str, str] | None = None, metadata: str | None = None
) -> None:
    """Refuse a bundle whose digest no registered version (of ``owner``'s model and run, when
    known) records, or, with a signing key, none records with a valid signature; with the
    bundle's ``metadata`` digest, a version that recorded its metadata must match it too."""
    found = _versions_recording(digest, where)
    if owner:
        found = [v for v in found if v.name == owner.get("model")
                 and v.run_id == owner.get("run_id")]  # fmt: skip
    if found and metadata is not None:
        same = [v for v in found if (v.tags or {}).get(_METADATA_TAG) in (None, "", metadata)]
        if not same:
            raise BundleIntegrityError(
                where,
                "its manifest's metadata differs from what was registered: edited in the "
                "store; refusing to load",
            )
        found = same
    if not found:
        whose = f" of {owner.get('model')!r}" if owner else ""
        raise BundleIntegrityError(
            where,
            f"digest {digest[:12]} is recorded by no registered version{whose}: the files were "
            "edited and re-sealed, or replaced; refusing to load",
        )
    key = os.environ.get(SIGNING_KEY_ENV)
    if key:
        _check_any_signed(key, digest, found, metadata)


def _versions_recording(digest: str, where: Path) -> list[Any]:
    import mlflow

    if not _registry_configured():
        raise TrackingError(
            f"cannot check {where} against a registry: none is configured; set "
            "MLFLOW_TRACKING_URI (or MLFLOW_REGISTRY_URI) to the registry the version came from"
        )
    uri = mlflow.get_registry_uri()
    budget = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}
    with translate_errors(uri, "look up the registered version of the bundle"), _env(budget):
        client = mlflow.MlflowClient(registry_uri=uri)
        return list(client.search_model_versions(f"tags.`{_DIGEST_TAG}` = '{digest}'"))


def _registry_configured() -> bool:
    try:
        from mlflow.tracking._model_registry.utils import _get_registry_uri_from_context
        from mlflow.tracking._tracking_service.utils import is_tracking_uri_set
    except ImportError:  # a newer mlflow moved them: trust what it resolves
        return True
    return bool(is_tracking_uri_set() or _get_registry_uri_from_context())  # type: ignore[no-untyped-call]


@contextmanager
def _env(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables for the block, unless the user set them already."""
    added = {k: v for k, v in values.items() if k not in os.environ}
    os.environ.update(added)
    try:
        yield
    finally:
        for name in added:
            os.environ.pop(name, None)


def _owner(mlmodel: Path) -> dict[str, str] | None:
    try:
        flavors = yaml.safe_load(mlmodel.read_text(encoding="utf-8"))["flavors"]
        owner = flavors["python_function"].get(OWNER_KEY)
    except (OSError, yaml.YAMLError, KeyError, TypeError):
        return None
    return {str(k): str(v) for k, v in owner.items()} if isinstance(owner, dict) else None


def _check_any_signed(
    key: str, digest: str, versions: list[Any], metadata: str | None = None
) -> None:
    """One of ``versions`` signed ``digest`` with ``key`` (and its metadata digest, when it
    recorded one)."""
    last: BundleIntegrityError | None = None
    for mv in versions:
        tags = mv.tags or {}
        try:
            check_signature(key, subject(mv.name, str(mv.version), "bundle", digest),
                            tags.get(_SIGNATURE_TAG))  # fmt: skip
            if metadata is not None and tags.get(_METADATA_TAG):
                text = subject(mv.name, str(mv.version), "bundle/metadata", metadata)
                check_signature(key, text, tags.get(_METADATA_SIGNATURE_TAG))
            return
        except BundleIntegrityError as exc:
            last = exc
    assert last is not None
    raise last
