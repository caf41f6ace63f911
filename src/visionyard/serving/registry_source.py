"""A model source that follows a registry reference (``NAME@alias`` or ``NAME/3``).

Resolution goes through the registry package (the only road to MLflow); the downloaded bundle
is cached per version under ``home/serving-cache`` so a poll that finds the alias unmoved costs
one registry lookup and no download.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from visionyard.errors import DependencyMissingError
from visionyard.serving.sources import Resolved
from visionyard.settings import Settings

Resolver = Callable[[str], Resolved]


@dataclass
class RegistrySource:
    """Resolve ``reference`` on every call (polling); ``resolver`` replaces the registry."""

    reference: str
    settings: Settings
    resolver: Resolver | None = None

    def resolve(self) -> Resolved:
        resolver = self.resolver or registry_resolver(self.settings)
        return resolver(self.reference)


def registry_resolver(settings: Settings) -> Resolver:
    """The registry package's resolver: reference -> (version, downloaded bundle path)."""
    try:
        from visionyard.registry import resolve_bundle
    except ImportError as exc:
        raise DependencyMissingError("the visionyard model registry", "all") from exc
    cache = Path(settings.home) / "serving-cache"

    def resolve(reference: str) -> Resolved:
        version, path = resolve_bundle(settings, reference, cache)
        return Resolved(str(version), Path(path))

    return resolve
