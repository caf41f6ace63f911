"""A model source that follows a registry reference (``NAME@alias`` or ``NAME/3``).

Resolution goes through the registry package (the only road to MLflow); the downloaded bundle
is cached per version under ``home/serving-cache`` so a poll that finds the alias unmoved costs
one registry lookup and no download. :meth:`RegistrySource.lookup` answers the version number
alone, so that the pool skips a version that failed to verify until the alias moves.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from visionyard.errors import DependencyMissingError
from visionyard.serving.sources import Resolved
from visionyard.settings import Settings

Resolver = Callable[[str], Resolved]
Lookup = Callable[[str], str]


@dataclass
class RegistrySource:
    """Resolve ``reference`` on every call (polling); ``resolver`` and ``lookup`` replace the
    registry (tests)."""

    reference: str
    settings: Settings
    resolver: Resolver | None = None
    lookup_version: Lookup | None = None

    def resolve(self) -> Resolved:
        resolver = self.resolver or registry_resolver(self.settings)
        return resolver(self.reference)

    def lookup(self) -> str:
        if self.lookup_version is None:  # made once: its registry client serves every poll
            self.lookup_version = registry_lookup(self.settings)
        return self.lookup_version(self.reference)


def registry_resolver(settings: Settings) -> Resolver:
    """The registry package's resolver: reference -> (version, downloaded bundle path)."""
    try:
        from visionyard.pipeline.registry import resolve_served
        from visionyard.registry import resolve_bundle
        from visionyard.serving.pipeline_model import resolved_pipeline
    except ImportError as exc:
        raise DependencyMissingError("the visionyard model registry", "all") from exc
    cache = Path(settings.home) / "serving-cache"

    def resolve(reference: str) -> Resolved:
        pipeline = resolve_served(settings, reference, cache)  # a pipeline: its live stages
        if pipeline is not None:
            return resolved_pipeline(pipeline)
        version, path = resolve_bundle(settings, reference, cache)
        return Resolved(str(version), Path(path))

    return resolve


def registry_lookup(settings: Settings) -> Lookup:
    """The registry package's lookup: reference -> the version number it points at now."""
    try:
        from visionyard.pipeline.registry import served_lookup
    except ImportError as exc:
        raise DependencyMissingError("the visionyard model registry", "all") from exc
    return served_lookup(settings)  # a pipeline's: its version and its stages' versions
