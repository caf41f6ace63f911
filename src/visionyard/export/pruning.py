"""Structured channel pruning of a torch module with torch-pruning's dependency graph.

torch-pruning traces the module once on an example input, groups every layer whose channels
are coupled (a convolution, its batch norm, the next layer's inputs, both sides of a residual
addition, a depthwise convolution's groups) and removes whole channels group by group, so the
pruned module is a smaller dense network that ONNX Runtime runs faster without sparse kernels.
Channels are ranked by the L2 norm of their group's weights (``GroupMagnitudeImportance``); the
classifier ``head`` keeps its outputs (the classes).

What this module adds to the library is the failure handling visionyard needs: a missing
torch-pruning is the missing-extra error; a layer whose pruning fails, or a pruned module whose
forward pass breaks (an operation torch-pruning cannot see, such as a reshape that mixes
channels or a fixed-size buffer), is ONE :class:`~visionyard.errors.ExportError` naming the
layer, and the module given is left as it was (pruning works on a copy).
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from types import ModuleType
from typing import Any

import torch
from torch import nn

from visionyard.errors import DependencyMissingError, ExportError

METHOD = "magnitude L2, structured channels"


@dataclass(frozen=True)
class Counts:
    """Multiply-accumulates of one forward pass at the example's size, and parameters."""

    macs: int
    params: int


@dataclass(frozen=True)
class PruneResult:
    """The pruned copy, the channel ``ratio`` removed, its counts before and after;
    ``ignored``: layers whose outputs were kept whole."""

    module: nn.Module
    ratio: float
    before: Counts
    after: Counts
    ignored: tuple[str, ...]


def torch_pruning() -> ModuleType:
    """The ``torch_pruning`` module, or the missing-extra error naming ``visionyard[prune]``."""
    try:
        import torch_pruning  # type: ignore[import-untyped]  # it ships no type hints
    except ImportError as exc:
        raise DependencyMissingError("torch-pruning", "prune") from exc
    library: ModuleType = torch_pruning
    return library


def torch_pruning_version() -> str:
    try:
        return metadata.version("torch-pruning")
    except metadata.PackageNotFoundError:
        return "not installed"


def count(module: nn.Module, example: torch.Tensor) -> Counts:
    """MACs and parameters of ``module`` on ``example`` (torch-pruning's counter)."""
    tp = torch_pruning()
    with _quiet(), torch.no_grad():
        macs, params = tp.utils.count_ops_and_params(module, example)
    return Counts(int(macs), int(params))


def prune(
    module: nn.Module,
    example: torch.Tensor,
    ratio: float,
    *,
    keep: Sequence[str] = ("head",),
) -> PruneResult:
    """Remove ``ratio`` of the channels of a copy of ``module`` (eval mode, CPU).

    ``keep`` names submodules whose outputs are not pruned (the classifier head: its outputs
    are the classes). Raises :class:`ExportError` naming the layer that cannot be pruned.
    """
    if not 0.0 < ratio < 1.0:
        raise ExportError(f"a pruning ratio must lie between 0 and 1, not {ratio:g}")
    tp = torch_pruning()
    pruned = copy.deepcopy(module).cpu().eval()
    named = dict(pruned.named_modules())
    ignored = [named[name] for name in keep if name in named]
    before = count(pruned, example)
    pruner = _pruner(tp, pruned, example, ratio, ignored)
    _step(pruner, named)
    check_forward(pruned, example)
    after = count(pruned, example)
    return PruneResult(pruned, ratio, before, after, tuple(n for n in keep if n in named))


def _pruner(
    tp: Any, module: nn.Module, example: torch.Tensor, ratio: float, ignored: list[nn.Module]
) -> Any:
    try:
        with _quiet():
            return tp.pruner.MetaPruner(
                module,
                example,
                importance=tp.importance.GroupMagnitudeImportance(p=2),
                pruning_ratio=ratio,
                ignored_layers=ignored,
            )
    except Exception as exc:  # tracing raises whatever the module's own code raises
        raise ExportError(
            f"torch-pruning cannot trace {type(module).__name__}: {_first_line(exc)}; "
            "export int8 or fp16 instead"
        ) from exc


def _step(pruner: Any, named: dict[str, nn.Module]) -> None:
    """Rank and prune group by group, so a failure names the layer whose channels (and those
    coupled to them) were being ranked or removed."""
    names = {id(m): n for n, m in named.items()}
    with _quiet():
        groups = pruner.DG.get_all_groups(
            ignored_layers=pruner.ignored_layers, root_module_types=pruner.root_module_types
        )
        for group in groups:  # the ranking step() does first, one group at a time
            _guard(group, names, lambda g=group: pruner.estimate_importance(g))
        for group in pruner.step(interactive=True):
            _guard(group, names, group.prune)


def _guard(group: Any, names: dict[int, str], action: Any) -> None:
    layer = group[0].dep.target.module
    try:
        action()
    except Exception as exc:  # the library raises IndexError, RuntimeError, ...
        where = names.get(id(layer), type(layer).__name__)
        raise ExportError(
            f"cannot prune layer {where!r} ({type(layer).__name__}): {_first_line(exc)}; "
            "torch-pruning cannot follow this layer's channel dependencies: export int8 or "
            "fp16 instead"
        ) from exc


def check_forward(module: nn.Module, example: torch.Tensor) -> None:
    """Run ``module`` once; a failure names the innermost layer that failed (or the last
    layer that ran before an operation outside any layer failed)."""
    names = {id(m): (n or type(module).__name__) for n, m in module.named_modules()}
    with _tracking(module) as seen, torch.no_grad():
        try:
            module(example)
        except Exception as exc:  # whatever the broken shapes make torch raise
            raise ExportError(_forward_failure(module, names, seen, exc)) from exc


def _forward_failure(module: nn.Module, names: dict[int, str], seen: _Seen, exc: Exception) -> str:
    failing = seen.open[-1] if seen.open else module
    if failing is module or not _is_leaf(failing):
        after = f" after layer {names[id(seen.last)]!r}" if seen.last is not None else ""
        where = f"in the forward code of {names[id(failing)]!r}{after}"
    else:
        where = f"in layer {names[id(failing)]!r} ({type(failing).__name__})"
    return (
        f"the pruned model fails {where}: {_first_line(exc)}; torch-pruning cannot follow "
        "this operation's channels (a reshape that mixes channels, a fixed-size tensor): "
        "export int8 or fp16 instead"
    )


class _Seen:
    def __init__(self) -> None:
        self.open: list[nn.Module] = []
        self.last: nn.Module | None = None


@contextmanager
def _tracking(module: nn.Module) -> Iterator[_Seen]:
    seen = _Seen()

    def enter(layer: nn.Module, _args: Any) -> None:
        seen.open.append(layer)

    def leave(layer: nn.Module, _args: Any, _out: Any) -> None:
        seen.open.pop()
        if _is_leaf(layer):
            seen.last = layer

    handles = [h for m in module.modules() for h in (
        m.register_forward_pre_hook(enter), m.register_forward_hook(leave))]  # fmt: skip
    try:
        yield seen
    finally:
        for handle in handles:
            handle.remove()


def _is_leaf(layer: nn.Module) -> bool:
    return next(layer.children(), None) is None


@contextmanager
def _quiet() -> Iterator[None]:
    """torch-pruning warns about parameters outside layers and the like; the check after
    pruning reports what actually breaks."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
