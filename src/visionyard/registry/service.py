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
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from visionyard.bundle.store import load_bundle
from visionyard.errors import BundleError, VisionyardError
from visionyard.registry.cleanup import GcReport, collect_garbage
from visionyard.registry.diffing import VersionDiff, diff_versions
from visionyard.registry.evaluation import download_bundle, gate_runner
from visionyard.registry.gates import load_policy
from visionyard.registry.history import AliasEvent
from visionyard.registry.promote import (
    MoveOutcome,
    PromoteRequest,
    ReportHook,
    check_alias,
    promote,
    rollback,
)
from visionyard.registry.register import RegisterRequest, Registration, register_run
from visionyard.registry.views import (
    AliasView,
    ModelRow,
    VersionView,
    history,
    list_models,
    parse_reference,
    resolve_version,
    show,
)
from visionyard.settings import Settings
from visionyard.tracking.environment import os_user
from visionyard.tracking.registry_client import RegistryClient

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
        request = RegisterRequest(run_id, name, actor or default_actor(), semver, force, parent)
        return register_run(self.client, request)

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
    ) -> MoveOutcome:
        """Move ``alias`` to ``version``; ``on_report(report, ref)`` sees the gate report (also
        a failed one) before the move or the :class:`GateFailedError`."""
        check_alias(alias, self.aliases)
        runner = gate_runner(self.client, name, load_policy(gate), progress) if gate else None
        request = PromoteRequest(
            name, str(version), alias, actor or default_actor(), gate, force, reason
        )
        return promote(self.client, request, runner, on_report)

    def rollback(
        self, name: str, alias: str = "production", *, reason: str = "", actor: str | None = None
    ) -> MoveOutcome:
        check_alias(alias, self.aliases)
        return rollback(self.client, name, alias, actor or default_actor(), reason)

    def history(
        self, name: str, alias: str | None = None, limit: int | None = None
    ) -> tuple[list[AliasEvent], list[AliasView]]:
        if alias is not None:
            check_alias(alias, self.aliases)
        return history(self.client, name, alias, limit)

    def show(self, reference: str) -> VersionView:
        return show(self.client, parse_reference(reference))

    def list(self) -> list[ModelRow]:
        return list_models(self.client)

    def diff(self, name: str, v1: str, v2: str) -> VersionDiff:
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
        are cached per version under ``cache/NAME/VERSION``."""
        version = resolve_version(self.client, parse_reference(reference))
        target = cache / version.name / version.version
        if target.is_dir():
            try:
                return version.version, load_bundle(target).path
            except VisionyardError:
                shutil.rmtree(target, ignore_errors=True)
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".download-", dir=target.parent))
        try:
            bundle = download_bundle(self.client, version, staging)
            os.replace(bundle.path, target)
        except OSError as exc:
            raise BundleError(target, f"cannot cache the bundle: {exc}") from exc
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return version.version, target


def resolve_bundle(settings: Settings, reference: str, cache: Path) -> tuple[str, Path]:
    """For the server: resolve ``NAME@ALIAS`` / ``NAME/VERSION`` to a cached, verified bundle."""
    return Registry(settings).fetch_bundle(reference, cache)
