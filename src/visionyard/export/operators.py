"""Operators a model uses that ONNX Runtime cannot run: found before converting, named in errors.

A model with an unknown operator fails deep inside shape inference or the quantizer with a
message about node names. This check runs first: every node of a standard domain must have an
ONNX schema, every other domain must be one ONNX Runtime implements, and the model must load
in ONNX Runtime; whatever fails is reported as ``domain::OpType`` with the fix.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import onnx
import onnx.defs

from visionyard.errors import ExportError

STANDARD_DOMAINS = frozenset({"", "ai.onnx", "ai.onnx.ml"})
ORT_DOMAINS = frozenset({"com.microsoft", "com.microsoft.nchwc", "com.ms.internal.nhwc"})
_ORT_OP = (
    re.compile(r"No Op registered for (\w+)"),
    re.compile(r"Fatal error: ([\w.]*:\w+)\(-?\d+\) is not a registered function/op"),
    re.compile(r"Could not find an implementation for (\w+\(\d+\))"),
)


def unsupported_operators(model: onnx.ModelProto) -> list[str]:
    """``domain::OpType`` of every node type neither ONNX nor ONNX Runtime defines."""
    local = {(f.domain, f.name) for f in model.functions}
    found = {
        _qualified(node)
        for node in _nodes(model.graph)
        if not _known(node) and (node.domain, node.op_type) not in local
    }
    return sorted(found)


def check_operators(model: onnx.ModelProto, what: str = "the model") -> None:
    """Raise :class:`ExportError` naming the operators ONNX Runtime cannot run."""
    unknown = unsupported_operators(model)
    if unknown:
        raise ExportError(
            f"{what} uses operator(s) ONNX Runtime does not support: {', '.join(unknown)}; "
            "replace them with standard ONNX operators (or export at another opset)"
        )


def ort_load_error(exc: BaseException, what: str) -> ExportError:
    """An :class:`ExportError` for ONNX Runtime refusing a model, naming the operator."""
    text = str(exc)
    for pattern in _ORT_OP:
        found = pattern.search(text)
        if found:
            return ExportError(
                f"ONNX Runtime cannot run {what}: operator {found.group(1)} is not supported "
                f"on this execution provider ({text.strip().splitlines()[0]})"
            )
    return ExportError(f"ONNX Runtime cannot load {what}: {text.strip()}")


def _nodes(graph: onnx.GraphProto) -> Iterable[onnx.NodeProto]:
    for node in graph.node:
        yield node
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.GRAPH:
                yield from _nodes(attribute.g)
            for sub in attribute.graphs:
                yield from _nodes(sub)


def _known(node: onnx.NodeProto) -> bool:
    domain = node.domain or ""
    if domain in STANDARD_DOMAINS:
        return bool(onnx.defs.has(node.op_type, "" if domain == "ai.onnx" else domain))
    return domain in ORT_DOMAINS


def _qualified(node: onnx.NodeProto) -> str:
    return f"{node.domain or 'ai.onnx'}::{node.op_type}"
