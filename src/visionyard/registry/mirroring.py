"""Registry events (register, promote, force, rollback) as mirror events for W&B.

The registry records each event in MLflow first (:mod:`visionyard.registry.history`); only then
is a copy sent to the configured mirrors (:mod:`visionyard.tracking.mirror`), and a mirror that
fails is one warning, never a failed registry command.
"""

from __future__ import annotations

from visionyard.errors import VisionyardError
from visionyard.registry import tags as T
from visionyard.registry.promote import MoveOutcome
from visionyard.registry.register import Registration
from visionyard.tracking.mirror import Mirror, RegistryEvent, mirror_registry_event
from visionyard.tracking.registry_client import RegistryClient


def mirror_registration(mirror: Mirror | None, registration: Registration) -> None:
    version = registration.version
    event = RegistryEvent(
        kind="register",
        model=version.name,
        version=version.version,
        actor=version.tags.get(T.REGISTERED_BY) or version.user_id or "",
        run_id=version.run_id,
        bundle_digest=registration.bundle_digest,
        extra={"semver": registration.semver},
    )
    mirror_registry_event(mirror, event)


def mirror_move(
    mirror: Mirror | None, client: RegistryClient, name: str, outcome: MoveOutcome
) -> None:
    """Mirror the alias move ``outcome`` made (nothing for a dry run or no move)."""
    if mirror is None or outcome.result is None:
        return
    moved = outcome.result.event
    run_id = digest = None
    try:
        version = client.get_version(name, moved.to_version)
        run_id, digest = version.run_id, version.tags.get(T.BUNDLE_DIGEST)
    except VisionyardError:
        pass  # the move is done and recorded; the copy goes without these two details
    event = RegistryEvent(
        kind=moved.kind,
        model=name,
        version=moved.to_version,
        actor=moved.actor,
        alias=moved.alias,
        from_version=moved.from_version,
        reason=moved.reason,
        run_id=run_id,
        bundle_digest=digest,
    )
    mirror_registry_event(mirror, event)
