"""References, value diffs and dataset diffs used by ``models show`` and ``models diff``."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fixtures.runtime import flat_png
from tests.registry_support import colour_dataset
from visionyard.data.manifest import build_manifest
from visionyard.errors import RegistryError
from visionyard.registry.diffing import ValueChange, dataset_change, diff_mappings
from visionyard.registry.views import Reference, parse_reference


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("shapes", Reference("shapes")),
        ("shapes@production", Reference("shapes", alias="production")),
        ("shapes/12", Reference("shapes", version="12")),
        ("team/shapes@staging", Reference("team/shapes", alias="staging")),
    ],
)
def test_references(text: str, expected: Reference) -> None:
    assert parse_reference(text) == expected
    assert str(expected) == text


@pytest.mark.parametrize("text", ["", "@production", "shapes@", "shapes/x", "shapes/"])
def test_bad_references(text: str) -> None:
    with pytest.raises(RegistryError, match="bad model reference"):
        parse_reference(text)


def test_diff_mappings_reports_changed_added_and_removed_keys() -> None:
    changes = diff_mappings(
        {"lr": "0.1", "epochs": "5", "same": 1}, {"lr": "0.2", "seed": "0", "same": 1}
    )
    assert changes == [
        ValueChange("epochs", "5", None),
        ValueChange("lr", "0.1", "0.2"),
        ValueChange("seed", None, "0"),
    ]


def test_dataset_change_counts_added_removed_and_relabelled(tmp_path: Path) -> None:
    a = colour_dataset(tmp_path / "a", per_class=2, labels=("red", "green", "blue"))
    b = colour_dataset(tmp_path / "b", per_class=2, labels=("red", "green", "blue"))
    (b / "val" / "red" / "0.png").unlink()  # removed
    (b / "val" / "green" / "1.png").rename(b / "val" / "blue" / "9.png")  # relabelled
    (b / "val" / "blue" / "extra.png").write_bytes(flat_png((0, 0, 200), (20, 20)))  # added
    change = dataset_change("train", build_manifest(a), build_manifest(b))
    assert change.summary is not None
    counts = [change.summary[k] for k in ("added", "removed", "relabelled", "changed")]
    assert counts == [1, 1, 1, 0]
    assert change.examples["relabelled"] == ["val/blue/9.png: green -> blue"]
    assert change.digest_a != change.digest_b
