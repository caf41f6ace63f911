"""Safe rollouts: canary and shadow rollouts as registry state, their policy, the decisions and
their exactly-once record. Knows no transport: the server (``visionyard.serving``) routes
traffic from :func:`read_rollout` and calls :func:`step_rollout` with its live figures.

Changes to the shared spec (issue 12), as implemented:

- ``Rollout`` has two more fields, both with defaults: ``rule`` (the rule of the last recorded
  decision) and ``basis`` (the key of the rollout event the state comes from). ``decided_at``,
  ``reason`` and ``figures`` describe the LAST recorded decision (an advance too), so
  ``status`` tells whether it was final. Property ``running`` and ``last_step`` added.
- State: besides the ``vy.rollout`` tag (the projection, JSON of :meth:`Rollout.to_json`,
  ``"schema": 1``), every transition is a ``vy.rollout.event.<ns>.<hex>`` tag; the chain of
  those is the truth and :func:`read_rollout` returns its head (still one ``get_model``).
- ``RolloutFigures`` groups each role's figures: ``production`` and ``candidate`` are
  :class:`RoleFigures` (``requests``, ``errors``, ``p99_s`` in SECONDS); then
  ``shadow_agreement``, ``shadow_count``, ``drift_share`` and optional ``rollout_id``/``step``
  (figures for another rollout or step are held with rule ``stale_figures``).
- ``Decision`` has ``action`` (hold | advance | promote | rollback | abort; abort only from
  the CLI), ``rule``, ``figures``, ``step`` (the step decided on: the compare-and-set's
  expectation) and ``detail`` (the rule in words).
- ``Policy`` has an optional ``gate`` (a promotion gate file); ``max_drift`` is a share of
  drift features flagged (see :mod:`~visionyard.monitor.rollout.policy`).
- ``Policy.max_duration_seconds`` (optional): a rollout still held that long after its start is
  rolled back with rule ``max_duration`` (a shadow shed under sustained load never reaches
  ``min_requests``); ``RolloutFigures.shadow_shed`` counts the shed shadows and is recorded.
- ``apply_decision`` takes keyword options (``actor``, ``settle_s``, ``on_gate_failure``,
  ``now``) and returns :class:`Recorded` (outcome applied | held | stale | superseded). A
  promotion whose gate fails is recorded as a rollback with rule ``gate``.
- ``step_rollout(service, name, figures, now, *, settle_s=0.2, grace_s=10.0)`` returns the
  decision it made (a hold too) or None (no running rollout, or another replica won); one
  ``get_model`` when it holds. ``now`` also stamps ``step_started_at``/``decided_at``.
- Every recorded, superseded or completed transition logs one line on ``visionyard.rollout``
  with ``extra={"fields": {...}}`` (model, rollout_id, event, kind, step, share, rule, detail,
  figures, actor, outcome).

Where things are (this package's ``__init__`` stays free of mlflow)::

    from visionyard.monitor.rollout.state import Rollout, read_rollout, ROLLOUT_TAG
    from visionyard.monitor.rollout.decide import RolloutFigures, RoleFigures, Decision, decide
    from visionyard.monitor.rollout.record import step_rollout, apply_decision, Recorded
    from visionyard.monitor.rollout.lifecycle import StartRequest, start_rollout,
        promote_rollout, abort_rollout
    from visionyard.monitor.rollout.policy import Policy, load_policy
"""

from visionyard.monitor.rollout.decide import Decision, RoleFigures, RolloutFigures, decide
from visionyard.monitor.rollout.events import RolloutEvent
from visionyard.monitor.rollout.policy import Policy, load_policy, parse_policy
from visionyard.monitor.rollout.state import (
    PRODUCTION_ALIAS,
    ROLLOUT_TAG,
    Rollout,
    RolloutStateError,
    read_rollout,
)

__all__ = [
    "PRODUCTION_ALIAS",
    "ROLLOUT_TAG",
    "Decision",
    "Policy",
    "RoleFigures",
    "Rollout",
    "RolloutEvent",
    "RolloutFigures",
    "RolloutStateError",
    "decide",
    "load_policy",
    "parse_policy",
    "read_rollout",
]
