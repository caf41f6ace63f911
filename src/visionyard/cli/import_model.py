"""``visionyard import``: bring your own model (ONNX file, or torch factory + weights).

The contract comes from ``--preset`` (imagenet, inception, tflite, yolo: ``--list-presets``
prints their numbers) or ``--contract FILE``, then what the model fixes, then the flags below
(``--set FIELD=VALUE`` reaches any other contract field). Labels from ``--labels FILE`` (text,
one per line, or JSON), else the contract file, else the model's metadata. Exit codes: 3 a bad
source or option, 5 a contract or labels that do not fit the model, 10 parity failed, 11 torch
missing (torch sources only), 7 tracking store unreachable, 9 the same bundle is already a
version (``--force``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.markup import escape
from rich.table import Table

from visionyard.cli.console import app_context, err, out
from visionyard.errors import ConfigError

if TYPE_CHECKING:
    from visionyard.importer import ImportRequest, ImportResult

_PRE = "preprocessing"


def import_model(
    ctx: typer.Context,
    name: str | None = typer.Option(None, "--name", "-n", help="Registered model name."),
    onnx: Path | None = typer.Option(None, "--onnx", help="An ONNX model file."),
    torch_factory: str | None = typer.Option(
        None, "--torch", help="MODULE:FACTORY building the torch module (e.g. pkg.models:net)."
    ),
    weights: Path | None = typer.Option(
        None, "--weights", help="Weights for --torch: .safetensors or a torch state dict."
    ),
    factory_arg: list[str] = typer.Option(
        [], "--factory-arg", help="KEY=VALUE keyword for the factory (repeatable; JSON values)."
    ),
    preset: str | None = typer.Option(None, "--preset", help="imagenet|inception|tflite|yolo"),
    contract: Path | None = typer.Option(None, "--contract", help="A vision contract (JSON)."),
    labels: Path | None = typer.Option(None, "--labels", help="Labels: text (one a line) or JSON."),
    dedupe_labels: bool = typer.Option(False, "--dedupe-labels", help="Suffix repeats _2, _3."),
    task: str | None = typer.Option(None, "--task", help="classification | detection"),
    input_size: str | None = typer.Option(None, "--input-size", help="SIDE or HxW."),
    resize: str | None = typer.Option(None, "--resize", help="resize|center_crop|letterbox"),
    resize_shorter: int | None = typer.Option(None, "--resize-shorter", help="center_crop side."),
    color_order: str | None = typer.Option(None, "--color-order", help="RGB | BGR"),
    layout: str | None = typer.Option(None, "--layout", help="NCHW | NHWC"),
    scale: str | None = typer.Option(None, "--scale", help="Pixel scale, e.g. 1/255 or 1."),
    mean: str | None = typer.Option(None, "--mean", help="M or M1,M2,M3 (tensor channel order)."),
    std: str | None = typer.Option(None, "--std", help="S or S1,S2,S3."),
    input_name: str | None = typer.Option(None, "--input-name", help="The model's image input."),
    output: str | None = typer.Option(None, "--output", help="Classification output to read."),
    scores: str | None = typer.Option(None, "--scores", help="logits | probabilities"),
    set_fields: list[str] = typer.Option(
        [], "--set", help="FIELD=VALUE for any contract field (dotted, repeatable)."
    ),
    samples: Path | None = typer.Option(None, "--samples", help="Images for the parity check."),
    reference: Path | None = typer.Option(
        None, "--reference", help="Images like the training data: checks the value range."
    ),
    parity_max_abs: float = typer.Option(1e-3, "--parity-max-abs", help="Largest output diff."),
    parity_min_agreement: float = typer.Option(1.0, "--parity-min-agreement", help="Top-1."),
    origin: str = typer.Option("", "--origin", help="Where the model comes from (text or URL)."),
    opset: int = typer.Option(17, "--opset", help="ONNX opset for --torch exports."),
    semver: str | None = typer.Option(None, "--semver", help="Explicit MAJOR.MINOR.PATCH."),
    parent: str | None = typer.Option(None, "--parent", help="Version this one derives from."),
    force: bool = typer.Option(False, "--force", help="Register a bundle already registered."),
    experiment: str | None = typer.Option(None, "--experiment", help="MLflow experiment."),
    list_presets: bool = typer.Option(False, "--list-presets", help="Print the presets, exit."),
) -> None:
    """Import an existing model as a new registered version (an "import" run, then register)."""
    if list_presets:
        _print_presets()
        return
    flags = {
        "task": task, "input_size": input_size, "resize": resize, "resize_shorter": resize_shorter,
        "color_order": color_order, "layout": layout, "scale": scale, "mean": mean, "std": std,
        "input_name": input_name, "output": output, "scores": scores,
    }  # fmt: skip
    from visionyard.importer import (
        CheckSpec,
        ContractSpec,
        ImportRequest,
        LabelSpec,
        ModelSource,
        RegisterSpec,
    )
    from visionyard.importer.contract_spec import deep_merge, parse_set

    if not name:
        raise ConfigError("--name is required: the registered model the version goes to")
    kwargs = dict(_pair(a) for a in factory_arg)
    overrides = deep_merge(contract_flags(flags), parse_set(set_fields))
    request = ImportRequest(
        source=ModelSource(onnx, torch_factory, weights, kwargs, opset),
        register=RegisterSpec(name, semver, parent, force),
        contract=ContractSpec(preset, contract, overrides),
        labels=LabelSpec(labels, dedupe_labels),
        checks=CheckSpec(samples, reference, parity_max_abs, parity_min_agreement),
        origin=origin,
        experiment=experiment,
    )
    _run(ctx, request)


def _run(ctx: typer.Context, request: ImportRequest) -> None:
    from visionyard.importer import import_model as run_import

    settings = app_context(ctx).settings
    with err().status(f"importing {escape(request.source.path.name)}"):
        result = run_import(request, settings)
    for note in result.prepared.notes:
        err().print(f"[yellow]warning:[/] {escape(note)}", highlight=False, soft_wrap=True)
    _print_result(request, result)


def _pair(text: str) -> tuple[str, Any]:
    from visionyard.importer.contract_spec import json_or_text

    key, sep, raw = text.partition("=")
    if not sep or not key.strip().isidentifier():
        raise ConfigError(f"--factory-arg takes KEY=VALUE (e.g. num_classes=10), not {text!r}")
    return key.strip(), json_or_text(raw)


def contract_flags(flags: dict[str, Any]) -> dict[str, Any]:
    """The contract flags that were given, as a nested override dict."""
    given = {k: v for k, v in flags.items() if v is not None}
    keys = ("resize", "resize_shorter", "color_order", "layout")
    pre: dict[str, Any] = {k: given[k] for k in keys if k in given}
    if "input_size" in given:
        height, width = _size(given["input_size"])
        pre["input_size"] = {"height": height, "width": width}
    if "scale" in given:
        pre["scale"] = _number(given["scale"], "--scale")
    pre.update({k: _triple(given[k], f"--{k}") for k in ("mean", "std") if k in given})
    decoding = {k: given[k] for k in ("output", "scores") if k in given}
    top: dict[str, Any] = {k: given[k] for k in ("task", "input_name") if k in given}
    if pre:
        top[_PRE] = pre
    if decoding:
        top["decoding"] = decoding
    return top


def _size(text: str) -> tuple[int, int]:
    parts = text.lower().split("x")
    try:
        numbers = [int(p) for p in parts]
    except ValueError:
        numbers = []
    if len(numbers) in (1, 2):
        return numbers[0], numbers[-1]
    raise ConfigError(
        f"--input-size must be SIDE or HEIGHTxWIDTH (e.g. 224 or 224x320), not {text!r}"
    )


def _number(text: str, flag: str) -> float:
    top, sep, bottom = text.partition("/")
    try:
        return float(top) / float(bottom) if sep else float(top)
    except (ValueError, ZeroDivisionError):
        raise ConfigError(
            f"{flag} must be a number or a fraction like 1/255, not {text!r}"
        ) from None


def _triple(text: str, flag: str) -> list[float]:
    values = [_number(part.strip(), flag) for part in text.split(",")]
    if len(values) == 1:
        return values * 3
    if len(values) != 3:
        raise ConfigError(f"{flag} takes one value or three (per channel), not {text!r}")
    return values


def _print_result(request: ImportRequest, result: ImportResult) -> None:
    name, version = request.register.name, result.version
    prepared = result.prepared
    pre = prepared.contract.preprocessing
    table = Table(title=f"imported {escape(name)} version {version}")
    table.add_column("")
    table.add_column("value")
    rows = [
        ("run id", result.run_id),
        ("source", f"{request.source.path.name} ({request.source.kind})"),
        ("sha256", result.source_sha256),
        ("origin", request.origin or "(not given)"),
        ("contract", f"{request.contract.origin()}, {_task_text(prepared.contract)}"),
        ("input", _input_text(pre)),
        ("normalise", f"scale {pre.scale:.6g}, mean {_vec(pre.mean)}, std {_vec(pre.std)}"),
        ("labels", f"{len(prepared.contract.labels)} ({prepared.labels_source})"),
        ("parity", _parity_text(result)),
        ("semver", result.registration.semver),
    ]
    for key, value in rows:
        table.add_row(key, escape(value))
    console = out()
    console.print(table)
    console.print(f"registered {escape(name)} version {version} from run {result.run_id}",
                  highlight=False)  # fmt: skip
    console.print(f"serve it: visionyard serve --model {escape(name)}={escape(name)}/{version}",
                  highlight=False)  # fmt: skip


def _task_text(contract: Any) -> str:
    """The task; for a detector also the output layout read and its outputs."""
    decoding = contract.decoding
    if contract.task != "detection":
        return str(contract.task)
    names = ", ".join(decoding.output_fields.values())
    return f"detection, layout {decoding.layout} ({names})"


def _input_text(pre: Any) -> str:
    size = f"{pre.input_size.height}x{pre.input_size.width}"
    geometry = pre.resize + (f" (shorter side {pre.resize_shorter})" if pre.resize_shorter else "")
    return f"{size} {pre.layout} {pre.dtype} {pre.color_order}, {geometry}"


def _vec(values: tuple[float, ...]) -> str:
    return "(" + ", ".join(f"{v:.4g}" for v in values) + ")"


def _parity_text(result: ImportResult) -> str:
    parity = result.prepared.parity
    if parity is None:
        return "not applicable (the source is the ONNX model itself)"
    return (
        f"max abs diff {parity.max_abs_diff:.2e}, top-1 agreement {parity.top1_agreement:.4f} "
        f"on {parity.n_images} images (passed)"
    )


def _print_presets() -> None:
    from visionyard.contract.presets import PRESETS

    table = Table(title="contract presets (pixels 0..255; value = (pixel * scale - mean) / std)")
    for column in ("preset", "task", "input", "scale", "mean", "std", "what"):
        table.add_column(column)
    for preset in PRESETS.values():
        pre = preset.contract().preprocessing
        table.add_row(
            preset.name, preset.contract().task, _input_text(pre), f"{pre.scale:.6g}",
            _vec(pre.mean), _vec(pre.std), escape(preset.description),
        )  # fmt: skip
    out().print(table)
