"""The reference profile of a served version, found by where the version came from.

- a registry source (``NAME@alias``, ``NAME/3``): the profile stored beside the registered
  version (:mod:`visionyard.monitor.store`), checked against the digest the version records;
- any other source (a local bundle folder): ``<bundle>/monitor/profile/`` when the bundle
  carries one (``profile.json`` + ``profile.npz`` written into the bundle with
  ``write_bundle(..., extra_files=...)``, so its manifest lists and checks them; loading also
  checks the npz against the json), else none.

Blocking (it may download from the registry): the monitor calls it on its background thread.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from visionyard.errors import NotFoundError
from visionyard.monitor import Profile, load_profile
from visionyard.monitor.profile import PROFILE_JSON
from visionyard.serving.registry_source import RegistrySource
from visionyard.serving.sources import ModelSource, Resolved

BUNDLE_PROFILE = Path("monitor") / "profile"


def profile_command(source: ModelSource, name: str, version: str) -> str:
    """The command that builds the missing profile."""
    return f"visionyard monitor profile {registry_name(source) or name}/{version} --data DIR"


def registry_name(source: ModelSource) -> str | None:
    """The registered model's name of a registry source, else None."""
    if not isinstance(source, RegistrySource):
        return None
    reference = source.reference
    return reference.rsplit("@", 1)[0] if "@" in reference else reference.rsplit("/", 1)[0]


def load_reference(source: ModelSource, resolved: Resolved) -> Profile:
    """The version's verified profile; :class:`NotFoundError` when it has none."""
    name = registry_name(source)
    if name is not None and isinstance(source, RegistrySource):
        from visionyard.monitor.store import load_version_profile

        with tempfile.TemporaryDirectory(prefix="vy-profile-") as work:
            reference = f"{name}/{resolved.version}"
            return load_version_profile(source.settings, reference, Path(work))[1]
    folder = resolved.path / BUNDLE_PROFILE
    if not (folder / PROFILE_JSON).is_file():
        raise NotFoundError("reference profile in bundle", str(resolved.path), "")
    return load_profile(folder, what=f"profile of bundle {resolved.path}")
