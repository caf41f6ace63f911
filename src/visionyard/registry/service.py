"""The registry's Python API: one object bound to the settings (tracking store, aliases).

::

    registry = Registry(settings)
    registry.register(run_id, "shapes")                        # -> Registration (version 1)
    registry.promote("shapes", "1", "production", gate=Path("gate.yaml"))
    registry.rollback("shapes", "production")
    registry.history("shapes"); registry.show("shapes@production"); registry.list()
    registry.diff("shapes", "1", "2"); registry.gc("shapes", keep_last=5, dry_run=True)
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from visionyard.errors import BundleIntegrityError, ConfigError, VisionyardError
from visionyard.registry import tags as T
from visionyard.registry.cleanup import GcReport, collect_garbage
from visionyard.registry.gates import load_policy
from visionyard.registry.history import AliasEvent, check_alias
from visionyard.registry.mirroring import mirror_move, mirror_registration
from visionyard.registry.promote import (
    MoveOutcome,
    PromoteRequest,
    ReportHook,
    promote,
    rollback,
)
from visionyard.registry.reads import ReadViews
from visionyard.registry.register import RegisterRequest, Registration, register_run
from visionyard.registry.trust import (
    METADATA_PIECE,
    PieceCheck,
    cached,
    materialize,
    signature_tags,
    stored_metadata_digest,
    target_lock,
    verify_version,
)
from visionyard.registry.views import (
    AliasView,
    ModelRow,
    VersionView,
    parse_reference,
    resolve_version,
)
from visionyard.settings import Settings
from visionyard.tracking.environment import os_user
from visionyard.tracking.mirror import open_mirror
from visionyard.tracking.mlflow_model import scratch_dir
from visionyard.tracking.registry_client import RegistryClient, VersionInfo

if TYPE_CHECKING:  # imported where used: `models show` needs neither onnxruntime nor manifests
    from visionyard.registry.diffing import VersionDiff
    from visionyard.runtime.session import InferenceSession

Progress = Callable[[int, int], None]


def default_actor() -> str:
    """``$VISIONYARD_ACTOR``, else the OS user."""
    actor = os.environ.get("VISIONYARD_ACTOR", "").strip()
    return actor or os_user()


class Registry:
    """Versions, aliases and their history, gates, rollback, diff and retention."""

    def __init__(self, settings: Settings, client: RegistryClient | None = None) -> None:
        self.settings = settings
        self.client = client or RegistryClient.from_settings(settings)

    @property
    def aliases(self) -> list[str]:
        return list(self.settings.registry.aliases)

    def register(
        self,
        run_id: str,
        name: str,
        *,
        semver: str | None = None,
        force: bool = False,
        parent: str | None = None,
        actor: str | None = None,
    ) -> Registration:
        mirror = open_mirror(self.settings)  # W&B configured but missing: refused up front
        request = RegisterRequest(
            run_id, name, actor or default_actor(), semver, force, parent,
            signing_key=self.signing_key,
        )  # fmt: skip
        registration = register_run(self.client, request)
        mirror_registration(mirror, registration)
        return registration

    def promote(
        self,
        name: str,
        version: str,
        alias: str,
        *,
        gate: Path | None = None,
        force: bool = False,
        reason: str = "",
        actor: str | None = None,
        progress: Progress | None = None,
        on_report: ReportHook | None = None,
        dry_run: bool = False,
    ) -> MoveOutcome:
        """Move ``alias`` to ``version``; ``on_report(report, ref)`` sees the gate report (also
        a failed one) before the move or the :class:`GateFailedError`. Without a gate (which
        loads both versions through the registry check) the version's pieces are verified
        first, unless forced: an alias never moves to a version no server would load.
        ``dry_run``: every check and the gate, nothing moved (``result`` is None)."""
        check_alias(alias, self.aliases)
        mirror = open_mirror(self.settings)
        runner = None
        if not gate and not force:
            self.check(f"{name}/{version}")
        if gate:
            from visionyard.registry.evaluation import gate_runner  # onnxruntime: gates only

            policy = load_policy(gate)
            runner = gate_runner(self.client, name, policy, progress, self.signing_key)
        request = PromoteRequest(
            name, str(version), alias, actor or default_actor(), gate, force, reason, dry_run
        )
        outcome = promote(self.client, request, runner, on_report)
        mirror_move(mirror, self.client, name, outcome)
        return outcome

    def rollback(
        self, name: str, alias: str = "production", *, reason: str = "", actor: str | None = None
    ) -> MoveOutcome:
        check_alias(alias, self.aliases)
        mirror = open_mirror(self.settings)
        outcome = rollback(self.client, name, alias, actor or default_actor(), reason)
        mirror_move(mirror, self.client, name, outcome)
        return outcome

    def history(
        self, name: str, alias: str | None = None, limit: int | None = None
    ) -> tuple[list[AliasEvent], list[AliasView]]:
        return ReadViews(self.settings, self.client).history(name, alias, limit)

    def show(self, reference: str) -> VersionView:
        return ReadViews(self.settings, self.client).show(reference)

    def list(self) -> list[ModelRow]:
        return ReadViews(self.settings, self.client).list()

    def diff(self, name: str, v1: str, v2: str) -> VersionDiff:
        from visionyard.registry.diffing import diff_versions  # data manifests: diff only

        return diff_versions(self.client, name, str(v1), str(v2))

    def gc(
        self,
        name: str,
        *,
        keep_last: int,
        protect_events: int = 10,
        dry_run: bool = False,
        progress: Progress | None = None,
    ) -> GcReport:
        return collect_garbage(
            self.client, name, keep_last=keep_last, protect_events=protect_events,
            dry_run=dry_run, progress=progress,
        )  # fmt: skip

    def fetch_bundle(self, reference: str, cache: Path) -> tuple[str, Path]:
        """(version, verified bundle folder) for ``NAME@ALIAS`` or ``NAME/VERSION``; bundles
        are cached per version under ``cache/NAME/VERSION``. The version's files are checked
        against the digests the registry recorded (:mod:`visionyard.registry.trust`); a cached
        copy is used only while it was made from exactly what the registry records now."""
        version = resolve_version(self.client, parse_reference(reference))
        target, key = cache / version.name / version.version, self.signing_key
        if not _usable(target, version, key):
            with target_lock(target):  # a second loader waits, then finds the copy made
                if not _usable(target, version, key):
                    materialize(self.client, version, target, key)
        return version.version, target

    def open_session(self, reference: str, cache: Path, **options: Any) -> InferenceSession:
        """An inference session on a registered version, verified against the registry
        (``options`` as for :meth:`InferenceSession.from_bundle`)."""
        from visionyard.runtime.session import InferenceSession  # onnxruntime: sessions only

        _, path = self.fetch_bundle(reference, cache)
        return InferenceSession.open(path, **options)

    def verify(
        self, reference: str, workdir: Path, *, check_signatures: bool = True
    ) -> tuple[VersionInfo, Sequence[PieceCheck]]:
        """Check every recorded piece of a version against the registry (``bundle verify``)."""
        version = resolve_version(self.client, parse_reference(reference))
        key = self.signing_key if check_signatures else None
        return version, verify_version(self.client, version, workdir, key)

    def check(self, reference: str) -> VersionInfo:
        """:meth:`verify`, raising :class:`BundleIntegrityError` when a piece fails."""
        with scratch_dir("vy-verify-") as tmp:
            version, rows = self.verify(reference, tmp)
        bad = [f"{row.piece} ({row.problem})" for row in rows if not row.ok]
        if bad:
            raise BundleIntegrityError(
                f"{version.name}/{version.version}", f"failed verification: {'; '.join(bad)}"
            )
        return version

    def sign(self, reference: str) -> Sequence[str]:
        """Sign what the registry recorded for a version, after checking every piece against
        it (for versions registered before a signing key was set, or whose signing was
        interrupted); returns the tags written."""
        key = self.signing_key
        if not key:
            raise ConfigError("set registry.signing_key (VISIONYARD_REGISTRY__SIGNING_KEY) first")
        with scratch_dir("vy-verify-") as tmp:
            version, rows = self.verify(reference, tmp, check_signatures=False)
            bad = [row.piece for row in rows if not row.ok]
            if bad:
                raise BundleIntegrityError(
                    f"{version.name}/{version.version}", f"{', '.join(bad)} failed "
                    "verification; refusing to sign it",
                )  # fmt: skip
            tags: dict[str, str] = {}
            for row in rows:
                tags.update(
                    signature_tags(key, version.name, version.version, row.piece, row.recorded)
                )
            if not any(row.piece == METADATA_PIECE for row in rows):  # registered before it
                found = stored_metadata_digest(self.client, version, tmp / "meta")
                tags[T.METADATA_DIGEST] = found
                tags |= signature_tags(key, version.name, version.version, METADATA_PIECE, found)
        for tag, value in tags.items():
            self.client.set_version_tag(version.name, version.version, tag, value)
        return sorted(tags)

    @property
    def signing_key(self) -> str | None:
        return self.settings.registry.signing_key


def _usable(target: Path, version: VersionInfo, key: str | None) -> bool:
    """A cached copy stands for what the registry records now (signatures included), and its
    files are intact (a damaged copy is fetched again rather than refused: the registry's copy
    may be fine)."""
    if not cached(target, version, key):
        return False
    from visionyard.bundle.store import load_bundle  # the contract: local bundles only

    try:
        load_bundle(target)
    except VisionyardError:
        return False
    return True


def resolve_bundle(settings: Settings, reference: str, cache: Path) -> tuple[str, Path]:
    """For the server: resolve ``NAME@ALIAS`` / ``NAME/VERSION`` to a cached, verified bundle."""
    return Registry(settings).fetch_bundle(reference, cache)
