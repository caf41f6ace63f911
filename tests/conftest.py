"""Root conftest: shared fixtures live in tests/fixtures/<area>.py, registered here.

It also fails the run when any test leaves an MLflow store in the working directory: every
visionyard code path must set its tracking URI explicitly (MLflow's implicit default writes
``./mlflow.db`` or ``./mlruns``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = [
    "tests.fixtures.images",
    "tests.fixtures.datasets",
    "tests.fixtures.tracking",
    "tests.fixtures.models",
    "tests.fixtures.runtime",
]

STRAY_STORES = ("mlflow.db", "mlruns", "mlartifacts")
_before: set[str] = set()


def _present() -> set[str]:
    return {name for name in STRAY_STORES if Path(name).exists()}


def pytest_sessionstart(session: pytest.Session) -> None:
    _before.update(_present())


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    stray = sorted(_present() - _before)
    if stray:
        print(f"\nERROR: the tests left an implicit MLflow store in {Path.cwd()}: {stray}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
