"""The version number a reference points at, without downloading anything (for the server's
polls: a version that failed to verify is skipped until its alias moves)."""

from __future__ import annotations

from visionyard.registry.views import parse_reference, resolve_version
from visionyard.settings import Settings
from visionyard.tracking.registry_client import RegistryClient


def resolve_version_number(settings: Settings, reference: str) -> str:
    """``NAME@ALIAS`` / ``NAME/VERSION`` -> the version number it points at now."""
    client = RegistryClient.from_settings(settings)
    return str(resolve_version(client, parse_reference(reference)).version)
