"""``import_model(request, settings)``: an existing model becomes a registered version.

1. :func:`visionyard.importer.prepare.prepare` checks the source and builds ONNX bytes and the
   contract (every bad input is refused here, before anything is written);
2. an "import" run (tags ``visionyard.task``, ``visionyard.source=import``, the source's
   sha256 and origin; the environment as every run) logs the parameters, the contract, the
   parity report (torch sources) and the reference statistics, then the bundle, written under
   ``<home>/runs/<run_id>/bundle`` exactly as training writes one;
3. a parity failure raises :class:`~visionyard.export.onnx.ParityError` after the report is
   logged, and the run ends FAILED;
4. the run's bundle is registered as every trained one is
   (:meth:`visionyard.registry.Registry.register`): gates, export variants, serving and
   rollback then work on it unchanged.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from visionyard import __version__
from visionyard.bundle.store import Bundle, sha256_file, write_bundle
from visionyard.importer.contract_spec import ContractSpec
from visionyard.importer.prepare import CheckSpec, LabelSpec, ModelSource, Prepared, prepare
from visionyard.settings import Settings
from visionyard.tracking import TrackedRun, start_run

if TYPE_CHECKING:
    from visionyard.registry import Registration

SOURCE_TAG = "visionyard.source"


@dataclass(frozen=True)
class RegisterSpec:
    """Where the version goes: model name, optional semver / parent, --force for duplicates."""

    name: str
    semver: str | None = None
    parent: str | None = None
    force: bool = False


@dataclass(frozen=True)
class ImportRequest:
    source: ModelSource
    register: RegisterSpec
    contract: ContractSpec = ContractSpec()
    labels: LabelSpec = LabelSpec()
    checks: CheckSpec = CheckSpec()
    origin: str = ""
    experiment: str | None = None


@dataclass(frozen=True)
class ImportResult:
    run_id: str
    registration: Registration
    bundle: Bundle
    prepared: Prepared
    source_sha256: str

    @property
    def version(self) -> str:
        return str(self.registration.version.version)


def import_model(request: ImportRequest, settings: Settings) -> ImportResult:
    """Check, log and register one model; see the module docstring for the steps."""
    prepared = prepare(request.source, request.contract, request.labels, request.checks)
    digest = sha256_file(request.source.path)
    run_id, bundle = _log_run(request, settings, prepared, digest)
    from visionyard.registry import Registry

    reg = request.register
    done = Registry(settings).register(
        run_id, reg.name, semver=reg.semver, force=reg.force, parent=reg.parent
    )
    return ImportResult(run_id, done, bundle, prepared, digest)


def _log_run(
    request: ImportRequest, settings: Settings, prepared: Prepared, digest: str
) -> tuple[str, Bundle]:
    tags = {
        "visionyard.task": prepared.contract.task,
        SOURCE_TAG: "import",
        "visionyard.import.format": request.source.kind,
        "visionyard.import.sha256": digest,
        "visionyard.import.origin": request.origin or "(not given)",
    }
    run_name = f"import-{request.register.name}"
    with start_run(request.experiment, settings=settings, run_name=run_name, tags=tags) as run:
        run.log_params(_params(request, prepared, digest))
        run.log_contract(prepared.contract)
        reports = (settings.home / "runs" / run.run_id / "reports").resolve()
        extra = _log_checks(run, prepared, reports)
        bundle = write_bundle(
            reports.parent / "bundle",
            model=prepared.model_bytes,
            contract=prepared.contract,
            extra_files=extra,
            metadata=_metadata(request, prepared, run.run_id, digest),
        )
        run.log_bundle(bundle.path)
        return run.run_id, bundle


def _params(request: ImportRequest, prepared: Prepared, digest: str) -> dict[str, Any]:
    source = request.source
    params: dict[str, Any] = {
        "import_format": source.kind,
        "import_file": source.path.name,
        "import_sha256": digest,
        "import_origin": request.origin or "(not given)",
        "contract_from": request.contract.origin(),
        "labels_from": prepared.labels_source,
        "num_classes": len(prepared.contract.labels),
    }
    if source.factory is not None:
        params["torch_factory"] = source.factory
        params["factory_kwargs"] = json.dumps(dict(source.factory_kwargs), sort_keys=True)
        params["opset"] = source.opset
    return params


def _log_checks(run: TrackedRun, prepared: Prepared, reports: Path) -> dict[str, Path]:
    """Parity and reference reports: written, logged, and returned for the bundle."""
    reports.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    if prepared.parity is not None:
        report = prepared.parity
        files["reports/parity.json"] = _write(reports / "parity.json", report.to_dict())
        run.log_metrics(0, {"parity_max_abs_diff": report.max_abs_diff,
                            "parity_top1_agreement": report.top1_agreement})  # fmt: skip
        run.set_tags({"visionyard.export.parity": "passed" if report.passed else "failed"})
    if prepared.reference is not None:
        stats = prepared.reference
        body = {**stats.metrics(), "warnings": list(stats.warnings)}
        files["reports/reference.json"] = _write(reports / "reference.json", body)
        run.log_metrics(0, stats.metrics())
    for path in files.values():
        run.log_artifact(path, "reports")
    if prepared.notes:
        run.set_tags({"visionyard.import.warnings": " | ".join(prepared.notes)[:4000]})
    if prepared.parity is not None and not prepared.parity.passed:
        from visionyard.export.onnx import ParityError

        raise ParityError(prepared.parity)
    return files


def _write(path: Path, body: Any) -> Path:
    path.write_text(json.dumps(body, indent=2), encoding="utf-8")
    return path


def _metadata(
    request: ImportRequest, prepared: Prepared, run_id: str, digest: str
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "source": "visionyard.import",
        "run_id": run_id,
        "import_format": request.source.kind,
        "import_file": request.source.path.name,
        "import_sha256": digest,
        "origin": request.origin,
        "contract_from": request.contract.origin(),
        "labels_from": prepared.labels_source,
        "visionyard_version": __version__,
    }
    if request.source.factory is not None:
        meta["torch_factory"] = request.source.factory
        meta["exporter"] = "torch.onnx (TorchScript)"
        meta["opset"] = request.source.opset
    if prepared.parity is not None:
        meta["parity_max_abs_diff"] = prepared.parity.max_abs_diff
    return meta
