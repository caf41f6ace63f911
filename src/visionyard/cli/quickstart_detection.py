"""``visionyard quickstart --task detection``: the same story for a detector.

Synthetic COCO data (v1, and a larger v2 made with the same seed: a superset), two tracked
detector runs (mAP, per-class AP, PR curves, boxes parity), registration and a diff, a gated
promotion on v1's data (mAP and per-class AP) and a rollback, an INT8 variant measured against
FP32 on mAP, then ``shapes-detector@production`` served in this process: boxes over REST and
gRPC in the original image's pixels, a hot swap to v2 and a rollback while serving.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image

if TYPE_CHECKING:
    from visionyard.cli.quickstart import Step, Story

MODEL = "shapes-detector"
DETECTOR: dict[str, Any] = {"arch": "small_cnn", "width": 1.0, "lr": 3e-3, "patience": None}
IMAGES = (400, 640)
#: the served sample: an image of v1 padded to 96x64, so that the letterbox is undone visibly
SAMPLE_SIZE = (96, 64)


def step_data(story: Story) -> None:
    """Synthesize v1 and a larger v2 (same seed: a superset), manifest both, diff them."""
    from visionyard.data import build_manifest, diff_manifests
    from visionyard.data.synth import make_detection_set

    data = story.workdir / "data"
    for name, count in zip(("v1", "v2"), IMAGES, strict=True):
        make_detection_set(data / name, seed=story.seed, n_images=count)
    v1, v2 = build_manifest(data / "v1"), build_manifest(data / "v2")
    diff = diff_manifests(v1, v2)
    story.facts.update(data_v1=data / "v1", data_v2=data / "v2", manifest_v1=v1)
    story.table(
        "datasets (COCO)",
        {
            "v1": f"{len(v1.entries)} images, digest {v1.digest[:23]}",
            "v2": f"{len(v2.entries)} images, digest {v2.digest[:23]}",
            "v1 -> v2": f"{len(diff.added)} added, {len(diff.removed)} removed",
        },
    )


def _train(story: Story, data: Path, name: str, epochs: int) -> Any:
    from visionyard.train import make_config, train

    config = make_config(data=data, task="detection", epochs=epochs, seed=story.seed, **DETECTOR)
    result = train(config, story.settings, progress=True, console=story.console)
    best = result.best_metrics
    story.table(
        f"detector run {name}",
        {
            "run id": result.run_id,
            "val mAP@[.5:.95]": f"{best['val_map_50_95']:.3f}",
            "val mAP@.5": f"{best['val_map_50']:.3f}",
            "best epoch": result.best_epoch,
            "bundle": result.bundle_path,
            "onnx parity": result.parity.describe(),
        },
    )
    return result


def step_train_v1(story: Story) -> None:
    """Train v1 briefly; register it and put it in production."""
    story.facts["run_v1"] = _train(story, story.facts["data_v1"], "v1", story.epochs)
    story.cli("register", story.facts["run_v1"].run_id, "--name", MODEL)
    story.cli("promote", MODEL, "1", "--to", "production", "--reason", "first release")


def step_train_v2(story: Story) -> None:
    """Train v2 longer on more data, register it and diff it against v1 (per-class AP)."""
    story.facts["run_v2"] = _train(story, story.facts["data_v2"], "v2", 3 * story.epochs)
    story.cli("register", story.facts["run_v2"].run_id, "--name", MODEL, "--parent", "1")
    story.cli("models", "diff", MODEL, "1", "2")


def step_gate(story: Story) -> None:
    """Gated promotion of v2 on v1's pinned data (mAP, per-class AP), then a rollback."""
    manifest = story.facts["manifest_v1"]
    gate = story.workdir / "gate.yaml"
    gate.write_text(
        f"dataset: {story.facts['data_v1']}\ndataset_digest: {manifest.digest}\n"
        "max_metric_drop: 0.02\nmax_class_drop: 0.05\nmin_samples: 20\n"
    )
    story.cli("promote", MODEL, "2", "--to", "production", "--gate", str(gate))
    story.cli("rollback", MODEL, "--reason", "quickstart: demonstrate rollback")
    story.cli("models", "history", MODEL)


def step_export(story: Story) -> None:
    """INT8 variant of v2, calibrated and measured against FP32 on mAP and per-class AP."""
    data = str(story.facts["data_v2"])
    story.cli("export", MODEL, "2", "--variants", "fp32,int8", "--data", data)


def step_serve(story: Story) -> None:
    """Serve the detector: boxes over REST and gRPC, hot swap to v2, roll back while serving."""
    from visionyard.cli.quickstart_serve import wait_for_version
    from visionyard.serving.app import running_server

    serving = story.settings.serving.model_copy(
        update={
            "models": {MODEL: f"{MODEL}@production"},
            "http_port": 0,
            "grpc_port": 0,
            "poll_interval_s": 1.0,
        }  # fmt: skip
    )
    settings = story.settings.model_copy(update={"serving": serving})
    image = _sample(story)
    with running_server(settings) as server:
        story.console.print(f"serving http={server.http_url} grpc={server.grpc_target}")
        _show(story, server.http_url, server.grpc_target, image)
        story.cli("promote", MODEL, "2", "--to", "production", "--reason", "hot swap demo")
        wait_for_version(story, server.http_url, "2", MODEL)
        _show(story, server.http_url, server.grpc_target, image)
        story.cli("rollback", MODEL, "--reason", "quickstart: roll back while serving")
        wait_for_version(story, server.http_url, "1", MODEL)


def _sample(story: Story) -> Path:
    """The first v1 image on a wider grey canvas (offset 16 px): boxes come back in ITS
    pixels, the letterbox undone."""
    source = Image.open(sorted((Path(story.facts["data_v1"]) / "images").glob("*.png"))[0])
    canvas = Image.new("RGB", SAMPLE_SIZE, (128, 128, 128))
    canvas.paste(source.convert("RGB"), (16, 0))
    target = story.workdir / "sample_96x64.png"
    canvas.save(target)
    coco = json.loads((Path(story.facts["data_v1"]) / "annotations.json").read_text())
    story.facts["sample_truth"] = [
        (
            a["bbox"][0] + 16,
            a["bbox"][1],
            a["bbox"][0] + a["bbox"][2] + 16,
            a["bbox"][1] + a["bbox"][3],
        )
        for a in coco["annotations"]
        if a["image_id"] == coco["images"][0]["id"]
    ]
    return target


def _show(story: Story, http_url: str, grpc_target: str, image: Path) -> None:
    from visionyard.cli.quickstart_serve import rest_predict

    data = image.read_bytes()
    rest = rest_predict(http_url, data, MODEL)
    boxes = rest["detections"][0]
    rows = {
        f"REST  {b['label']} {b['score']:.2f}": "box " + ", ".join(f"{v:.1f}" for v in b["box"])
        for b in boxes[:6]
    }
    for number, box in enumerate(story.facts["sample_truth"], start=1):
        rows[f"truth {number}"] = "box " + ", ".join(f"{v:.1f}" for v in box)
    grpc_version, grpc_boxes = _grpc_detections(grpc_target, data)
    rows["REST  version / boxes"] = f"{rest['model_version']} / {len(boxes)}"
    rows["gRPC  version / boxes"] = f"{grpc_version} / {len(grpc_boxes)}"
    story.table(f"detections in {image.name} (96x64, original pixels)", rows)


def _grpc_detections(target: str, data: bytes) -> tuple[str, list[dict[str, Any]]]:
    import grpc

    from visionyard.serving.proto import grpc_service_pb2 as pb
    from visionyard.serving.proto import grpc_service_pb2_grpc as pb_grpc

    tensor = pb.ModelInferRequest.InferInputTensor(name="image", datatype="BYTES", shape=[1])
    wanted = [pb.ModelInferRequest.InferRequestedOutputTensor(name="detections")]
    request = pb.ModelInferRequest(
        model_name=MODEL, inputs=[tensor], outputs=wanted,
        raw_input_contents=[struct.pack("<I", len(data)) + data],
    )  # fmt: skip
    with grpc.insecure_channel(target) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)  # type: ignore[no-untyped-call]
        reply = stub.ModelInfer(request, timeout=30)
    raw = reply.raw_output_contents[0]
    found: list[dict[str, Any]] = json.loads(raw[4 : 4 + struct.unpack("<I", raw[:4])[0]])
    return reply.model_version, found


STEPS: list[tuple[str, Step]] = [
    ("Synthetic COCO data, manifests and their diff", step_data),
    ("Train detector v1, register it, release it", step_train_v1),
    ("Train v2 on more data, register, diff", step_train_v2),
    ("Gated promotion of v2 (mAP, per-class AP), then rollback", step_gate),
    ("Export an INT8 variant of v2 (mAP delta)", step_export),
    (f"Serve {MODEL}@production: boxes over REST and gRPC, hot swap, rollback", step_serve),
]
