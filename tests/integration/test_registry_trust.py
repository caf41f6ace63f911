"""A registered version is exactly what runs: every load is checked against the registry.

The attack of issue 16: edit a registered version's ``model.onnx`` in the artifact store and
re-seal its ``manifest.json`` so that the bundle verifies on its own. The server, the runtime,
``mlflow.pyfunc``, export, the gate and ``bundle verify`` must each refuse it (exit 6 /
bundle-tampered), because its digest is not the one the registry recorded at registration.
Runs on the selected backend (SQLite, or ``mlflow server`` on PostgreSQL).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.fixtures.cli import run, store_flags
from tests.fixtures.runtime import COLOURS, colour_classifier_onnx
from tests.fixtures.serving import ADMIN_TOKEN, encoded
from tests.registry_support import RED_AS_GREEN, colour_dataset, log_colour_run, write_gate
from visionyard.bundle.store import MANIFEST, MODEL, file_entry, load_bundle, seal
from visionyard.errors import BundleIntegrityError
from visionyard.registry import Registry
from visionyard.serving.app import running_server
from visionyard.serving.registry_source import RegistrySource
from visionyard.settings import Settings
from visionyard.tracking.mlflow_model import sweep_scratch
from visionyard.tracking.registry_client import RegistryClient
from visionyard.tracking.store import TrackingConfig, mlflow_globals

Capture = pytest.CaptureFixture[str]


def registered(
    settings: Settings, tmp: Path, capsys: Capture, versions: int = 1, sharpness: float = 10.0
) -> str:
    name = f"trust-{uuid.uuid4().hex[:8]}"
    for number in range(versions):
        run_id = log_colour_run(settings, tmp, sharpness=sharpness + number)
        code, _, err = run(capsys, *store_flags(settings), "register", run_id, "--name", name)
        assert code == 0, err
    return name


def tamper_and_reseal(settings: Settings, name: str, version: str, tmp: Path) -> None:
    """What an attacker with write access to the artifact store does: swap the model for one
    that calls red images green, and re-seal the manifest so the bundle verifies on its own."""
    client = RegistryClient.from_settings(settings)
    info = client.get_version(name, version)
    bundle = client.download_version_artifacts(info, "bundle", tmp / f"evil-{version}")
    (bundle / MODEL).write_bytes(colour_classifier_onnx(RED_AS_GREEN, sharpness=10.0))
    manifest = json.loads((bundle / MANIFEST).read_text())
    files = {**manifest["files"], MODEL: file_entry(bundle / MODEL)}
    seal(bundle, files, manifest["variants"], manifest["metadata"])
    load_bundle(bundle)  # re-sealed: the bundle alone verifies
    for rel in (MODEL, MANIFEST):
        client.upload_version_artifact(info, bundle / rel, "bundle")


def test_a_resealed_bundle_is_refused_by_every_load(
    tracking_settings: Settings, tmp_path: Path, capsys: Capture
) -> None:
    s, flags = tracking_settings, store_flags(tracking_settings)
    name = registered(s, tmp_path, capsys)
    data = colour_dataset(tmp_path / "eval")
    tamper_and_reseal(s, name, "1", tmp_path)

    code, out, err = run(capsys, *flags, "bundle", "verify", f"{name}/1")
    assert code == 6
    assert "recorded at registration" in out
    assert f"{name}/1: bundle failed verification" in err
    assert err.count("\n") == 1
    assert "Traceback" not in err

    with pytest.raises(BundleIntegrityError, match="recorded at registration"):
        Registry(s).open_session(f"{name}/1", tmp_path / "cache")  # the runtime

    code, _, err = run(capsys, *flags, "export", name, "1", "--variants", "fp32,fp16",
                       "--data", data)  # fmt: skip
    assert code == 6
    assert "recorded at registration" in err

    gate = write_gate(tmp_path / "gate.yaml", data, min_samples=5)
    code, _, err = run(capsys, *flags, "promote", name, "1", "--to", "production",
                       "--gate", gate)  # fmt: skip
    assert code == 6
    assert "recorded at registration" in err
    assert RegistryClient.from_settings(s).get_model(name).aliases == {}

    with mlflow_globals(TrackingConfig.from_settings(s)):
        import mlflow

        with pytest.raises(BundleIntegrityError, match="recorded by no registered version"):
            mlflow.pyfunc.load_model(f"models:/{name}/1")


def test_the_server_keeps_the_good_version_when_a_resealed_one_is_promoted(
    tracking_settings: Settings, tmp_path: Path, capsys: Capture
) -> None:
    s, flags = tracking_settings, store_flags(tracking_settings)
    name = registered(s, tmp_path, capsys, versions=2)
    assert run(capsys, *flags, "promote", name, "1", "--to", "production")[0] == 0
    tamper_and_reseal(s, name, "2", tmp_path)
    serving = {"http_port": 0, "grpc_port": 0, "admin_token": ADMIN_TOKEN, "poll_interval_s": 3600}
    settings = s.model_copy(update={"serving": s.serving.model_copy(update=serving)})
    source = RegistrySource(f"{name}@production", settings)
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    with (
        running_server(settings, {"m": source}) as srv,
        httpx.Client(base_url=srv.http_url, timeout=30) as http,
    ):
        red = encoded(COLOURS["red"])
        assert http.post("/v1/models/m:predict", content=red).json()["model_version"] == "1"
        # forced past promote's own check: the server must still refuse it
        forced = ("--force", "--reason", "test: the server must refuse it on its own")
        assert run(capsys, *flags, "promote", name, "2", "--to", "production", *forced)[0] == 0
        http.post("/v2/repository/models/m/load", headers=auth)
        answer = http.post("/v1/models/m:predict", content=red).json()
        assert answer["model_version"] == "1"  # the re-sealed v2 was refused
        assert answer["predictions"][0][0]["label"] == "red"


def test_pyfunc_loads_an_untouched_version_and_checks_the_signature(
    tracking_settings: Settings, tmp_path: Path, capsys: Capture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VISIONYARD_REGISTRY__SIGNING_KEY", "k3y")
    s = tracking_settings.model_copy(
        update={"registry": tracking_settings.registry.model_copy(update={"signing_key": "k3y"})}
    )
    name = registered(s, tmp_path, capsys)
    tags = RegistryClient.from_settings(s).get_version(name, "1").tags
    assert tags["vy.bundle_signature"].startswith("hmac-sha256:")
    assert Registry(s).open_session(f"{name}/1", tmp_path / "c1").variant == "fp32"
    with mlflow_globals(TrackingConfig.from_settings(s)):
        import mlflow

        model = mlflow.pyfunc.load_model(f"models:/{name}/1")
        monkeypatch.setenv("VISIONYARD_REGISTRY__SIGNING_KEY", "another-key")
        with pytest.raises(BundleIntegrityError, match="signature does not match"):
            mlflow.pyfunc.load_model(f"models:/{name}/1")
    assert model is not None
    other = s.model_copy(
        update={"registry": s.registry.model_copy(update={"signing_key": "another-key"})}
    )
    with pytest.raises(BundleIntegrityError, match="signature does not match"):
        Registry(other).open_session(f"{name}/1", tmp_path / "c2")


def test_export_adds_variants_beside_an_unchanged_version(
    tracking_settings: Settings, tmp_path: Path, capsys: Capture
) -> None:
    s, flags = tracking_settings, store_flags(tracking_settings)
    name = registered(s, tmp_path, capsys)
    client = RegistryClient.from_settings(s)
    digest = client.get_version(name, "1").tags["vy.bundle_digest"]
    registry = Registry(s)
    assert "int8" not in load_bundle(registry.fetch_bundle(f"{name}/1", tmp_path / "c")[1]).variants
    data = colour_dataset(tmp_path / "eval", per_class=4)
    code, _, err = run(capsys, *flags, "export", name, "1", "--variants", "fp32,int8",
                       "--data", data)  # fmt: skip
    assert code == 0, err
    info = client.get_version(name, "1")
    stored = client.download_version_artifacts(info, "bundle", tmp_path)
    assert load_bundle(stored).digest() == digest  # the registered bundle did not change
    assert "vy.profile_digest" in info.tags  # export also profiled the version on its eval set
    code, out, _ = run(capsys, *flags, "bundle", "verify", f"{name}/1")
    assert code == 0
    assert {"bundle", "variants/fp32", "variants/int8"} <= set(out.split())
    assert "missing" not in out
    code, out, _ = run(capsys, *flags, "models", "show", f"{name}/1")
    assert code == 0
    assert "variant int8" in out
    assert "digest" in out
    # the server's cache notices the version gained a variant
    assert "int8" in load_bundle(registry.fetch_bundle(f"{name}/1", tmp_path / "c")[1]).variants
    code, _, err = run(capsys, *flags, "export", name, "1", "--variants", "int8", "--data", data)
    assert code == 10
    assert "never change" in err


def test_a_cached_copy_edited_and_resealed_is_fetched_again(
    tracking_settings: Settings, tmp_path: Path, capsys: Capture
) -> None:
    name = registered(tracking_settings, tmp_path, capsys)
    registry = Registry(tracking_settings)
    _, path = registry.fetch_bundle(f"{name}/1", tmp_path / "cache")
    good = (path / MODEL).read_bytes()
    os.unlink(path / MODEL)  # a hard link to the download: replace, never write through it
    (path / MODEL).write_bytes(colour_classifier_onnx(RED_AS_GREEN, sharpness=10.0))
    manifest = json.loads((path / MANIFEST).read_text())
    seal(path, {**manifest["files"], MODEL: file_entry(path / MODEL)}, manifest["variants"],
         manifest["metadata"])  # fmt: skip
    _, again = registry.fetch_bundle(f"{name}/1", tmp_path / "cache")
    assert (again / MODEL).read_bytes() == good


def test_a_cached_copy_given_a_variant_of_its_own_is_fetched_again(
    tracking_settings: Settings, tmp_path: Path, capsys: Capture
) -> None:
    """The review's attack: the cached bundle's own files untouched, an extra ONNX file listed
    in the table and the variant the runtime loads pointed at it, the manifest re-sealed."""
    name = registered(tracking_settings, tmp_path, capsys)
    registry = Registry(tracking_settings)
    _, path = registry.fetch_bundle(f"{name}/1", tmp_path / "cache")
    good = (path / MODEL).read_bytes()
    (path / "evil.onnx").write_bytes(colour_classifier_onnx(RED_AS_GREEN, sharpness=10.0))
    manifest = json.loads((path / MANIFEST).read_text())
    files = {**manifest["files"], "evil.onnx": file_entry(path / "evil.onnx")}
    seal(path, files, {**manifest["variants"], "fp32": "evil.onnx"}, manifest["metadata"])
    assert load_bundle(path).model_path("fp32").name == "evil.onnx"  # verifies on its own
    _, again = registry.fetch_bundle(f"{name}/1", tmp_path / "cache")
    fetched = load_bundle(again)
    assert fetched.model_path("fp32").read_bytes() == good
    assert "evil.onnx" not in fetched.files


@pytest.mark.parametrize("blocked", ["lock-is-a-folder", "cache-is-a-file"])
def test_a_cache_that_cannot_be_written_is_one_line_not_a_traceback(
    tracking_settings: Settings, tmp_path: Path, capsys: Capture, blocked: str
) -> None:
    name = registered(tracking_settings, tmp_path, capsys)
    cache = Path(tracking_settings.home) / "serving-cache"
    if blocked == "lock-is-a-folder":  # stands in for EACCES/EROFS on the lock file
        (cache / name / ".1.lock").mkdir(parents=True)
    else:
        cache.mkdir(parents=True, exist_ok=True)
        (cache / name).write_text("not a folder")
    image = tmp_path / "red.png"
    image.write_bytes(encoded("red"))
    code, out, err = run(capsys, *store_flags(tracking_settings), "predict", f"{name}/1", image)
    assert code == 7, err
    (line,) = err.strip().splitlines()
    assert line.startswith(f"error: cannot cache {name}/1 under ")
    assert "fix permissions" in line


def test_a_link_planted_in_a_registered_bundle_is_named_not_called_missing(
    tracking_settings: Settings, tmp_path: Path, capsys: Capture
) -> None:
    name = registered(tracking_settings, tmp_path, capsys)
    client = RegistryClient.from_settings(tracking_settings)
    uri = client.artifact_uri(client.get_version(name, "1"))
    if not uri.startswith(("file:", "/")):
        pytest.skip("plants a link in a local artifact store")
    reports = Path(uri.removeprefix("file://")) / "bundle" / "reports"
    reports.mkdir(exist_ok=True)
    os.symlink("/etc/passwd", reports / "leak.txt")
    code, out, _ = run(capsys, *store_flags(tracking_settings), "bundle", "verify", f"{name}/1")
    assert code == 6
    flat = " ".join(out.replace("│", " ").split())
    assert "missing" not in flat
    assert "holds a file that resolves outside the artifact store (a planted link)" in flat


def _edit_metadata(manifest: Path, **values: object) -> None:
    """What an attacker does to a manifest's metadata: no file changes, nothing re-sealed."""
    data = json.loads(manifest.read_text())
    data["metadata"].update(values)
    manifest.write_text(json.dumps(data, indent=2))


def test_a_registered_bundles_metadata_edited_in_the_store_is_refused(
    tracking_settings: Settings, tmp_path: Path, capsys: Capture
) -> None:
    """``accepts_non_finite`` and the like live in the manifest's metadata, which the bundle
    digest does not cover: the registry records the metadata's own digest too."""
    name = registered(tracking_settings, tmp_path, capsys)
    client = RegistryClient.from_settings(tracking_settings)
    info = client.get_version(name, "1")
    assert len(info.tags["vy.metadata_digest"]) == 64
    bundle = client.download_version_artifacts(info, "bundle", tmp_path / "evil")
    _edit_metadata(bundle / MANIFEST, accepts_non_finite=True)
    client.upload_version_artifact(info, bundle / MANIFEST, "bundle")
    flags = store_flags(tracking_settings)
    code, out, _ = run(capsys, *flags, "bundle", "verify", f"{name}/1")
    assert code == 6
    assert "metadata" in " ".join(out.replace("│", " ").split())
    image = tmp_path / "red.png"
    image.write_bytes(encoded("red"))
    code, _, err = run(capsys, *flags, "predict", f"{name}/1", image)
    assert code == 6, err
    assert "metadata" in err
    with pytest.raises(BundleIntegrityError, match="metadata"):
        Registry(tracking_settings).open_session(f"{name}/1", tmp_path / "cache")  # the runtime
    with mlflow_globals(TrackingConfig.from_settings(tracking_settings)):
        import mlflow

        with pytest.raises(BundleIntegrityError, match="metadata"):
            mlflow.pyfunc.load_model(f"models:/{name}/1")


def test_with_a_key_the_metadata_digest_is_signed_too(
    tracking_settings: Settings, tmp_path: Path, capsys: Capture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Someone who can write the registry's tags but has no key: editing the metadata and its
    recorded digest together is refused, as a re-sealed bundle with its digest tag is."""
    s = tracking_settings
    keyed = s.model_copy(update={"registry": s.registry.model_copy(update={"signing_key": "k"})})
    name = registered(s, tmp_path, capsys)  # unsigned: `bundle sign` signs every piece
    assert run(capsys, *store_flags(s), "bundle", "sign", f"{name}/1")[0] == 3  # needs a key
    assert Registry(keyed).sign(f"{name}/1") == [
        "vy.bundle_signature", "vy.metadata_signature",
    ]  # fmt: skip
    Registry(keyed).fetch_bundle(f"{name}/1", tmp_path / "ok")  # signed: loads
    client = RegistryClient.from_settings(s)
    info = client.get_version(name, "1")
    bundle = client.download_version_artifacts(info, "bundle", tmp_path / "evil")
    _edit_metadata(bundle / MANIFEST, accepts_non_finite=True)
    client.upload_version_artifact(info, bundle / MANIFEST, "bundle")
    client.set_version_tag(name, "1", "vy.metadata_digest", load_bundle(bundle).metadata_digest())
    with pytest.raises(BundleIntegrityError, match="bundle/metadata"):
        Registry(keyed).fetch_bundle(f"{name}/1", tmp_path / "cache")
    monkeypatch.setenv("VISIONYARD_REGISTRY__SIGNING_KEY", "k")
    with mlflow_globals(TrackingConfig.from_settings(s)):
        import mlflow

        with pytest.raises(BundleIntegrityError, match="signature does not match"):
            mlflow.pyfunc.load_model(f"models:/{name}/1")


def test_bundle_sign_records_the_metadata_digest_of_a_version_registered_without_one(
    tracking_settings: Settings, tmp_path: Path, capsys: Capture
) -> None:
    """A version registered before metadata digests were recorded: `bundle sign` checks every
    piece, then records the metadata as it stands and signs it, like the digests."""
    s = tracking_settings
    keyed = s.model_copy(update={"registry": s.registry.model_copy(update={"signing_key": "k"})})
    name = registered(s, tmp_path, capsys)
    client = RegistryClient.from_settings(s)
    client.set_version_tag(name, "1", "vy.metadata_digest", "")  # as an older version has it
    signed = Registry(keyed).sign(f"{name}/1")
    assert signed == ["vy.bundle_signature", "vy.metadata_digest", "vy.metadata_signature"]
    info = client.get_version(name, "1")
    bundle = client.download_version_artifacts(info, "bundle", tmp_path / "evil")
    assert info.tags["vy.metadata_digest"] == load_bundle(bundle).metadata_digest()
    _edit_metadata(bundle / MANIFEST, accepts_non_finite=True)
    client.upload_version_artifact(info, bundle / MANIFEST, "bundle")
    with pytest.raises(BundleIntegrityError, match="metadata"):
        Registry(keyed).fetch_bundle(f"{name}/1", tmp_path / "cache")


def test_a_cached_copys_metadata_edited_with_its_provenance_is_fetched_again(
    tracking_settings: Settings, tmp_path: Path, capsys: Capture
) -> None:
    name = registered(tracking_settings, tmp_path, capsys)
    registry = Registry(tracking_settings)
    _, path = registry.fetch_bundle(f"{name}/1", tmp_path / "cache")
    data = json.loads((path / MANIFEST).read_text())
    data["metadata"]["accepts_non_finite"] = True
    data["metadata"]["composed"]["bundle_metadata"]["accepts_non_finite"] = True
    (path / MANIFEST).write_text(json.dumps(data, indent=2))  # consistent with itself
    assert load_bundle(path).metadata["accepts_non_finite"] is True
    _, again = registry.fetch_bundle(f"{name}/1", tmp_path / "cache")
    assert "accepts_non_finite" not in load_bundle(again).metadata


def test_a_killed_registers_scratch_folder_is_swept_by_the_next_command(
    tracking_settings: Settings, tmp_path: Path, capsys: Capture
) -> None:
    run_id = log_colour_run(tracking_settings, tmp_path)
    code = "import os, sys; from visionyard.tracking.mlflow_model import scratch_dir\n" \
           "with scratch_dir() as tmp: print(tmp, flush=True); os._exit(9)"  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    leftover = Path(proc.stdout.strip())
    assert proc.returncode == 9
    assert leftover.is_dir()  # killed: its finally never ran
    flags = store_flags(tracking_settings)
    name = f"sweep-{uuid.uuid4().hex[:8]}"
    assert run(capsys, *flags, "register", run_id, "--name", name)[0] == 0
    assert not leftover.exists()
    assert sweep_scratch() == []


def test_the_gate_compares_like_with_like_and_says_so(
    tracking_settings: Settings, tmp_path: Path, capsys: Capture
) -> None:
    s, flags = tracking_settings, store_flags(tracking_settings)
    name = registered(s, tmp_path, capsys, versions=2)
    data = colour_dataset(tmp_path / "eval", per_class=4)
    assert run(capsys, *flags, "export", name, "1", "--variants", "fp32,int8",
               "--data", data)[0] == 0  # fmt: skip
    gate = write_gate(tmp_path / "gate.yaml", data, min_samples=5)
    assert run(capsys, *flags, "promote", name, "1", "--to", "production", "--gate", gate)[0] == 0
    code, out, err = run(capsys, *flags, "promote", name, "2", "--to", "production",
                         "--gate", gate)  # fmt: skip
    assert code == 0, err
    compared = next(line for line in out.splitlines() if line.startswith("compared: "))
    served = Registry(s).open_session(f"{name}/1", tmp_path / "c").variant
    if served == "int8":  # v1 serves INT8, v2 only has FP32: both are measured on FP32
        assert "both fp32" in compared
    else:
        assert "(fp32 vs fp32)" in compared
    assert "accuracy 1.0000 (fp32) -> 1.0000 (fp32)" in " ".join(out.split())


def test_a_version_stores_its_onnx_file_once_and_stock_mlflow_still_loads_it(
    tracking_settings: Settings, tmp_path: Path, capsys: Capture
) -> None:
    name = registered(tracking_settings, tmp_path, capsys)
    client = RegistryClient.from_settings(tracking_settings)
    uri = client.artifact_uri(client.get_version(name, "1"))
    with mlflow_globals(TrackingConfig.from_settings(tracking_settings)):
        import mlflow
        import mlflow.onnx

        top = {Path(a.path).name for a in mlflow.artifacts.list_artifacts(artifact_uri=uri)}
        inside = mlflow.artifacts.list_artifacts(artifact_uri=f"{uri}/bundle")
        model = mlflow.onnx.load_model(f"models:/{name}/1")
    assert "model.onnx" not in top
    assert {"MLmodel", "bundle"} <= top
    assert "model.onnx" in {Path(a.path).name for a in inside}
    assert [i.name for i in model.graph.input] == ["input"]  # the colour model, loaded


def test_loaders_racing_on_an_empty_cache_all_get_the_version(
    tracking_settings: Settings, tmp_path: Path, capsys: Capture
) -> None:
    name = registered(tracking_settings, tmp_path, capsys)
    registry = Registry(tracking_settings)
    for attempt in range(3):
        cache = tmp_path / f"cache-{attempt}"
        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(registry.fetch_bundle, [f"{name}/1"] * 4, [cache] * 4))
        assert answers == [("1", cache / name / "1")] * 4
        load_bundle(cache / name / "1")


def test_a_warm_cache_still_checks_signatures_and_a_missing_piece_is_tampering(
    tracking_settings: Settings, tmp_path: Path, capsys: Capture
) -> None:
    s, flags = tracking_settings, store_flags(tracking_settings)
    name = registered(s, tmp_path, capsys)  # registered without a key: unsigned
    cache = tmp_path / "cache"
    Registry(s).fetch_bundle(f"{name}/1", cache)  # warm
    keyed = s.model_copy(update={"registry": s.registry.model_copy(update={"signing_key": "k"})})
    with pytest.raises(BundleIntegrityError, match=f"{name}/1 bundle: has no signature"):
        Registry(keyed).fetch_bundle(f"{name}/1", cache)
    client = RegistryClient.from_settings(s)
    client._repo(client.artifact_uri(client.get_version(name, "1"))).delete_artifacts("bundle")
    code, out, err = run(capsys, *flags, "bundle", "verify", f"{name}/1")
    assert code == 6
    assert "recorded but missing" in " ".join(out.split())
    code, _, err = run(capsys, *flags, "promote", name, "1", "--to", "production", "--gate",
                       write_gate(tmp_path / "g.yaml", colour_dataset(tmp_path / "e")))  # fmt: skip
    assert code == 6
    assert f"{name}/1 bundle" in err
    assert "recorded but missing" in err


def test_pyfunc_refuses_a_bundle_of_another_model_swapped_in_and_an_unconfigured_registry(
    tracking_settings: Settings, tmp_path: Path, capsys: Capture, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = tracking_settings
    first, second = registered(s, tmp_path, capsys), registered(s, tmp_path, capsys, sharpness=20)
    client = RegistryClient.from_settings(s)
    source = client.download_version_artifacts(client.get_version(first, "1"), "bundle", tmp_path)
    target = client.get_version(second, "1")
    for rel in sorted(p for p in source.rglob("*") if p.is_file()):
        client.upload_version_artifact(
            target, rel, "/".join(["bundle", *rel.relative_to(source).parent.parts]).rstrip("/")
        )
    with mlflow_globals(TrackingConfig.from_settings(s)):
        import mlflow

        with pytest.raises(BundleIntegrityError, match=f"no registered version of '{second}'"):
            mlflow.pyfunc.load_model(f"models:/{second}/1")
        local = mlflow.artifacts.download_artifacts(
            f"models:/{first}/1", dst_path=str(tmp_path / "m")
        )
    monkeypatch.chdir(tmp_path)
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        monkeypatch.delenv(name, raising=False)
    from visionyard.errors import TrackingError

    with pytest.raises(TrackingError, match="none is configured"):
        mlflow.pyfunc.load_model(local)
    assert not (tmp_path / "mlflow.db").exists()


def test_promote_checks_the_version_and_old_versions_can_be_signed_after_a_check(
    tracking_settings: Settings, tmp_path: Path, capsys: Capture, monkeypatch: pytest.MonkeyPatch
) -> None:
    s, flags = tracking_settings, store_flags(tracking_settings)
    name = registered(s, tmp_path, capsys, versions=2)
    tamper_and_reseal(s, name, "2", tmp_path)
    code, _, err = run(capsys, *flags, "promote", name, "2", "--to", "production")
    assert code == 6
    assert f"{name}/2" in err
    assert "recorded at registration" in err
    assert RegistryClient.from_settings(s).get_model(name).aliases == {}
    monkeypatch.setenv("VISIONYARD_REGISTRY__SIGNING_KEY", "k3y")
    code, _, err = run(capsys, *flags, "promote", name, "1", "--to", "production")
    assert code == 6
    assert "visionyard bundle sign" in err  # registered before the key: unsigned, says the fix
    assert run(capsys, *flags, "bundle", "sign", f"{name}/2")[0] == 6  # tampered: never signed
    code, out, _ = run(capsys, *flags, "bundle", "sign", f"{name}/1")
    assert code == 0
    assert "vy.bundle_signature" in out
    assert run(capsys, *flags, "promote", name, "1", "--to", "production")[0] == 0


def test_register_can_store_the_reference_profile_at_once(
    tracking_settings: Settings, tmp_path: Path, capsys: Capture
) -> None:
    run_id = log_colour_run(tracking_settings, tmp_path)
    name = f"profiled-{uuid.uuid4().hex[:8]}"
    data = colour_dataset(tmp_path / "eval", per_class=4)
    code, out, err = run(capsys, *store_flags(tracking_settings), "register", run_id,
                         "--name", name, "--profile-data", data)  # fmt: skip
    assert code == 0, err
    assert f"stored beside {name}/1" in out
    tags = RegistryClient.from_settings(tracking_settings).get_version(name, "1").tags
    assert tags["vy.profile_digest"].startswith("sha256:")
