"""A read-only web page for people: ``GET /ui`` (off unless ``monitor.ui = true`` or
``visionyard serve --ui``).

It shows the models served (the reference each follows, e.g. ``shapes@production``, and the
version it resolves to now), live request and latency figures read from the server's own
Prometheus metrics, the drift verdict of each version (the same comparison as
``GET /v2/models/{name}/monitor``, with a link to the full report of the live window drawn by
:mod:`visionyard.monitor.report_html`), and a gallery of the captured hard images with their
predictions, newest first. The HTML is rendered by :mod:`visionyard.serving.rest.ui_page`:
inline CSS and a few lines of inline JS, no external asset, no build step.

Access: with ``serving.inference_token`` set, every ``/ui`` route needs it, as a bearer header,
or once as ``/ui?token=...``: the server then sets it as an HttpOnly, SameSite=Strict cookie
(``vy_ui_token``, path ``/ui``) and redirects to ``/ui`` without it, so the token leaves the
address bar and the gallery's images carry the cookie. ``GET /ui/captures/{path}`` serves only
image files inside the capture folder (resolved path checked; ``..``, links out of the folder,
hidden files and sidecars are 404).
"""

from __future__ import annotations

import asyncio
import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response

from visionyard.data.captures import read_sidecar
from visionyard.errors import VisionyardError
from visionyard.serving.auth import bearer, token_matches
from visionyard.serving.dataplane import DataPlane
from visionyard.serving.metrics import ServingMetrics
from visionyard.serving.rest import ui_page
from visionyard.settings import MonitorSettings, ServingSettings

COOKIE = "vy_ui_token"
GALLERY = 48
IMAGE_TYPES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png",
               ".webp": "image/webp"}  # fmt: skip
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; img-src 'self' data:; "
    "style-src 'unsafe-inline'; script-src 'unsafe-inline'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'",
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}


@dataclass(frozen=True)
class UiConfig:
    token: str | None
    captures: Path | None
    min_samples: int


@dataclass(frozen=True)
class Figures:
    """Request counts and total-latency buckets per model, read from the server's metrics."""

    samples: list[tuple[str, dict[str, str], float]]

    @classmethod
    def of(cls, metrics: ServingMetrics) -> Figures:
        rows = [
            (s.name, s.labels, s.value)
            for metric in (metrics.requests, metrics.latency)
            for family in metric.collect()
            for s in family.samples
        ]
        return cls(rows)

    def requests(self, model: str) -> dict[str, int]:
        """``{"ok": n, "errors": n}`` over every protocol and version."""
        counts = {"ok": 0, "errors": 0}
        for _, labels, value in self._of(model, "visionyard_requests_total"):
            counts["ok" if labels.get("status") == "ok" else "errors"] += int(value)
        return counts

    def latency(self, model: str) -> dict[str, float | None]:
        """Mean of the total latency, and the bucket bounds holding its p50 and p99 (ms)."""
        count = sum(v for _, lab, v in self._of(model, "visionyard_request_duration_seconds_count")
                    if lab.get("stage") == "total")  # fmt: skip
        total = sum(v for _, lab, v in self._of(model, "visionyard_request_duration_seconds_sum")
                    if lab.get("stage") == "total")  # fmt: skip
        buckets: dict[float, float] = defaultdict(float)
        for _, labels, value in self._of(model, "visionyard_request_duration_seconds_bucket"):
            if labels.get("stage") == "total":
                buckets[float(labels["le"])] += value
        return {
            "count": count, "mean_ms": 1000 * total / count if count else None,
            "p50_ms": _bound(buckets, 0.5 * count), "p99_ms": _bound(buckets, 0.99 * count),
        }  # fmt: skip

    def _of(self, model: str, metric: str) -> list[tuple[str, dict[str, str], float]]:
        return [r for r in self.samples if r[0] == metric and r[1].get("model") == model]


def _bound(buckets: dict[float, float], rank: float) -> float | None:
    """The upper bound (ms) of the first bucket holding ``rank`` observations (inf: beyond)."""
    if rank <= 0:
        return None
    for bound in sorted(buckets):
        if buckets[bound] >= rank:
            return bound * 1000 if math.isfinite(bound) else math.inf
    return None


def mount_ui(
    app: FastAPI, plane: DataPlane, serving: ServingSettings, monitor: MonitorSettings
) -> None:
    """Add ``/ui``, ``/ui/captures/{path}`` and ``/ui/models/{name}/report`` to ``app``."""
    config = UiConfig(serving.inference_token, monitor.capture.dir, monitor.min_samples)

    @app.get("/ui", include_in_schema=False)
    async def page(request: Request) -> Response:
        denied = _check(config, request)
        if denied is not None:
            return denied
        body = await asyncio.to_thread(_page_data, plane, config)
        return HTMLResponse(ui_page.render(body), headers=HEADERS)

    @app.get("/ui/captures/{path:path}", include_in_schema=False)
    async def capture(request: Request, path: str) -> Response:
        denied = _check(config, request)
        if denied is not None:
            return denied
        found = capture_file(config.captures, path)
        if found is None:
            return HTMLResponse("not found", 404, headers=HEADERS)
        media = IMAGE_TYPES[found.suffix.lower()]
        return FileResponse(found, media_type=media, headers={**HEADERS, "Cache-Control":
                            "private, max-age=3600"})  # fmt: skip

    @app.get("/ui/models/{name}/report", include_in_schema=False)
    async def report(request: Request, name: str) -> Response:
        denied = _check(config, request)
        if denied is not None:
            return denied
        text = await asyncio.to_thread(live_report, plane, name, config.min_samples)
        return HTMLResponse(text, headers=HEADERS)


def _check(config: UiConfig, request: Request) -> Response | None:
    """None when the request may see the page; else the answer (401, or the cookie redirect)."""
    if config.token is None:
        return None
    offered = request.query_params.get("token")
    if offered is not None and token_matches(config.token, offered):
        target = request.url.path
        answer = RedirectResponse(target, 303, headers=HEADERS)
        answer.set_cookie(COOKIE, offered, httponly=True, samesite="strict", path="/ui")
        return answer
    given = bearer(request.headers.get("authorization")) or request.cookies.get(COOKIE)
    if token_matches(config.token, given):
        return None
    headers = {**HEADERS, "WWW-Authenticate": "Bearer"}
    return HTMLResponse(ui_page.unauthorized(), 401, headers=headers)


def capture_file(root: Path | None, path: str) -> Path | None:
    """The image file ``path`` names inside ``root``, or None (outside it, hidden, not an image,
    missing)."""
    if root is None or not path or "\0" in path:
        return None
    try:
        base = root.resolve(strict=True)
        target = (base / path).resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    inside = target.is_relative_to(base) and target != base
    hidden = (
        any(part.startswith(".") for part in target.relative_to(base).parts) if inside else True
    )
    if hidden or target.suffix.lower() not in IMAGE_TYPES or not target.is_file():
        return None
    return target


def _page_data(plane: DataPlane, config: UiConfig) -> dict[str, Any]:
    figures = Figures.of(plane.metrics)
    return {
        "models": [_model_row(plane, name, figures) for name in plane.pool.names],
        "gallery": gallery(config.captures),
        "captures": str(config.captures) if config.captures else None,
    }


def _model_row(plane: DataPlane, name: str, figures: Figures) -> dict[str, Any]:
    entry = plane.pool.entry(name)
    current = entry.current
    row: dict[str, Any] = {
        "name": name, "reference": entry.source.reference, "state": entry.state,
        "error": entry.last_error or "", "version": current.version if current else None,
        "requests": figures.requests(name), "latency": figures.latency(name),
    }  # fmt: skip
    row["monitor"] = _monitor(current)
    return row


def _monitor(model: Any) -> dict[str, Any]:
    """The same comparison as ``GET /v2/models/{name}/monitor`` (compared now)."""
    if model is None:
        return {"state": "not loaded", "message": "no version is loaded"}
    if model.monitor is None:
        return {"state": "off", "message": "monitoring is off (monitor.enabled = false)"}
    try:
        found: dict[str, Any] = model.monitor.monitor.refresh()
    except Exception as exc:  # the page shows the problem; the server keeps serving
        return {"state": "error", "message": f"monitor failed: {exc}"}
    return found


def gallery(root: Path | None, limit: int = GALLERY) -> list[dict[str, Any]]:
    """The newest complete captures (sidecar and image), newest first."""
    if root is None or not root.is_dir():
        return []
    sidecars = sorted(root.glob("*/*/*/*.json"), key=_mtime, reverse=True)
    found: list[dict[str, Any]] = []
    for sidecar in sidecars:
        item = _capture(root, sidecar)
        if item is not None:
            found.append(item)
        if len(found) >= limit:
            break
    return sorted(found, key=lambda item: str(item.get("time", "")), reverse=True)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _capture(root: Path, sidecar: Path) -> dict[str, Any] | None:
    found = read_sidecar(sidecar)
    if found is None:
        return None
    image, meta = found
    if capture_file(root, image.relative_to(root).as_posix()) is None:
        return None
    return {**meta, "src": "/ui/captures/" + image.relative_to(root).as_posix()}


def live_report(plane: DataPlane, name: str, min_samples: int) -> str:
    """The drift report of the serving version's live window (or a page saying why not)."""
    from visionyard.monitor import CompareOptions, compare
    from visionyard.monitor.report import build_report
    from visionyard.monitor.report_html import report_html

    try:
        model = plane.pool.current(name)
    except VisionyardError as exc:
        return ui_page.note(f"report of {name}", str(exc))
    watcher = model.monitor
    if watcher is None:
        return ui_page.note(f"report of {name}", "monitoring is off (monitor.enabled = false)")
    monitor = watcher.monitor
    profile = monitor.reference.profile
    sample, _ = monitor.snapshot()
    if profile is None or sample.images < min_samples:
        why = monitor.reference.message if profile is None else (
            f"not enough data (n={sample.images} < {min_samples})")  # fmt: skip
        return ui_page.note(f"report of {name} v{model.version}", why)
    options = CompareOptions(alpha=monitor.settings.alpha, min_samples=min_samples)
    about = {"model": name, "version": model.version, "live": "the server's live window"}
    return report_html(
        build_report(profile, sample, compare(profile.sample, sample, options), about)
    )
