"""Semantic version policy: first version, minor and major bumps, explicit versions."""

from __future__ import annotations

import pytest

from tests.fixtures.runtime import colour_contract
from visionyard.errors import RegistryError
from visionyard.registry.semver import SemVer, fingerprint, next_semver, parse_semver


def test_parse_and_order() -> None:
    assert parse_semver(" 1.10.0 ") == SemVer(1, 10, 0)
    assert parse_semver("1.10.0") > parse_semver("1.9.3")
    for bad in ("1.0", "01.0.0", "v1.0.0", "1.0.0-rc1", ""):
        with pytest.raises(RegistryError, match="not a semantic version"):
            parse_semver(bad)


def test_first_version_is_1_0_0() -> None:
    assert next_semver(None, None, fingerprint(colour_contract())) == ("1.0.0", "first version")


def test_same_labels_and_inputs_bump_minor_even_with_new_thresholds() -> None:
    old = fingerprint(colour_contract())
    new = fingerprint(colour_contract(decoding={"top_k": 2}))
    assert next_semver("1.4.2", old, new)[0] == "1.5.0"


@pytest.mark.parametrize(
    ("changed", "why"),
    [
        (colour_contract(labels=("red", "green", "blue", "white", "grey")), "labels changed"),
        (colour_contract(labels=("green", "red", "blue", "white", "black")), "labels changed"),
        (colour_contract(size=16), "input contract changed"),
        (colour_contract(color_order="BGR"), "input contract changed"),
    ],
)
def test_label_or_input_changes_bump_major(changed: object, why: str) -> None:
    version, reason = next_semver("1.4.2", fingerprint(colour_contract()), fingerprint(changed))  # type: ignore[arg-type]
    assert version == "2.0.0"
    assert why in reason


def test_explicit_version_is_validated_and_must_be_unused() -> None:
    fp = fingerprint(colour_contract())
    assert next_semver("1.0.0", fp, fp, explicit="3.1.4") == ("3.1.4", "given explicitly")
    with pytest.raises(RegistryError, match="already used"):
        next_semver("1.0.0", fp, fp, explicit="1.0.0", taken=["1.0.0"])
    with pytest.raises(RegistryError, match="not a semantic version"):
        next_semver("1.0.0", fp, fp, explicit="latest")
