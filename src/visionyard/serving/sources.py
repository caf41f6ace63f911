"""Where a served model's versions come from: a local bundle, or a registry reference.

A :class:`ModelSource` answers one question, blocking: which version should be served now, and
where is its bundle on disk? The pool calls it at start, on every poll and on an admin reload;
when the answer's version changes, the pool loads and swaps (see :mod:`visionyard.serving.pool`).
A source that can also tell which version it points at WITHOUT downloading it
(:class:`VersionLookup`) lets the pool skip a version that already failed to verify.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from visionyard.bundle.store import MANIFEST
from visionyard.errors import ConfigError

if TYPE_CHECKING:
    from visionyard.serving.model import LoadedModel

_REGISTRY_REF = re.compile(
    r"^(?P<name>[A-Za-z0-9][\w.\-]*)(?:@(?P<alias>[\w\-]+)|/(?P<version>\d+))$"
)


@dataclass(frozen=True)
class Resolved:
    """A version to serve: its id (registry version number, or a local label) and bundle."""

    version: str
    path: Path
    #: what tells a change when it is more than the version (a pipeline: its stages' versions)
    revision: str = ""

    @property
    def key(self) -> str:
        """What the pool compares with the serving version's :attr:`LoadedModel.revision`."""
        return self.revision or self.version


@runtime_checkable
class OpensItself(Protocol):
    """A resolved version that is not one bundle (a pipeline, :mod:`.pipeline_model`): it
    opens its served model itself; ``batcher(session)`` makes the pool's batcher for it (which
    counts in ``stats``), and ``current`` is the version serving now (whose unchanged parts it
    may keep)."""

    def open_model(
        self, name: str, options: Any, batcher: Any, current: LoadedModel | None, stats: Any
    ) -> LoadedModel: ...


class ModelSource(Protocol):
    @property
    def reference(self) -> str:
        """What the user configured (shown in metadata and logs)."""
        ...

    def resolve(self) -> Resolved:
        """The version to serve now (blocking; may download a bundle)."""
        ...


@runtime_checkable
class VersionLookup(Protocol):
    def lookup(self) -> str:
        """The version the source points at now (blocking, cheap: no download)."""
        ...


def lookup_version(source: ModelSource) -> str | None:
    """The source's current version without downloading it; None when it cannot tell."""
    return source.lookup() if isinstance(source, VersionLookup) else None


@dataclass(frozen=True)
class LocalBundleSource:
    """A bundle directory on disk, served as ``version``. Its revision is the version and a
    stamp of the folder (its manifest's bytes, every file's name, size and modification time:
    no file is read but the manifest), so a bundle replaced or edited on disk is read and
    verified again at the next poll or admin load, as Triton's repository polling does; an
    unchanged one is not."""

    path: Path
    version: str = "1"

    @property
    def reference(self) -> str:
        return str(self.path)

    def resolve(self) -> Resolved:
        return Resolved(self.version, self.path, f"{self.version}+{_stamp(self.path)}")


def _stamp(path: Path) -> str:
    """16 hex of the folder's stamp ("unreadable": loading it will say why)."""
    digest = hashlib.sha256()
    try:
        digest.update((path / MANIFEST).read_bytes())
        for file in sorted(p for p in path.rglob("*") if not p.is_dir()):
            info = file.lstat()
            digest.update(
                f"\0{file.relative_to(path)}\0{info.st_size}\0{info.st_mtime_ns}".encode()
            )
    except OSError:
        return "unreadable"
    return digest.hexdigest()[:16]


def is_registry_reference(reference: str) -> bool:
    """``NAME@alias`` or ``NAME/3`` (and not an existing path)."""
    return bool(_REGISTRY_REF.match(reference)) and not Path(reference).exists()


def parse_model_option(option: str) -> tuple[str, str]:
    """``NAME=REF`` (from ``--model``) -> ``(name, ref)``."""
    name, sep, ref = option.partition("=")
    if not sep or not name.strip() or not ref.strip():
        raise ConfigError(
            f"--model {option!r}: expected NAME=REFERENCE (e.g. resnet=resnet@production)"
        )
    return name.strip(), ref.strip()
