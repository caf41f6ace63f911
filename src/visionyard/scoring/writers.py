"""Output formats of ``visionyard predict``: JSON Lines and CSV, written row by row.

JSONL, one object per file: ``{"path", "labels", "scores", "error"}`` (``labels``/``scores`` best
first), plus ``"boxes"`` (xyxy original-image pixels) for detectors.

CSV, the same content flattened:

- classification, one line per file: ``path, label_1, score_1, ..., label_K, score_K, error``;
- detection, one line per box: ``path, label, score, x1, y1, x2, y2, error``; a file with no
  box (or an error) still gets one line, with the box columns empty.

Scores are written in full precision (Python's shortest round-trip form). The standard
library's ``json`` and ``csv`` do the quoting.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Literal, Protocol, TextIO

from visionyard.contract.schema import ClassificationDecoding, VisionContract
from visionyard.scoring.core import Row

Format = Literal["jsonl", "csv"]
Task = Literal["classification", "detection"]
FORMATS: tuple[Format, ...] = ("jsonl", "csv")
BOX_COLUMNS = ("x1", "y1", "x2", "y2")


class Writer(Protocol):
    def write(self, rows: Iterable[Row]) -> None: ...


class JsonlWriter:
    """One JSON object per line."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, rows: Iterable[Row]) -> None:
        self._stream.writelines(json.dumps(row.to_dict()) + "\n" for row in rows)


class CsvWriter:
    """Flat CSV with a header line (see the module docstring for the columns)."""

    def __init__(self, stream: TextIO, task: Task, top_k: int) -> None:
        self._csv = csv.writer(stream, lineterminator="\n")
        self._task = task
        self._csv.writerow(csv_header(task, top_k))
        self._top_k = top_k

    def write(self, rows: Iterable[Row]) -> None:
        for row in rows:
            if self._task == "classification":
                self._csv.writerow(_ranked(row, self._top_k))
            else:
                self._csv.writerows(_boxes(row))


def csv_header(task: Task, top_k: int) -> list[str]:
    if task == "detection":
        return ["path", "label", "score", *BOX_COLUMNS, "error"]
    ranks = [name for k in range(1, top_k + 1) for name in (f"label_{k}", f"score_{k}")]
    return ["path", *ranks, "error"]


def make_writer(stream: TextIO, fmt: Format, task: Task, top_k: int) -> Writer:
    """The writer for ``fmt``; ``top_k`` is the number of ranked columns of a classifier's CSV."""
    if fmt == "csv":
        return CsvWriter(stream, task, top_k)
    return JsonlWriter(stream)


def _ranked(row: Row, top_k: int) -> list[object]:
    cells: list[object] = [row.path]
    for k in range(top_k):
        found = k < len(row.labels)
        cells += [row.labels[k], repr(row.scores[k])] if found else ["", ""]
    return [*cells, row.error or ""]


def _boxes(row: Row) -> list[list[object]]:
    if not row.boxes:
        return [[row.path, "", "", "", "", "", "", row.error or ""]]
    return [
        [row.path, label, repr(score), *(repr(v) for v in box), ""]
        for label, score, box in zip(row.labels, row.scores, row.boxes, strict=True)
    ]


def ranked_columns(contract: VisionContract, top_k: int | None) -> int:
    """How many (label, score) pairs a classifier's rows hold: top-k, at most the labels."""
    decoding = contract.decoding
    wanted = top_k or (decoding.top_k if isinstance(decoding, ClassificationDecoding) else 1)
    return min(wanted, len(contract.labels))


def write_rows(path: Path, rows: Sequence[Row], fmt: Format, task: Task, top_k: int) -> None:
    """Write a whole file of rows atomically (a partial file never appears under its name)."""
    part = path.with_name(f".{path.name}.tmp")
    with part.open("w", encoding="utf-8", newline="") as stream:
        make_writer(stream, fmt, task, top_k).write(rows)
    os.replace(part, path)
