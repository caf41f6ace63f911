"""export_version: a registered version's variants are stored BESIDE its bundle, which never
changes, each with a digest recorded on the version that every load checks.

The store is an in-memory stand-in with the registry client's four methods, holding the
version's artifacts in a folder, so the test sees exactly what is uploaded and tagged.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from tests.fixtures.runtime import write_colour_bundle
from tests.integration.test_export_variants import dark_set, noisy_colour_set
from visionyard.bundle import load_bundle
from visionyard.bundle.packs import PACK_MANIFEST, PACK_MODEL, composed_digests
from visionyard.data import ImageFolderDataset, read_imagefolder
from visionyard.errors import BundleIntegrityError, ExportError, NotFoundError
from visionyard.export.registry import export_version, version_tags
from visionyard.export.variants import TimingOptions, VariantOptions
from visionyard.registry.trust import cached, materialize, record_of, signature_tags
from visionyard.runtime import InferenceSession, read_variant_reports
from visionyard.tracking.registry_client import VersionInfo

FAST = VariantOptions(timing=TimingOptions(warmup=1, iterations=3, throughput_iterations=1))


@dataclass
class FolderStore:
    """Artifacts of version ``1`` of ``colours`` in ``root``; records uploads and tags."""

    root: Path
    uploads: list[str] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def version(self) -> VersionInfo:
        return VersionInfo("colours", "1", None, "", None, 0, "READY", "", None, dict(self.tags))

    def get_version(self, name: str, version: str) -> VersionInfo:
        if (name, version) != ("colours", "1"):
            raise NotFoundError("version", f"{name}/{version}")
        return self.version

    def download_version_artifacts(self, version: VersionInfo, path: str, dst: Path) -> Path:
        return Path(shutil.copytree(self.root / path, dst / path))

    def upload_version_artifact(self, version: VersionInfo, local: Path, artifact_dir: str) -> str:
        target = self.root / artifact_dir / local.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(local, target)
        self.uploads.append(f"{artifact_dir}/{local.name}")
        return self.uploads[-1]

    def set_version_tag(self, name: str, version: str, key: str, value: str) -> None:
        self.tags[key] = value


@pytest.fixture(scope="module")
def colours(tmp_path_factory: pytest.TempPathFactory) -> ImageFolderDataset:
    return read_imagefolder(noisy_colour_set(tmp_path_factory.mktemp("colours")))


@pytest.fixture
def store(tmp_path: Path) -> FolderStore:
    bundle = write_colour_bundle(tmp_path / "artifacts" / "bundle")
    return FolderStore(tmp_path / "artifacts", tags={"vy.bundle_digest": bundle.digest()})


def export(
    store: FolderStore, data: ImageFolderDataset, work: Path, variants: str = "int8", **kw: object
) -> list[object]:
    calibration = kw.pop("calibration_set", data.split("train"))
    return export_version(  # type: ignore[return-value]
        store, "colours", "1", variants=variants, eval_set=data.split("val"),
        calibration_set=calibration, options=FAST, workdir=work, **kw,  # type: ignore[arg-type]
    )  # fmt: skip


def files_of(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_variants_are_stored_beside_the_bundle_which_never_changes(
    store: FolderStore, colours: ImageFolderDataset, tmp_path: Path
) -> None:
    registered = files_of(store.root / "bundle")
    reports = export(store, colours, tmp_path / "work", "int8,fp16")
    assert [r.status for r in reports] == ["reference", "passed", "passed"]  # type: ignore[attr-defined]
    assert files_of(store.root / "bundle") == registered  # not one byte of the version changed
    folders = {u.rsplit("/", 1)[0] for u in store.uploads}
    assert (
        folders
        == {  # each pack in its own content-addressed folder
            f"variants/{n}/{store.tags[f'vy.variant_digest.{n}'][:16]}"
            for n in ("fp32", "int8", "fp16")
        }
    )
    assert not any(
        u.startswith("variants/fp32/") and u.endswith("model.onnx") for u in store.uploads
    )
    for name in ("fp32", "int8", "fp16"):
        assert len(store.tags[f"vy.variant_digest.{name}"]) == 64
    assert store.tags["vy.variants"] == "fp32,fp16,int8"
    assert store.tags["vy.variant.int8"].startswith("passed accuracy +0.0pt ")
    assert "vy.variant.fp32" not in store.tags

    loaded = materialize(store, store.version, tmp_path / "loaded", None)
    assert set(read_variant_reports(loaded)) == {"fp32", "int8", "fp16"}
    assert InferenceSession.open(loaded.path, variant="int8").variant == "int8"
    assert composed_digests(loaded.path) == (
        store.tags["vy.bundle_digest"],
        record_of(store.version).variants,
    )
    assert cached(loaded.path, store.version)


def test_a_variant_the_version_already_has_is_never_replaced(
    store: FolderStore, colours: ImageFolderDataset, tmp_path: Path
) -> None:
    export(store, colours, tmp_path / "first")
    before = files_of(store.root)
    with pytest.raises(ExportError, match="already has variant.*int8.*never change"):
        export(store, colours, tmp_path / "again", "int8,fp16")
    assert files_of(store.root) == before


def test_a_tampered_and_resealed_variant_pack_is_refused(
    store: FolderStore, colours: ImageFolderDataset, tmp_path: Path
) -> None:
    export(store, colours, tmp_path / "work")
    pack = store.root / "variants" / "int8" / store.tags["vy.variant_digest.int8"][:16]
    (pack / PACK_MODEL).write_bytes((pack / PACK_MODEL).read_bytes() + b"\0")
    body = json.loads((pack / PACK_MANIFEST).read_text())
    from visionyard.bundle.store import file_entry

    body["files"][PACK_MODEL] = file_entry(pack / PACK_MODEL)  # re-sealed: pack.json agrees
    (pack / PACK_MANIFEST).write_text(json.dumps(body))
    with pytest.raises(BundleIntegrityError, match="recorded at registration"):
        materialize(store, store.version, tmp_path / "loaded", None)


def test_a_pack_whose_digest_was_never_recorded_is_ignored_and_replaced(
    store: FolderStore, colours: ImageFolderDataset, tmp_path: Path
) -> None:
    export(store, colours, tmp_path / "work")
    for key in [k for k in store.tags if k.endswith(".int8")]:
        del store.tags[key]  # as if the export was killed before it recorded the digest
    assert "int8" not in materialize(store, store.version, tmp_path / "a", None).variants
    export(store, colours, tmp_path / "retry")
    assert "int8" in materialize(store, store.version, tmp_path / "b", None).variants


def test_a_rejected_variant_is_tagged_but_not_uploaded(
    store: FolderStore, colours: ImageFolderDataset, tmp_path: Path
) -> None:
    export(store, colours, tmp_path / "work", calibration_set=dark_set(tmp_path / "dark"))
    assert not any("int8" in path for path in store.uploads)
    assert store.tags["vy.variants"] == "fp32"
    assert store.tags["vy.variant.int8"].startswith("rejected accuracy -")
    assert "int8" not in load_bundle(store.root / "bundle").variants


def test_signed_variants_load_only_with_the_key(
    store: FolderStore, colours: ImageFolderDataset, tmp_path: Path
) -> None:
    digest = store.tags["vy.bundle_digest"]
    store.tags.update(signature_tags("k3y", "colours", "1", "bundle", digest))
    export(store, colours, tmp_path / "work", signing_key="k3y")
    assert store.tags["vy.variant_signature.int8"].startswith("hmac-sha256:")
    assert "int8" in materialize(store, store.version, tmp_path / "ok", "k3y").variants
    with pytest.raises(BundleIntegrityError, match="signature does not match"):
        materialize(store, store.version, tmp_path / "wrong", "other-key")
    unsigned = replace(store.version, tags={k: v for k, v in store.tags.items()
                                            if "signature.int8" not in k})  # fmt: skip
    with pytest.raises(BundleIntegrityError, match="no signature"):
        materialize(store, unsigned, tmp_path / "unsigned", "k3y")


def test_unknown_version_is_not_found(
    store: FolderStore, colours: ImageFolderDataset, tmp_path: Path
) -> None:
    with pytest.raises(NotFoundError, match="colours/7"):
        export_version(
            store, "colours", "7", variants="fp16", eval_set=colours, workdir=tmp_path / "w"
        )
    assert store.uploads == []


def test_version_tags_list_what_the_version_holds() -> None:
    assert version_tags([], {"fp32": "model.onnx"}) == {"vy.variants": "fp32"}
    assert version_tags([], ["int8", "fp32"]) == {"vy.variants": "fp32,int8"}


def test_a_variant_that_changes_answers_is_refused_even_within_the_accuracy_bound(
    store: FolderStore, colours: ImageFolderDataset, tmp_path: Path
) -> None:
    lenient = replace(FAST, max_drop_points=100.0)
    reports = export_version(
        store, "colours", "1", variants="int8", eval_set=colours.split("val"),
        calibration_set=dark_set(tmp_path / "dark"), options=lenient, workdir=tmp_path / "w",
    )  # fmt: skip
    int8 = reports[1]
    assert int8.status == "rejected"
    assert int8.quality.agreement < 0.95
    assert "within the bound" in int8.reason
    assert f"agreement with fp32 {int8.quality.agreement:.4f} below 0.95" in int8.reason


def test_racing_exports_each_store_a_whole_pack_and_the_record_names_one(
    store: FolderStore, colours: ImageFolderDataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Export A is paused after uploading its int8 pack; export B runs to the end; then A
    records its digest. The version must stay loadable (it broke for good with one folder)."""
    real = store.set_version_tag
    paused: list[bool] = []

    def pause_once(name: str, version: str, key: str, value: str) -> None:
        if key == "vy.variant_digest.int8" and not paused:
            paused.append(True)
            export(store, colours, tmp_path / "b")  # B, with a calibration drawn the same way
        real(name, version, key, value)

    monkeypatch.setattr(store, "set_version_tag", pause_once)
    slower = replace(FAST, calibration=replace(FAST.calibration, count=7))  # A's pack differs
    export_version(
        store, "colours", "1", variants="int8", eval_set=colours.split("val"),
        calibration_set=colours.split("train"), options=slower, workdir=tmp_path / "a",
    )  # fmt: skip
    loaded = materialize(store, store.version, tmp_path / "loaded", None)
    assert "int8" in loaded.variants
    assert store.tags["vy.variants"] == "fp32,int8"


def test_a_killed_export_leaves_the_variants_tag_to_be_completed_by_the_retry(
    store: FolderStore, colours: ImageFolderDataset, tmp_path: Path
) -> None:
    export(store, colours, tmp_path / "work")
    store.tags["vy.variants"] = "fp32"  # killed after recording int8, before the lineage tags
    with pytest.raises(ExportError, match="already has variant"):
        export(store, colours, tmp_path / "retry")
    assert store.tags["vy.variants"] == "fp32,int8"
