"""Variant packs beside a sealed bundle, composing them, the registry digest, signatures, and
one hashing pass when files are added."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from visionyard.bundle import add_files, load_bundle, write_bundle
from visionyard.bundle import store as store_module
from visionyard.bundle.packs import (
    PACK_MANIFEST,
    PACK_MODEL,
    REPORTS_FILE,
    compose,
    composed_digests,
    load_pack,
    write_pack,
)
from visionyard.bundle.signing import check_signature, sign, subject
from visionyard.bundle.store import Bundle, file_entry, seal
from visionyard.contract import VisionContract
from visionyard.errors import BundleError, BundleIntegrityError
from visionyard.runtime.variants import read_variant_reports

SUMMARY = {"passed": True, "latency_p50_ms": 1.0, "precision": "int8"}


@pytest.fixture
def bundle(tmp_path: Path) -> Bundle:
    contract = VisionContract.classification(["circle", "square"], input_size=32, resize="resize")
    return write_bundle(
        tmp_path / "bundle",
        model=b"fp32-model" * 10,
        contract=contract,
        extra_files={REPORTS_FILE: b'{"fp32": {"passed": true}}'},
    )


def pack_of(bundle: Bundle, root: Path, name: str = "int8", model: bytes | None = b"int8") -> Path:
    write_pack(root / name, name=name, base_digest=bundle.digest(), model=model,
               summary=SUMMARY, report=b'{"full": 1}')  # fmt: skip
    return root / name


def test_the_digest_is_the_one_canonical_formula_and_unchanged_for_old_records(
    bundle: Bundle,
) -> None:
    old = json.dumps({"files": bundle.files, "variants": bundle.variants}, sort_keys=True,
                     separators=(",", ":")).encode()  # fmt: skip
    assert bundle.digest() == hashlib.sha256(old).hexdigest()


def test_load_checks_the_recorded_digest(bundle: Bundle) -> None:
    assert load_bundle(bundle.path, expected_digest=bundle.digest()).digest() == bundle.digest()
    with pytest.raises(BundleIntegrityError, match="recorded at registration"):
        load_bundle(bundle.path, expected_digest="0" * 64)


def test_a_resealed_bundle_verifies_alone_but_not_against_its_record(bundle: Bundle) -> None:
    recorded = bundle.digest()
    (bundle.path / "model.onnx").write_bytes(b"evil")
    seal(bundle.path, {**bundle.files, "model.onnx": file_entry(bundle.path / "model.onnx")},
         bundle.variants, bundle.metadata)  # fmt: skip
    load_bundle(bundle.path)
    with pytest.raises(BundleIntegrityError, match="re-sealed"):
        load_bundle(bundle.path, expected_digest=recorded)


def test_adding_files_hashes_only_the_new_ones(
    bundle: Bundle, monkeypatch: pytest.MonkeyPatch
) -> None:
    hashed: list[str] = []
    real = store_module.sha256_file

    def counting(path: Path | str, chunk_size: int = 1 << 20) -> str:
        hashed.append(Path(path).name)
        return real(path, chunk_size)

    monkeypatch.setattr(store_module, "sha256_file", counting)
    added = add_files(bundle, {"variants/int8.onnx": b"int8"}, {"int8": "variants/int8.onnx"})
    assert hashed == ["int8.onnx"]
    assert load_bundle(bundle.path).files == added.files


def test_a_pack_round_trips_and_refuses_tampering(bundle: Bundle, tmp_path: Path) -> None:
    path = pack_of(bundle, tmp_path / "packs")
    pack = load_pack(path, base_digest=bundle.digest())
    assert load_pack(path, expected_digest=pack.digest()).name == "int8"
    (path / PACK_MODEL).write_bytes(b"int9")
    with pytest.raises(BundleIntegrityError, match="int8: model.onnx (has|does not match)"):
        load_pack(path)
    body = json.loads((path / PACK_MANIFEST).read_text())
    body["files"][PACK_MODEL] = file_entry(path / PACK_MODEL)
    (path / PACK_MANIFEST).write_text(json.dumps(body))  # re-sealed
    with pytest.raises(BundleIntegrityError, match="recorded at registration"):
        load_pack(path, expected_digest=pack.digest())


def test_a_pack_of_another_bundle_or_with_odd_names_is_refused(
    bundle: Bundle, tmp_path: Path
) -> None:
    path = pack_of(bundle, tmp_path / "packs")
    with pytest.raises(BundleIntegrityError, match="another bundle"):
        load_pack(path, base_digest="f" * 64)
    (path / "extra.txt").write_text("x")
    with pytest.raises(BundleIntegrityError, match="unexpected file.*extra.txt"):
        load_pack(path)
    with pytest.raises(BundleError, match="not allowed"):
        write_pack(tmp_path / "x", name="../up", base_digest="b", model=None, summary={},
                   report=b"{}")  # fmt: skip
    body = json.loads((path / PACK_MANIFEST).read_text())
    body["files"] = {"../../etc/passwd": {"sha256": "0", "size": 0}, "report.json": {}}
    (path / PACK_MANIFEST).write_text(json.dumps(body))
    with pytest.raises(BundleIntegrityError, match="outside the pack"):
        load_pack(path)


def test_compose_lays_out_variants_without_touching_the_originals(
    bundle: Bundle, tmp_path: Path
) -> None:
    before = {rel: (bundle.path / rel).read_bytes() for rel in bundle.files}
    packs = [load_pack(pack_of(bundle, tmp_path / "packs", "fp32", None)),
             load_pack(pack_of(bundle, tmp_path / "packs"))]  # fmt: skip
    composed = compose(bundle, packs, tmp_path / "composed")
    loaded = load_bundle(composed.path)  # sealed and verifiable
    assert loaded.variants == {"fp32": "model.onnx", "int8": "packs/int8/model.onnx"}
    assert loaded.model_path("int8").read_bytes() == b"int8"
    assert loaded.metadata["variant_reports"]["int8"] == SUMMARY
    assert read_variant_reports(loaded)["int8"].latency_p50_ms == 1.0
    assert (loaded.path / REPORTS_FILE).read_bytes() == b'{"fp32": {"passed": true}}'  # kept
    assert {rel: (bundle.path / rel).read_bytes() for rel in bundle.files} == before
    assert composed_digests(loaded.path) == (bundle.digest(), {p.name: p.digest() for p in packs})


def test_a_composed_copy_edited_and_resealed_stands_for_other_digests(
    bundle: Bundle, tmp_path: Path
) -> None:
    pack = load_pack(pack_of(bundle, tmp_path / "packs"))
    composed = compose(bundle, [pack], tmp_path / "composed")
    model = composed.model_path("int8")
    model.unlink()
    model.write_bytes(b"evil")
    files = {**composed.files, "packs/int8/model.onnx": file_entry(model)}
    seal(composed.path, files, composed.variants, composed.metadata)
    assert composed_digests(composed.path) == (bundle.digest(), {"int8": "mismatch"})
    assert composed_digests(bundle.path) is None  # not a composed bundle


def _resealed(composed: Bundle, **change: object) -> Path:
    """The composed copy with its file table, variants or metadata changed and re-sealed (an
    extra file ``evil.onnx`` is added to the table when a change names it)."""
    files, variants = dict(composed.files), dict(composed.variants)
    metadata = json.loads(json.dumps(composed.metadata))
    evil = composed.path / "evil.onnx"
    evil.write_bytes(b"another model")
    files["evil.onnx"] = file_entry(evil)
    if "variants" in change:
        variants.update(change["variants"])  # type: ignore[call-overload]
    if "metadata" in change:
        metadata.update(change["metadata"])  # type: ignore[call-overload]
    if not change.get("keep_extra", True):
        del files["evil.onnx"]
        evil.unlink()
    seal(composed.path, files, variants, metadata)
    load_bundle(composed.path)  # re-sealed: it verifies on its own
    return composed.path


@pytest.mark.parametrize(
    "change",
    [
        {"variants": {"int8": "evil.onnx"}},  # the variant the runtime loads, swapped
        {"variants": {"fp32": "evil.onnx"}},
        {"variants": {"fp16": "evil.onnx"}},  # a variant the registry never recorded
        {},  # an extra file alone
        {"keep_extra": False, "metadata": {"variant_reports": {"int8": {"passed": False}}}},
        {"keep_extra": False, "variants": {"fp16": "packs/int8/model.onnx"}},
    ],
    ids=["int8-swapped", "fp32-swapped", "new-variant", "extra-file", "reports", "alias-variant"],
)
def test_a_composed_copy_whose_tables_say_more_than_its_provenance_stands_for_nothing(
    bundle: Bundle, tmp_path: Path, change: dict[str, object]
) -> None:
    packs = [load_pack(pack_of(bundle, tmp_path / "packs"))]
    composed = compose(bundle, packs, tmp_path / "composed")
    record = (bundle.digest(), {"int8": packs[0].digest()})
    assert composed_digests(composed.path) == record
    assert composed_digests(_resealed(composed, **change)) != record


def test_signatures_bind_the_version_the_piece_and_the_digest() -> None:
    text = subject("shapes", "3", "bundle", "abc")
    signature = sign("k3y", text)
    check_signature("k3y", text, signature)
    for other in (subject("shapes", "2", "bundle", "abc"), subject("shapes", "3", "bundle", "abd")):
        with pytest.raises(BundleIntegrityError, match="does not match"):
            check_signature("k3y", other, signature)
    with pytest.raises(BundleIntegrityError, match="no signature"):
        check_signature("k3y", text, None)
