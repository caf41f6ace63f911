"""export_version: a registered version's bundle gets its variants, reports and lineage tags.

The store is an in-memory stand-in with the registry client's four methods, holding the
version's artifacts in a folder, so the test sees exactly what is uploaded and tagged.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.fixtures.runtime import write_colour_bundle
from tests.integration.test_export_variants import dark_set, noisy_colour_set
from visionyard.bundle import load_bundle
from visionyard.data import ImageFolderDataset, read_imagefolder
from visionyard.errors import NotFoundError
from visionyard.export.registry import changed_files, export_version, version_tags
from visionyard.export.variants import TimingOptions, VariantOptions
from visionyard.runtime import InferenceSession, read_variant_reports

FAST = VariantOptions(timing=TimingOptions(warmup=1, iterations=3, throughput_iterations=1))


@dataclass
class FolderStore:
    """Artifacts of version ``1`` of ``colours`` in ``root``; records uploads and tags."""

    root: Path
    uploads: list[str] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)

    def get_version(self, name: str, version: str) -> str:
        if (name, version) != ("colours", "1"):
            raise NotFoundError("version", f"{name}/{version}")
        return f"{name}/{version}"

    def download_version_artifacts(self, version: str, path: str, dst: Path) -> Path:
        return Path(shutil.copytree(self.root / path, dst / path))

    def upload_version_artifact(self, version: str, local: Path, artifact_dir: str) -> str:
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
    write_colour_bundle(tmp_path / "artifacts" / "bundle")
    return FolderStore(tmp_path / "artifacts")


def test_variants_reports_and_tags_are_stored_on_the_version(
    store: FolderStore, colours: ImageFolderDataset, tmp_path: Path
) -> None:
    reports = export_version(
        store,
        "colours",
        "1",
        variants="int8,fp16",
        eval_set=colours.split("val"),
        calibration_set=colours.split("train"),
        options=FAST,
        workdir=tmp_path / "work",
    )
    assert [r.status for r in reports] == ["reference", "passed", "passed"]
    assert store.uploads[-1] == "bundle/manifest.json"
    assert set(store.uploads) == {
        "bundle/manifest.json",
        "bundle/variants/int8.onnx",
        "bundle/variants/fp16.onnx",
        "bundle/reports/variants.json",
        "bundle/reports/variants/fp32.json",
        "bundle/reports/variants/int8.json",
        "bundle/reports/variants/fp16.json",
    }
    stored = load_bundle(store.root / "bundle")  # the uploaded bundle verifies
    assert set(read_variant_reports(stored)) == {"fp32", "int8", "fp16"}
    assert InferenceSession.open(stored, variant="int8").variant == "int8"
    assert store.tags["vy.variants"] == "fp32,fp16,int8"
    assert store.tags["vy.variant.int8"].startswith("passed accuracy +0.0pt ")
    assert "vy.variant.fp32" not in store.tags


def test_a_rejected_variant_is_tagged_but_not_uploaded(
    store: FolderStore, colours: ImageFolderDataset, tmp_path: Path
) -> None:
    export_version(
        store,
        "colours",
        "1",
        variants="int8",
        eval_set=colours.split("val"),
        calibration_set=dark_set(tmp_path / "dark"),
        options=FAST,
        workdir=tmp_path / "work",
    )
    assert not any("int8" in path for path in store.uploads)
    assert store.tags["vy.variants"] == "fp32"
    assert store.tags["vy.variant.int8"].startswith("rejected accuracy -")
    assert "int8" not in load_bundle(store.root / "bundle").variants


def test_unknown_version_is_not_found(
    store: FolderStore, colours: ImageFolderDataset, tmp_path: Path
) -> None:
    with pytest.raises(NotFoundError, match="colours/7"):
        export_version(
            store, "colours", "7", variants="fp16", eval_set=colours, workdir=tmp_path / "w"
        )
    assert store.uploads == []


def test_changed_files_lists_new_and_modified_files_with_the_manifest_last() -> None:
    before = {"model.onnx": {"sha256": "a"}, "reports/variants.json": {"sha256": "b"}}
    after = {**before, "reports/variants.json": {"sha256": "c"}, "variants/x.onnx": {"sha": 1}}
    assert changed_files(before, after) == [
        "reports/variants.json",
        "variants/x.onnx",
        "manifest.json",
    ]
    assert changed_files(before, before) == []
    assert version_tags([], {"fp32": "model.onnx"}) == {"vy.variants": "fp32"}
