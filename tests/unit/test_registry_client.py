"""The registry client's MLflow-specific handling, on a stand-in MlflowClient."""

from __future__ import annotations

from typing import Any

import pytest
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import BAD_REQUEST, INTERNAL_ERROR, RESOURCE_DOES_NOT_EXIST

from visionyard.errors import NotFoundError, TrackingError
from visionyard.tracking.registry_client import RegistryClient
from visionyard.tracking.registry_records import model_id_of
from visionyard.tracking.store import TrackingConfig

CONFIG = TrackingConfig("sqlite:////tmp/x.db", "sqlite:////tmp/x.db", None, "e")


class Flaky:
    def __init__(self, *failures: Exception) -> None:
        self.failures = list(failures)
        self.calls = 0

    def set_registered_model_alias(self, *args: Any) -> None:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)

    def get_model_version(self, name: str, version: str) -> Any:
        raise MlflowException("not found", error_code=RESOURCE_DOES_NOT_EXIST)

    def search_registered_models(self, **kwargs: Any) -> Any:
        return _Page()

    def get_registered_model(self, name: str) -> Any:
        raise MlflowException("not found", error_code=RESOURCE_DOES_NOT_EXIST)


class _Page(list[Any]):
    token = None


def test_alias_write_is_retried_after_a_first_insert_race() -> None:
    duplicate = MlflowException(
        "(psycopg.errors.UniqueViolation) duplicate key value violates unique constraint "
        '"registered_model_alias_pk"', error_code=BAD_REQUEST,
    )  # fmt: skip
    fake = Flaky(duplicate)
    RegistryClient(CONFIG, fake).set_alias("m", "production", "2")  # type: ignore[arg-type]
    assert fake.calls == 2


def test_other_alias_write_errors_are_not_retried() -> None:
    fake = Flaky(MlflowException("boom", error_code=INTERNAL_ERROR))
    with pytest.raises(TrackingError, match="boom"):
        RegistryClient(CONFIG, fake).set_alias("m", "production", "2")  # type: ignore[arg-type]
    assert fake.calls == 1


def test_unknown_version_of_an_unknown_model_names_the_model() -> None:
    with pytest.raises(NotFoundError, match="registered model 'm' not found"):
        RegistryClient(CONFIG, Flaky()).get_version("m", "3")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("source", "expected"),
    [("models:/m-0123abc", "m-0123abc"), ("models:/shapes/3", None), ("file:///a/b", None)],
)
def test_logged_model_id_from_a_version_source(source: str, expected: str | None) -> None:
    assert model_id_of(source) == expected
