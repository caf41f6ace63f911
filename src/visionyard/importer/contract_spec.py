"""The contract of an imported model, built in layers.

1. the base: a contract file (``--contract``), a preset (``--preset``), or, with neither, only
   the task (every other field then comes from the flags, the model or the schema's defaults);
2. what the model itself fixes (input name, dtype, layout, a fixed input size, the output
   names), laid over a preset but never over a contract file: a file is explicit, and where it
   disagrees with the model the runtime's signature check names the field to fix;
3. the flags (``--input-size``, ``--mean``, ``--set preprocessing.pad_value=0`` ...), last;
4. the labels.

When the input size or the resize policy changes and the flags do not give ``resize_shorter``,
it is dropped so the schema's rule (shorter side = longer input side * 256 / 224) applies again.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from visionyard.contract.presets import get_preset
from visionyard.contract.schema import VisionContract, load_contract, parse_contract
from visionyard.errors import ConfigError
from visionyard.importer.layouts import detection_outputs
from visionyard.runtime.signature import TensorMeta

PLACEHOLDER_LABEL = "class_0"


@dataclass(frozen=True)
class ContractSpec:
    """Where the contract comes from: a preset or a file, then flag overrides (nested dict)."""

    preset: str | None = None
    file: Path | None = None
    overrides: Mapping[str, Any] = field(default_factory=dict)

    def origin(self) -> str:
        if self.file is not None:
            return f"file:{self.file.name}"
        return f"preset:{self.preset}" if self.preset else "flags"


def base_data(spec: ContractSpec) -> tuple[dict[str, Any], bool]:
    """The first layer, and whether it is explicit (a contract file)."""
    if spec.preset and spec.file:
        raise ConfigError("give --preset or --contract, not both")
    if spec.file is not None:
        return load_contract(spec.file).model_dump(mode="json"), True
    if spec.preset:
        return get_preset(spec.preset).data(), False
    task = spec.overrides.get("task", "classification")
    return {"task": task, "preprocessing": {}, "decoding": {}}, False


def build_contract(
    spec: ContractSpec,
    facts: Mapping[str, Any],
    outputs: Sequence[TensorMeta] = (),
    labels: Sequence[str] = (PLACEHOLDER_LABEL,),
) -> VisionContract:
    """The four layers (see the module docstring) as one validated contract."""
    data, explicit = base_data(spec)
    before = dict(data.get("preprocessing", {}))
    if not explicit:
        data = deep_merge(data, facts)
        data = deep_merge(data, output_facts(data, outputs, spec.overrides))
    data = deep_merge(data, spec.overrides)
    _refresh_shorter_side(data, before, spec.overrides)
    if "preprocessing" not in data or "input_size" not in data["preprocessing"]:
        raise ConfigError(
            "the input size is unknown: the model does not fix it; give --input-size "
            "(e.g. 224 or 224x224) or a --preset"
        )
    data["labels"] = list(labels)
    return parse_contract(data)


def with_labels(contract: VisionContract, labels: Sequence[str]) -> VisionContract:
    return parse_contract({**contract.model_dump(mode="json"), "labels": list(labels)})


def output_facts(
    data: Mapping[str, Any],
    outputs: Sequence[TensorMeta],
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The output names to read, from the model: its only output (classification); for
    detection the layout and names its output shapes imply (:mod:`visionyard.importer.layouts`;
    ``overrides`` may state the layout or the names)."""
    if not outputs:
        return {}
    names = [o.name for o in outputs]
    if data.get("task") == "classification":
        if len(outputs) == 1:
            return {"decoding": {"output": names[0]}}
        return {"decoding": {"output": "logits"}} if "logits" in names else {}
    stated = deep_merge(data, overrides or {})
    embedding = stated.get("embedding_output")
    considered = [o for o in outputs if o.name != embedding]
    return {"decoding": detection_outputs(considered, stated.get("decoding") or {})}


def _refresh_shorter_side(
    data: dict[str, Any], before: Mapping[str, Any], overrides: Mapping[str, Any]
) -> None:
    pre = data.get("preprocessing")
    if not isinstance(pre, dict) or "resize_shorter" not in pre:
        return
    if "resize_shorter" in (overrides.get("preprocessing") or {}):
        return
    changed = pre.get("input_size") != before.get("input_size")
    if changed or pre.get("resize") != "center_crop":
        del pre["resize_shorter"]


def deep_merge(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """``top`` over ``base``; nested mappings merge, everything else is replaced."""
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def parse_set(items: Sequence[str]) -> dict[str, Any]:
    """``--set a.b=VALUE`` items as a nested dict; VALUE is JSON when it parses, else text."""
    result: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(
                f"--set takes FIELD=VALUE (e.g. preprocessing.pad_value=0), not {item!r}"
            )
        result = deep_merge(result, nest(key.strip(), json_or_text(raw)))
    return result


def nest(dotted: str, value: Any) -> dict[str, Any]:
    node: Any = value
    for part in reversed(dotted.split(".")):
        node = {part: node}
    return dict(node)


def json_or_text(raw: str) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw
