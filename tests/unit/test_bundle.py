"""The bundle: write, load, verify; refuse tampered, missing and extra files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from visionyard.bundle import MANIFEST, add_files, load_bundle, write_bundle
from visionyard.contract import VisionContract
from visionyard.errors import BundleError, BundleIntegrityError

SRC = Path(__file__).resolve().parents[2] / "src" / "visionyard"


@pytest.fixture
def contract() -> VisionContract:
    return VisionContract.classification(["circle", "square"], input_size=32, resize="resize")


@pytest.fixture
def bundle_dir(tmp_path: Path, contract: VisionContract) -> Path:
    target = tmp_path / "b"
    write_bundle(
        target,
        model=b"\x08\x07fake-onnx-bytes" * 10,
        contract=contract,
        extra_files={"reports/train.json": b'{"acc": 1}'},
        metadata={"run_id": "abc"},
    )
    return target


def test_round_trip(bundle_dir: Path, contract: VisionContract) -> None:
    bundle = load_bundle(bundle_dir)
    assert bundle.contract == contract
    assert set(bundle.files) == {"model.onnx", "contract.json", "reports/train.json"}
    assert bundle.model_path().read_bytes().startswith(b"\x08\x07fake")
    assert bundle.metadata == {"run_id": "abc"}
    manifest = json.loads((bundle_dir / MANIFEST).read_text())
    assert manifest["files"]["model.onnx"]["size"] == 170
    assert len(manifest["files"]["model.onnx"]["sha256"]) == 64


def test_one_changed_byte_is_refused(bundle_dir: Path) -> None:
    model = bundle_dir / "model.onnx"
    data = bytearray(model.read_bytes())
    data[5] ^= 0x01
    model.write_bytes(bytes(data))
    with pytest.raises(BundleIntegrityError, match=r"model\.onnx does not match its sha256"):
        load_bundle(bundle_dir)


def test_truncated_file_is_refused(bundle_dir: Path) -> None:
    (bundle_dir / "reports" / "train.json").write_bytes(b"{}")
    with pytest.raises(BundleIntegrityError, match="has 2 bytes"):
        load_bundle(bundle_dir)


def test_missing_and_extra_files_are_refused(bundle_dir: Path) -> None:
    (bundle_dir / "reports" / "train.json").unlink()
    with pytest.raises(BundleIntegrityError, match=r"missing file\(s\): reports/train\.json"):
        load_bundle(bundle_dir)


def test_extra_file_is_refused(bundle_dir: Path) -> None:
    (bundle_dir / "evil.py").write_text("print('hi')")
    with pytest.raises(BundleIntegrityError, match=r"unexpected file\(s\).*evil\.py"):
        load_bundle(bundle_dir)


def test_missing_manifest_and_bad_contract(bundle_dir: Path, tmp_path: Path) -> None:
    (bundle_dir / MANIFEST).unlink()
    with pytest.raises(BundleIntegrityError, match="manifest.json is missing"):
        load_bundle(bundle_dir)
    with pytest.raises(BundleError, match="is not a directory"):
        load_bundle(tmp_path / "nope")


def test_existing_directory_is_not_overwritten(bundle_dir: Path, contract: VisionContract) -> None:
    before = (bundle_dir / "model.onnx").read_bytes()
    with pytest.raises(BundleError, match="not empty"):
        write_bundle(bundle_dir, model=b"other", contract=contract)
    assert (bundle_dir / "model.onnx").read_bytes() == before
    load_bundle(bundle_dir)


def test_failed_write_leaves_nothing(tmp_path: Path, contract: VisionContract) -> None:
    with pytest.raises(BundleError, match="cannot copy"):
        write_bundle(tmp_path / "x", model=tmp_path / "absent.onnx", contract=contract)
    assert not (tmp_path / "x").exists()
    assert [p.name for p in tmp_path.iterdir()] == []


def test_variants_are_listed_and_resealed(bundle_dir: Path) -> None:
    bundle = add_files(
        load_bundle(bundle_dir), {"variants/int8.onnx": b"int8"}, {"int8": "variants/int8.onnx"}
    )
    assert bundle.model_path("int8").read_bytes() == b"int8"
    assert load_bundle(bundle_dir).variants == {"fp32": "model.onnx", "int8": "variants/int8.onnx"}
    with pytest.raises(BundleError, match="has no variant 'fp16'"):
        bundle.model_path("fp16")
    (bundle_dir / "variants" / "int8.onnx").write_bytes(b"INT8")
    with pytest.raises(BundleIntegrityError, match="int8.onnx"):
        load_bundle(bundle_dir)


def test_path_escape_is_refused(tmp_path: Path, contract: VisionContract) -> None:
    with pytest.raises(BundleError, match="not allowed"):
        write_bundle(tmp_path / "b", model=b"m", contract=contract, extra_files={"../x": b"1"})


def test_digest_changes_with_content(tmp_path: Path, contract: VisionContract) -> None:
    a = write_bundle(tmp_path / "a", model=b"one", contract=contract)
    b = write_bundle(tmp_path / "b", model=b"one", contract=contract)
    c = write_bundle(tmp_path / "c", model=b"two", contract=contract)
    assert a.digest() == b.digest() != c.digest()


def test_no_pickle_in_package() -> None:
    offenders = []
    for path in SRC.rglob("*.py"):
        text = path.read_text()
        if "import pickle" in text or "cloudpickle" in text:
            offenders.append(str(path))
        if "torch.load(" in text and "weights_only=True" not in text:
            offenders.append(f"{path}: torch.load without weights_only=True")
    assert offenders == []
