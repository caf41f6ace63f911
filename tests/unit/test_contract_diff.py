"""Field-level contract differences and the breaking/compatible classification."""

from __future__ import annotations

from visionyard.contract import FieldChange, VisionContract, diff_contracts


def base() -> VisionContract:
    return VisionContract.detection(["car", "bus"], input_size=320)


def test_identical_contracts_have_no_changes() -> None:
    diff = diff_contracts(base(), base())
    assert not diff
    assert diff.changes == ()
    assert (diff.breaking, diff.bump) == (False, "none")


def test_threshold_changes_are_compatible() -> None:
    new = VisionContract.detection(
        ["car", "bus"], input_size=320, decoding={"score_threshold": 0.5, "max_detections": 10}
    )
    diff = diff_contracts(base(), new)
    assert diff.changes == (
        FieldChange("decoding.score_threshold", 0.25, 0.5, breaking=False),
        FieldChange("decoding.max_detections", 100, 10, breaking=False),
    )
    assert (diff.breaking, diff.bump) == (False, "minor")


def test_label_rename_and_addition_are_breaking_and_itemised() -> None:
    new = VisionContract.detection(["car", "truck", "bike"], input_size=320)
    diff = diff_contracts(base(), new)
    assert diff.changes == (
        FieldChange("labels.1", "bus", "truck", breaking=True),
        FieldChange("labels.2", None, "bike", breaking=True),
    )
    assert diff.bump == "major"


def test_preprocessing_change_is_breaking() -> None:
    new = VisionContract.detection(["car", "bus"], input_size=320, color_order="BGR")
    (change,) = diff_contracts(base(), new).changes
    assert change == FieldChange("preprocessing.color_order", "RGB", "BGR", breaking=True)
    assert str(change) == "preprocessing.color_order: 'RGB' -> 'BGR' (breaking)"


def test_adding_an_embedding_is_compatible_removing_it_is_not() -> None:
    with_emb = VisionContract.detection(["car", "bus"], input_size=320, embedding_output="emb")
    assert diff_contracts(base(), with_emb).bump == "minor"
    assert diff_contracts(with_emb, base()).bump == "major"


def test_task_change_lists_decoding_fields() -> None:
    classifier = VisionContract.classification(["car", "bus"], input_size=320, resize="letterbox")
    paths = [c.path for c in diff_contracts(base(), classifier).changes]
    assert paths[0] == "task"
    assert "decoding.kind" in paths
    assert "decoding.top_k" in paths  # present only in the new contract
    assert "preprocessing.mean.0" in paths
