"""Classification metrics of an inference session over a labelled image set.

The metrics are a few lines of numpy over a confusion matrix (top-1/top-5 accuracy, per-class
precision/recall/F1, cross-entropy); scikit-learn would add ~40 MB for the same arithmetic, so
they are written here and checked against hand-computed values in the tests.

Labels are matched **by name**, never by index: a dataset's class ``dog`` is scored against the
contract's label ``dog`` wherever each one puts it. Policy: the dataset's labels must be a subset
of the contract's (an evaluation set may lack a rare class; the model can still predict it, and
such predictions count as errors). A dataset label the contract lacks is refused, since the model
can never predict it; ``allow_subset=False`` also refuses contract labels the dataset lacks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Literal, Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict

from visionyard.contract.postprocess import softmax
from visionyard.contract.schema import ClassificationDecoding, VisionContract
from visionyard.errors import ContractError, DatasetError
from visionyard.runtime.session import InferenceSession, Outputs

Progress = Callable[[int, int], None]
_EPS = 1e-12


class LabelledImage(Protocol):
    """One image and its true class name (``visionyard.data.ImageSample`` fits)."""

    @property
    def path(self) -> Path: ...

    @property
    def class_name(self) -> str: ...


class ClassMetrics(BaseModel):
    model_config = ConfigDict(frozen=True)

    label: str
    precision: float
    recall: float
    f1: float
    support: int


class ClassificationReport(BaseModel):
    """Metrics of one model on one dataset; ``confusion_matrix[true][predicted]``."""

    model_config = ConfigDict(frozen=True)

    task: Literal["classification"] = "classification"
    sample_count: int
    accuracy: float
    top5_accuracy: float | None
    mean_loss: float | None
    macro_precision: float
    macro_recall: float
    macro_f1: float
    labels: list[str]
    per_class: list[ClassMetrics]
    confusion_matrix: list[list[int]]
    dataset_digest: str | None = None
    variant: str | None = None

    @property
    def primary(self) -> float:
        """The headline metric (top-1 accuracy)."""
        return self.accuracy

    def metrics(self) -> dict[str, float]:
        """Flat name -> value, for tracking (per-class F1 as ``f1/<label>``)."""
        flat = {
            "accuracy": self.accuracy,
            "macro_precision": self.macro_precision,
            "macro_recall": self.macro_recall,
            "macro_f1": self.macro_f1,
        }
        if self.top5_accuracy is not None:
            flat["top5_accuracy"] = self.top5_accuracy
        if self.mean_loss is not None:
            flat["loss"] = self.mean_loss
        return flat | {f"f1/{c.label}": c.f1 for c in self.per_class if c.support}


def evaluate_classification(
    session: InferenceSession,
    samples: Iterable[LabelledImage],
    *,
    batch_size: int = 32,
    progress: Progress | None = None,
    dataset_labels: Sequence[str] | None = None,
    dataset_digest: str | None = None,
    allow_subset: bool = True,
) -> ClassificationReport:
    """Run ``session`` over ``samples`` in batches and score it against their class names.

    ``dataset_labels`` (default: the class names present) is checked against the contract's
    labels by the module's policy; ``progress(done, total)`` is called after every batch.
    """
    items = list(samples)
    if not items:
        raise DatasetError("no samples to evaluate")
    labels = list(session.contract.labels)
    check_labels(dataset_labels or sorted({s.class_name for s in items}), labels, allow_subset)
    index = {name: i for i, name in enumerate(labels)}
    truth = np.array([index[s.class_name] for s in items], dtype=np.int64)
    scores = _score(session, [s.path for s in items], batch_size, progress)
    report = classification_report(truth, scores, labels, dataset_digest=dataset_digest)
    return report.model_copy(update={"variant": session.variant})


def check_labels(dataset: Sequence[str], contract: Sequence[str], allow_subset: bool) -> None:
    """Raise :class:`DatasetError` naming extra (and, unless a subset is allowed, missing)
    labels."""
    extra = sorted(set(dataset) - set(contract))
    missing = [] if allow_subset else sorted(set(contract) - set(dataset))
    if not extra and not missing:
        return
    parts = []
    if extra:
        parts.append(f"dataset label(s) not in the model's contract: {', '.join(extra)}")
    if missing:
        parts.append(f"contract label(s) missing from the dataset: {', '.join(missing)}")
    raise DatasetError(
        "dataset and model labels do not match (" + "; ".join(parts) + "); evaluate on a "
        "dataset labelled with the model's classes (labels are matched by name)"
    )


def _score(
    session: InferenceSession, paths: Sequence[Path], batch_size: int, progress: Progress | None
) -> np.ndarray:
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    chunks = []
    for start in range(0, len(paths), batch_size):
        batch = session.preprocess(paths[start : start + batch_size])
        chunks.append(class_probabilities(session.run(batch.tensor), session.contract))
        if progress is not None:
            progress(min(start + batch_size, len(paths)), len(paths))
    return np.concatenate(chunks)


def class_probabilities(outputs: Outputs, contract: VisionContract) -> np.ndarray:
    """``[N, C]`` class probabilities from raw outputs (softmax applied to logits)."""
    decoding = contract.decoding
    if not isinstance(decoding, ClassificationDecoding):
        raise ContractError("task", f"this is a {contract.task} model, not a classifier")
    scores = outputs[decoding.output]
    return softmax(scores) if decoding.scores == "logits" else scores.astype(np.float64)


def classification_report(
    truth: np.ndarray,
    probabilities: np.ndarray,
    labels: Sequence[str],
    *,
    with_loss: bool = True,
    dataset_digest: str | None = None,
) -> ClassificationReport:
    """The report from true class indices ``[N]`` and class probabilities ``[N, C]``.

    Macro averages run over the classes present in the dataset (support > 0).
    """
    count = len(labels)
    predicted = probabilities.argmax(axis=1)
    matrix = confusion_matrix(truth, predicted, count)
    per_class = per_class_metrics(matrix, labels)
    return ClassificationReport(
        sample_count=int(truth.size),
        accuracy=float(np.mean(predicted == truth)),
        top5_accuracy=top_k_accuracy(truth, probabilities, 5) if count >= 5 else None,
        mean_loss=cross_entropy(truth, probabilities) if with_loss else None,
        macro_precision=_mean([c.precision for c in per_class if c.support]),
        macro_recall=_mean([c.recall for c in per_class if c.support]),
        macro_f1=_mean([c.f1 for c in per_class if c.support]),
        labels=list(labels),
        per_class=per_class,
        confusion_matrix=matrix.tolist(),
        dataset_digest=dataset_digest,
    )


def confusion_matrix(truth: np.ndarray, predicted: np.ndarray, count: int) -> np.ndarray:
    """``[C, C]`` counts, rows = true class, columns = predicted class."""
    flat = np.bincount(truth * count + predicted, minlength=count * count)
    return flat.reshape(count, count)


def per_class_metrics(matrix: np.ndarray, labels: Sequence[str]) -> list[ClassMetrics]:
    """Precision, recall and F1 per class (0 where undefined, e.g. never predicted)."""
    hits = np.diag(matrix).astype(np.float64)
    support = matrix.sum(axis=1)
    precision = _ratio(hits, matrix.sum(axis=0))
    recall = _ratio(hits, support)
    f1 = _ratio(2 * precision * recall, precision + recall)
    return [
        ClassMetrics(
            label=name,
            precision=float(precision[i]),
            recall=float(recall[i]),
            f1=float(f1[i]),
            support=int(support[i]),
        )
        for i, name in enumerate(labels)
    ]


def top_k_accuracy(truth: np.ndarray, probabilities: np.ndarray, k: int) -> float:
    """Share of samples whose true class is among the ``k`` highest scores."""
    top = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
    return float(np.mean((top == truth[:, None]).any(axis=1)))


def cross_entropy(truth: np.ndarray, probabilities: np.ndarray) -> float:
    """Mean negative log-likelihood of the true class (probabilities clipped at 1e-12)."""
    chosen = probabilities[np.arange(truth.size), truth]
    return float(-np.mean(np.log(np.clip(chosen, _EPS, 1.0))))


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    out = np.zeros_like(numerator, dtype=np.float64)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def _mean(values: Sequence[float]) -> float:
    return float(np.mean(values)) if values else 0.0
