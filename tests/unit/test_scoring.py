"""visionyard.scoring: discovery, rows (errors included), writers and the local engine's order."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from tests.fixtures.runtime import COLOURS, flat_png
from visionyard.bundle.store import Bundle
from visionyard.errors import NotFoundError
from visionyard.runtime.session import InferenceSession
from visionyard.scoring import Plan, Row, discover, make_writer, score_local, score_paths
from visionyard.scoring.writers import csv_header


@pytest.fixture(scope="module")
def colour_session(colour_bundle: Bundle) -> InferenceSession:
    return InferenceSession.open(colour_bundle.path)


def _tree(root: Path) -> None:
    for i, (name, rgb) in enumerate(COLOURS.items()):
        folder = root / ("a" if i % 2 else "") / ("b" if i == 3 else "")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{name}.PNG").write_bytes(flat_png(rgb))
    (root / "notes.txt").write_text("not an image")
    (root / ".hidden.png").write_bytes(flat_png((1, 2, 3)))
    (root / ".cache").mkdir()
    (root / ".cache" / "x.png").write_bytes(flat_png((1, 2, 3)))


def test_discover_searches_folders_recursively_for_images_only(tmp_path: Path) -> None:
    _tree(tmp_path)
    names = [p.relative_to(tmp_path).as_posix() for p in discover([tmp_path])]
    assert names == ["black.PNG", "blue.PNG", "red.PNG", "a/green.PNG", "a/b/white.PNG"]


def test_discover_takes_named_files_as_given_once(tmp_path: Path) -> None:
    _tree(tmp_path)
    found = discover([tmp_path / "notes.txt", tmp_path / "red.PNG", tmp_path])
    assert found[:2] == [tmp_path / "notes.txt", tmp_path / "red.PNG"]
    assert len(found) == 6  # red.PNG is not listed twice


def test_discover_refuses_a_missing_path(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="nope"):
        discover([tmp_path, tmp_path / "nope"])


def test_unreadable_files_are_rows_with_their_error(
    colour_session: InferenceSession, tmp_path: Path
) -> None:
    (tmp_path / "red.png").write_bytes(flat_png(COLOURS["red"]))
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8 truncated")
    (tmp_path / "empty.png").write_bytes(b"")
    paths = [tmp_path / n for n in ("bad.jpg", "red.png", "empty.png", "gone.png")]
    rows = score_paths(colour_session, paths, top_k=2)
    assert [r.path for r in rows] == [str(p) for p in paths]
    assert rows[1] == Row(str(paths[1]), rows[1].labels, rows[1].scores)
    assert rows[1].labels == ["red", "black"]
    assert rows[1].error is None
    assert "not a readable image" in (rows[0].error or "")
    assert "empty" in (rows[2].error or "")
    assert "cannot open file" in (rows[3].error or "")
    assert all(not r.labels for r in (rows[0], rows[2], rows[3]))


def test_detector_rows_carry_boxes(detector_bundle: Bundle, tmp_path: Path) -> None:
    (tmp_path / "img.png").write_bytes(flat_png((9, 9, 9), (64, 64)))
    session = InferenceSession.open(detector_bundle.path)
    [row] = score_paths(session, [tmp_path / "img.png"])
    assert row.labels == ["cat", "dog"]
    assert row.boxes == [[8.0, 8.0, 24.0, 24.0], [32.0, 32.0, 56.0, 60.0]]


ROWS = [
    Row("a.png", ["red", "black"], [0.75, 0.25]),
    Row("b,c.png", error='bad "file"'),
    Row("d.png", ["blue"], [1.0]),
]


def test_jsonl_writer_one_object_per_file() -> None:
    stream = io.StringIO()
    make_writer(stream, "jsonl", "classification", 2).write(ROWS)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert lines[0] == {"path": "a.png", "labels": ["red", "black"], "scores": [0.75, 0.25],
                        "error": None}  # fmt: skip
    assert lines[1]["error"] == 'bad "file"'
    assert lines[1]["labels"] == []


def test_csv_writer_classification_columns_and_quoting() -> None:
    stream = io.StringIO()
    make_writer(stream, "csv", "classification", 2).write(ROWS)
    table = list(csv.reader(io.StringIO(stream.getvalue())))
    assert table[0] == ["path", "label_1", "score_1", "label_2", "score_2", "error"]
    assert table[1] == ["a.png", "red", "0.75", "black", "0.25", ""]
    assert table[2] == ["b,c.png", "", "", "", "", 'bad "file"']
    assert table[3] == ["d.png", "blue", "1.0", "", "", ""]


def test_csv_writer_detection_one_line_per_box() -> None:
    rows = [
        Row("a.png", ["cat", "dog"], [0.9, 0.8], [[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]]),
        Row("none.png", [], [], []),
        Row("bad.png", error="corrupt"),
    ]
    stream = io.StringIO()
    make_writer(stream, "csv", "detection", 1).write(rows)
    table = list(csv.reader(io.StringIO(stream.getvalue())))
    assert table[0] == csv_header("detection", 1)
    assert table[1:] == [
        ["a.png", "cat", "0.9", "1.0", "2.0", "3.0", "4.0", ""],
        ["a.png", "dog", "0.8", "5.0", "6.0", "7.0", "8.0", ""],
        ["none.png", "", "", "", "", "", "", ""],
        ["bad.png", "", "", "", "", "", "", "corrupt"],
    ]


def test_local_engine_keeps_input_order_across_threads(
    colour_session: InferenceSession, tmp_path: Path
) -> None:
    names = list(COLOURS) * 7
    paths = []
    for i, name in enumerate(names):
        paths.append(tmp_path / f"{i:03d}.png")
        paths[-1].write_bytes(flat_png(COLOURS[name]) if i % 11 else b"junk")
    received: list[Row] = []
    seen: list[tuple[int, int]] = []
    summary = score_local(colour_session, paths, received.extend, Plan(batch_size=3, threads=3),
                          lambda done, total: seen.append((done, total)))  # fmt: skip
    assert [r.path for r in received] == [str(p) for p in paths]
    for i, (row, name) in enumerate(zip(received, names, strict=True)):
        assert (row.labels[:1], row.error is None) == (([name], True) if i % 11 else ([], False))
    assert (summary.images, summary.failed, summary.variant) == (35, 4, "fp32")
    assert seen[-1] == (35, 35)
