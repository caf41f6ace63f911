"""``visionyard export NAME VERSION --variants pruned50,pruned50-int8`` through the CLI."""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.cli import run, store_flags
from tests.fixtures.models import TrainedBundle
from tests.fixtures.runtime import write_colour_bundle
from visionyard.bundle.packs import PACK_REPORT
from visionyard.registry.trust import pack_location, record_of
from visionyard.tracking import get_run_info
from visionyard.tracking.registry_client import RegistryClient, VersionInfo

FAST = ["--calibration-count", "10", "--threads", "1", "--finetune-epochs", "1", "--no-profile"]


def test_pruned_variants_are_measured_stored_and_listed_with_their_lineage(
    trained_bundle: TrainedBundle,
    synth_classification: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = trained_bundle.settings
    flags = store_flags(settings)
    name = f"pruned-{uuid.uuid4().hex[:8]}"
    assert run(capsys, *flags, "register", trained_bundle.run_id, "--name", name)[0] == 0
    variants = ["--variants", "pruned50,pruned50-int8", "--force"]
    code, out, err = run(
        capsys, *flags, "export", name, "1", "--data", synth_classification, *variants, *FAST
    )
    assert code == 0, err
    assert "pruned50-int8" in out
    assert "Traceback" not in err

    client = RegistryClient.from_settings(settings)
    info = client.get_version(name, "1")
    assert info.tags["vy.variants"] == "fp32,pruned50,pruned50-int8"
    reports = {n: _pack_report(client, info, n, tmp_path) for n in ("pruned50", "pruned50-int8")}
    plain, int8 = reports["pruned50"], reports["pruned50-int8"]
    assert (plain["precision"], int8["precision"]) == ("fp32", "int8")
    assert int8["calibration"]["count"] == 10
    pruning = plain["pruning"]
    assert pruning == int8["pruning"]  # one pruned model behind both
    assert pruning["ratio"] == 0.5
    assert pruning["params_after"] < 0.5 * pruning["params_before"]
    assert pruning["macs_after"] < 0.5 * pruning["macs_before"]
    assert pruning["source_run_id"] == trained_bundle.run_id
    assert pruning["same_dataset_as_training"] is True
    for report in reports.values():
        quality, speed = report["quality"], report["speed"]
        assert quality["metric"] == "accuracy"
        assert 0.0 <= quality["agreement"] <= 1.0
        assert [c["label"] for c in quality["per_class"]]  # per-class deltas vs FP32
        assert speed["latency_p50_ms"] > 0
        assert speed["throughput_batch_size"] == 16
        assert speed["throughput_images_per_s"] > 0
    reference = _pack_report(client, info, "fp32", tmp_path)
    assert plain["file_size_bytes"] < 0.6 * reference["file_size_bytes"]

    finetune = get_run_info(pruning["finetune_run_id"], settings=settings)
    assert finetune.status == "FINISHED"
    assert finetune.tags["visionyard.source"] == "prune"
    assert finetune.tags["visionyard.prune.source_run"] == trained_bundle.run_id
    assert finetune.params["prune_ratio"] == "0.5"
    assert "val_accuracy" in finetune.metrics
    assert [d.context for d in finetune.datasets] == ["fine-tuning"]
    # at the training's own learning rate (a tenth left a ResNet-18 pruned by half 7-15 points
    # under FP32 on the shapes set; its own rate recovered it, bench_pruning.py)
    trained_lr = float(get_run_info(trained_bundle.run_id, settings=settings).params["lr"])
    assert float(finetune.params["lr"]) == trained_lr == pruning["finetune_lr"]

    code, shown, _ = run(capsys, *flags, "models", "show", f"{name}/1")
    assert code == 0
    shown = " ".join(shown.split())  # rich wraps long cells
    assert "variant pruned50-int8" in shown
    assert "pruned 50% (magnitude L2" in shown
    assert pruning["finetune_run_id"][:8] in shown


def _pack_report(
    client: RegistryClient, info: VersionInfo, name: str, tmp_path: Path
) -> dict[str, Any]:
    """The full report stored in the variant's pack beside the version."""
    digest = record_of(info).variants[name]
    where = f"{pack_location(name, digest)}/{PACK_REPORT}"
    path = client.download_version_artifacts(info, where, tmp_path / name)
    report: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return report


@pytest.mark.parametrize("variant", ["pruned0", "pruned95", "prunedabc"])
def test_a_pruning_ratio_out_of_range_is_one_line(
    variant: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(
        capsys, "export", "--bundle", tmp_path, "--data", tmp_path, "--variants", variant
    )
    assert code == 10
    assert f"invalid pruned variant {variant!r}" in err
    assert "whole percent from 1 to 90" in err
    assert len(err.strip().splitlines()) == 1


def test_a_bundle_without_a_training_run_cannot_be_pruned(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = write_colour_bundle(tmp_path / "b").path
    data = _colour_data(tmp_path / "data")
    code, _, err = run(
        capsys, "export", "--bundle", bundle, "--data", data, "--variants", "pruned50"
    )
    assert code == 10
    assert "pruning needs a version trained with `visionyard train`" in err
    assert "Traceback" not in err


def test_without_torch_pruning_the_extra_to_install_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "torch_pruning", None)  # import raises ImportError
    bundle = write_colour_bundle(tmp_path / "b").path
    data = _colour_data(tmp_path / "data")
    code, _, err = run(
        capsys, "export", "--bundle", bundle, "--data", data, "--variants", "pruned50"
    )
    assert code == 11
    assert "pip install 'visionyard[prune]'" in err


def _colour_data(root: Path) -> Path:
    from PIL import Image

    from tests.fixtures.runtime import COLOURS

    for split in ("train", "val"):
        for label, colour in COLOURS.items():
            (root / split / label).mkdir(parents=True)
            Image.new("RGB", (12, 12), colour).save(root / split / label / "0.png")
    return root
