"""Turn dataset manifests, vision contracts and bundles into what a run logs (no mlflow here).

The ``data``, ``contract`` and ``bundle`` packages sit beside this one, so their objects are
accepted duck-typed: a manifest is anything with ``model_dump_json()`` (a pydantic
``DatasetManifest``), a mapping, or a path to its JSON file; a contract is anything with
``to_json()`` (a ``VisionContract``), a mapping, or a path; a bundle is its directory or a
loaded ``Bundle`` (anything with ``path`` and, optionally, ``digest()``).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from visionyard.contract.schema import canonical_sha256
from visionyard.errors import NotFoundError, TrackingError

#: MLflow stores a dataset digest in a 36-character column (enforced by PostgreSQL and servers).
MLFLOW_DIGEST_CHARS = 36
BUNDLE_FILES = ("model.onnx", "contract.json", "manifest.json")


@dataclass(frozen=True)
class DatasetRecord:
    """A manifest ready to log as an MLflow dataset input plus its JSON artifact."""

    name: str
    digest: str
    source: str
    schema: str
    profile: str
    manifest_json: str

    @property
    def mlflow_digest(self) -> str:
        """The digest as MLflow shows it: the manifest digest, cut to MLflow's 36 characters."""
        return self.digest[:MLFLOW_DIGEST_CHARS]


@dataclass(frozen=True)
class ContractRecord:
    json_text: str
    digest: str


def dataset_record(manifest: Any, name: str) -> DatasetRecord:
    """Describe ``manifest`` (see the module docstring for what it may be) for MLflow."""
    text, data = _as_json(manifest, "dataset manifest")
    digest = data.get("digest")
    if not isinstance(digest, str) or not digest:
        raise TrackingError(
            f"dataset manifest {name!r} has no digest; build it with visionyard.data "
            "(DatasetManifest.create or the data CLI) so that runs can be compared by content"
        )
    return DatasetRecord(
        name=name,
        digest=digest,
        source=json.dumps({"uri": str(data.get("source") or f"visionyard-manifest:{name}")}),
        schema=json.dumps({"mlflow_colspec": _colspec(data)}),
        profile=json.dumps(_profile(data)),
        manifest_json=text,
    )


def contract_record(contract: Any) -> ContractRecord:
    """The contract's JSON text and digest (its own ``digest()`` when it has one)."""
    text, data = _as_json(contract, "vision contract")
    own = getattr(contract, "digest", None)
    own = own() if callable(own) else own
    if isinstance(own, str) and own:
        return ContractRecord(text, own)
    return ContractRecord(text, canonical_sha256(data))


def bundle_source(bundle: Any) -> tuple[Path, str | None]:
    """``(directory, digest or None)`` of a bundle given as a path or a loaded ``Bundle``."""
    if isinstance(bundle, str | Path):
        return Path(bundle), None
    path = getattr(bundle, "path", None)
    if not isinstance(path, str | Path):
        raise TrackingError(f"cannot log {type(bundle).__name__} as a bundle: give its directory")
    own = getattr(bundle, "digest", None)
    digest = own() if callable(own) else own
    return Path(path), digest if isinstance(digest, str) else None


def check_bundle_dir(bundle_dir: Path) -> list[str]:
    """The bundle's file names; raises unless ``bundle_dir`` is a directory holding files."""
    if not bundle_dir.is_dir():
        raise NotFoundError("bundle directory", str(bundle_dir), "write the bundle first")
    files = sorted(str(p.relative_to(bundle_dir)) for p in bundle_dir.rglob("*") if p.is_file())
    if not files:
        raise TrackingError(f"bundle directory {bundle_dir} is empty; nothing to log")
    return files


def _as_json(obj: Any, what: str) -> tuple[str, dict[str, Any]]:
    if isinstance(obj, str | Path):
        return _read_json(Path(obj), what)
    if isinstance(obj, Mapping):
        data = dict(obj)
        return json.dumps(data, indent=2, default=str), data
    for method in ("model_dump_json", "to_json"):
        if callable(getattr(obj, method, None)):
            text = str(getattr(obj, method)())
            return text, _loads(text, what)
    raise TrackingError(
        f"cannot log {type(obj).__name__} as a {what}: give the object, a dict or a path"
    )


def _read_json(path: Path, what: str) -> tuple[str, dict[str, Any]]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise NotFoundError(what, str(path)) from exc
    except OSError as exc:
        raise TrackingError(f"cannot read {what} {path}: {exc.strerror}") from exc
    return text, _loads(text, f"{what} {path}")


def _loads(text: str, what: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TrackingError(f"{what} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise TrackingError(f"{what} must be a JSON object")
    return data


def _colspec(data: Mapping[str, Any]) -> list[dict[str, Any]]:
    columns = [("path", "string"), ("sha256", "string"), ("split", "string")]
    columns.append(("boxes", "string") if data.get("kind") == "detection" else ("label", "string"))
    return [{"name": n, "type": t, "required": n != "split"} for n, t in columns]


def _profile(data: Mapping[str, Any]) -> dict[str, Any]:
    entries = data.get("entries") or []
    splits = Counter(str(e.get("split") or "all") for e in entries if isinstance(e, Mapping))
    return {
        "kind": data.get("kind"),
        "num_images": len(entries),
        "num_labels": len(data.get("labels") or []),
        "splits": dict(sorted(splits.items())),
        "digest": data.get("digest"),
    }
