"""Labels of an imported model: from a file, from the model's own metadata, checked for duplicates.

A labels file is a JSON list (``["cat", "dog"]``), a JSON object mapping class indices to
names (``{"0": "cat", "1": "dog"}``, as Ultralytics writes ``names``) or plain text with one
label per line (blank lines ignored). ONNX models may carry labels in ``metadata_props``
(``labels``/``classes`` as a JSON list, or an Ultralytics-style ``names`` dict, which may be a
Python literal); safetensors files in their string metadata (``labels``, as visionyard's own
checkpoints do).
"""

from __future__ import annotations

import ast
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from visionyard.errors import ConfigError, ContractError

METADATA_KEYS = ("labels", "classes", "names")


@dataclass(frozen=True)
class Labels:
    """The label names and where they came from (``file``, ``metadata:<key>``, ``contract``,
    ``generated``)."""

    names: tuple[str, ...]
    source: str


def read_labels_file(path: Path) -> tuple[str, ...]:
    """Labels from a JSON list/object or a text file with one label per line."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the labels file {path}: {exc}") from exc
    stripped = text.strip()
    if stripped.startswith(("[", "{")):
        try:
            value = json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"labels file {path} is not valid JSON: {exc}") from exc
        names = parse_label_value(value, str(path))
    else:
        names = tuple(line.strip() for line in text.splitlines() if line.strip())
    if not names:
        raise ConfigError(f"labels file {path} lists no labels")
    return names


def parse_label_value(value: Any, where: str) -> tuple[str, ...]:
    """A JSON list of names, or a mapping ``index -> name`` covering 0..N-1."""
    if isinstance(value, Mapping):
        return _from_index_map(value, where)
    if isinstance(value, Sequence) and not isinstance(value, str):
        return tuple(str(v) for v in value)
    raise ConfigError(f"labels in {where} must be a list of names or an index -> name mapping")


def _from_index_map(value: Mapping[Any, Any], where: str) -> tuple[str, ...]:
    try:
        indexed = {int(k): str(v) for k, v in value.items()}
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"labels in {where}: mapping keys must be class indices") from exc
    if sorted(indexed) != list(range(len(indexed))):
        raise ConfigError(f"labels in {where}: class indices must run 0..{len(indexed) - 1}")
    return tuple(indexed[i] for i in range(len(indexed)))


def labels_from_metadata(props: Mapping[str, str], where: str) -> Labels | None:
    """Labels from string metadata (ONNX ``metadata_props``, safetensors metadata), if any."""
    for key in METADATA_KEYS:
        raw = props.get(key)
        if raw is None:
            continue
        value = _literal(raw)
        if value is None:
            raise ConfigError(f"{where}: metadata {key!r} is neither JSON nor a Python literal")
        return Labels(parse_label_value(value, f"{where} metadata {key!r}"), f"metadata:{key}")
    return None


def _literal(raw: str) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        pass
    try:  # Ultralytics writes names as str(dict): {0: 'person', 1: 'bicycle'}
        return ast.literal_eval(raw)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return None


def generated_labels(count: int) -> Labels:
    return Labels(tuple(f"class_{i}" for i in range(count)), "generated")


def duplicates(names: Sequence[str]) -> dict[str, list[int]]:
    """Each duplicated name and the indices it appears at."""
    seen: dict[str, list[int]] = {}
    for index, name in enumerate(names):
        seen.setdefault(name, []).append(index)
    return {name: where for name, where in seen.items() if len(where) > 1}


def check_unique(names: Sequence[str]) -> None:
    """One :class:`ContractError` naming every duplicated label and where it appears."""
    found = duplicates(names)
    if not found:
        return
    shown = "; ".join(
        f"{name!r} at {', '.join(map(str, where))}" for name, where in list(found.items())[:10]
    )
    more = f" (and {len(found) - 10} more)" if len(found) > 10 else ""
    raise ContractError(
        "labels",
        f"duplicate label names: {shown}{more}; rename them, or pass --dedupe-labels to suffix "
        "the repeats _2, _3, ...",
    )


def dedupe(names: Sequence[str]) -> tuple[str, ...]:
    """Repeats get ``_2``, ``_3``... (skipping suffixes that are themselves labels)."""
    taken = set(names)
    counts: dict[str, int] = {}
    result: list[str] = []
    for name in names:
        counts[name] = counts.get(name, 0) + 1
        if counts[name] == 1:
            result.append(name)
            continue
        n = counts[name]
        while f"{name}_{n}" in taken:
            n += 1
        counts[name] = n
        taken.add(f"{name}_{n}")
        result.append(f"{name}_{n}")
    return tuple(result)
