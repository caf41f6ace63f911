"""Root conftest: shared fixtures live in tests/fixtures/<area>.py, registered here."""

pytest_plugins = [
    "tests.fixtures.images",
    "tests.fixtures.datasets",
    "tests.fixtures.tracking",
    "tests.fixtures.models",
    "tests.fixtures.runtime",
]
