"""The HTML of ``/ui`` (:mod:`visionyard.serving.rest.ui`): templates as Python strings, every
value escaped, inline CSS and a few lines of inline JS (auto-refresh, local times), no external
asset. Pure functions from plain data to text, so they are tested without a server.
"""

from __future__ import annotations

import html
import math
from typing import Any

from visionyard import __version__

BADGE = {"drift": "#c0392b", "ok": "#2e7d32", "not enough data": "#b7950b"}
STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5rem;color:#222;background:#fafafa}
h1{font-size:1.4rem;margin:0 0 .3rem}h2{font-size:1.1rem;margin-top:1.6rem}
table{border-collapse:collapse;font-size:.9rem;background:#fff}
td,th{padding:.3rem .7rem;border-bottom:1px solid #ddd;text-align:left;vertical-align:top}
th{background:#eee}td.num{text-align:right;font-variant-numeric:tabular-nums}
.badge{display:inline-block;padding:.1rem .5rem;border-radius:.3rem;color:#fff;
font-weight:bold;background:#777}.muted{color:#666;font-size:.85rem}
.gallery{display:grid;grid-template-columns:repeat(auto-fill,minmax(170px,1fr));gap:.8rem}
.gallery figure{margin:0;background:#fff;border:1px solid #ddd;border-radius:.3rem;padding:.4rem}
.gallery img{width:100%;height:140px;object-fit:contain;background:#f0f0f0;
image-rendering:pixelated}.gallery figcaption{font-size:.8rem;line-height:1.3}
"""
SCRIPT = """
const box = document.getElementById("auto");
box.checked = sessionStorage.getItem("vy-ui-auto") === "1";
function schedule() {
  if (box.checked) { setTimeout(() => { if (box.checked) { location.reload(); } }, 10000); }
}
box.addEventListener("change", () => {
  sessionStorage.setItem("vy-ui-auto", box.checked ? "1" : "0");
  schedule();
});
for (const node of document.querySelectorAll("time[datetime]")) {
  const when = new Date(node.getAttribute("datetime"));
  if (!Number.isNaN(when.getTime())) { node.textContent = when.toLocaleString(); }
}
schedule();
"""


def render(data: dict[str, Any]) -> str:
    """The whole ``/ui`` page from :func:`visionyard.serving.rest.ui._page_data`'s dict."""
    models = data["models"]
    return _page(
        "visionyard",
        f"<h1>visionyard {_e(__version__)}</h1>"
        "<p class='muted'>read-only; <label><input type='checkbox' id='auto'> refresh every "
        "10 s</label></p>"
        "<h2>Models served</h2>" + _models(models) +
        "<h2>Drift</h2>" + "".join(_drift(m) for m in models) +
        "<h2>Captured hard images</h2>" + _gallery(data["gallery"], data["captures"]),
        script=True,
    )  # fmt: skip


def unauthorized() -> str:
    return _page(
        "visionyard: token needed",
        "<h1>This page needs the inference token</h1><p>Open <code>/ui?token=TOKEN</code> "
        "once (the server keeps it in a cookie for this page), or send "
        "<code>Authorization: Bearer TOKEN</code>.</p>",
    )


def note(title: str, text: str) -> str:
    """A page that says why there is nothing to show."""
    return _page(title, f"<h1>{_e(title)}</h1><p>{_e(text)}</p><p><a href='/ui'>back</a></p>")


def _page(title: str, body: str, *, script: bool = False) -> str:
    js = f"<script>{SCRIPT}</script>" if script else ""
    return (
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{_e(title)}</title>"
        f"<link rel='icon' href='data:,'><style>{STYLE}</style></head>"
        f"<body>{body}{js}</body></html>"
    )


def _models(models: list[dict[str, Any]]) -> str:
    head = "".join(
        f"<th>{h}</th>"
        for h in ("model", "reference", "version", "state", "requests ok", "errors",
                  "latency mean", "p50", "p99", "drift")
    )  # fmt: skip
    rows = "".join(_model_row(m) for m in models)
    return f"<table id='models'><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def _model_row(m: dict[str, Any]) -> str:
    latency, requests = m["latency"], m["requests"]
    state = _e(m["state"]) + (f"<br><span class='muted'>{_e(m['error'])}</span>" if m["error"]
                              else "")  # fmt: skip
    cells = [
        f"<td>{_e(m['name'])}</td>", f"<td>{_e(m['reference'])}</td>",
        f"<td>{_e(str(m['version'] or '-'))}</td>", f"<td>{state}</td>",
        f"<td class='num'>{requests['ok']}</td>", f"<td class='num'>{requests['errors']}</td>",
        f"<td class='num'>{_ms(latency['mean_ms'])}</td>",
        *(f"<td class='num'>{_ms(latency[k], '&le; ')}</td>" for k in ("p50_ms", "p99_ms")),
        f"<td>{_badge(m['monitor'])}</td>",
    ]  # fmt: skip
    return f"<tr data-model='{_e(m['name'])}'>{''.join(cells)}</tr>"


def _drift(m: dict[str, Any]) -> str:
    monitor = m["monitor"]
    window = monitor.get("window") or {}
    lines = [
        f"<h3>{_e(m['name'])} v{_e(str(m['version'] or '-'))} {_badge(monitor)}</h3>",
        f"<p>{_e(str(monitor.get('message') or ''))}</p>",
    ]
    if window:
        lines.append(
            f"<p class='muted'>window: {window.get('images')} images (at most "
            f"{window.get('max_images')}, {window.get('max_age_s')} s); reference: "
            f"{_e(str((monitor.get('reference') or {}).get('images')))} images</p>"
        )
    rows = [f for f in monitor.get("features", []) if f.get("statistic") is not None]
    if rows:
        lines.append(_features(rows))
    if monitor.get("verdict") in ("drift", "ok"):
        href = f"/ui/models/{_e(m['name'])}/report"
        lines.append(f"<p><a href='{href}'>report with plots of the live window</a></p>")
    return "<section class='drift'>" + "".join(lines) + "</section>"


def _features(rows: list[dict[str, Any]]) -> str:
    head = "<tr><th>feature</th><th>test</th><th>statistic</th><th>p (adjusted)</th>" \
           "<th>PSI</th><th>verdict</th></tr>"  # fmt: skip
    body = "".join(
        f"<tr><td>{_e(f['feature'])}</td><td>{_e(f['test'])}</td>"
        f"<td class='num'>{_num(f.get('statistic'))}</td>"
        f"<td class='num'>{_num(f.get('p_adjusted'))}</td><td class='num'>"
        f"{_num(f.get('psi'))}</td><td>{_e(f['verdict'])}</td></tr>"
        for f in rows
    )
    return f"<table>{head}{body}</table>"


def _gallery(items: list[dict[str, Any]], folder: str | None) -> str:
    if folder is None:
        return "<p class='muted'>capture is off (set monitor.capture.dir)</p>"
    if not items:
        return f"<p class='muted'>no captured images yet in {_e(folder)}</p>"
    figures = "".join(_capture(item) for item in items)
    return (
        f"<p class='muted'>{len(items)} newest of {_e(folder)}, newest first</p>"
        f"<div class='gallery' id='gallery'>{figures}</div>"
    )


def _capture(item: dict[str, Any]) -> str:
    predicted = item.get("predicted")
    confidence = item.get("confidence")
    score = f" ({confidence:.2f})" if isinstance(confidence, float) else ""
    reasons = ", ".join(str(r) for r in item.get("reasons", []))
    when = str(item.get("time", ""))
    return (
        f"<figure><img src='{_e(item['src'])}' alt='{_e(str(predicted))}' loading='lazy'>"
        f"<figcaption><b>{_e(str(predicted))}</b>{_e(score)}<br>{_e(reasons)}<br>"
        f"{_e(str(item.get('model')))} v{_e(str(item.get('version')))}<br>"
        f"<time datetime='{_e(when)}'>{_e(when)}</time></figcaption></figure>"
    )


def _badge(monitor: dict[str, Any]) -> str:
    text = str(monitor.get("verdict") or monitor.get("state") or "-")
    colour = BADGE.get(text, "#777")
    return f"<span class='badge' style='background:{colour}'>{_e(text)}</span>"


def _ms(value: float | None, prefix: str = "") -> str:
    if value is None:
        return "-"
    return "&gt; 5 s" if math.isinf(value) else f"{prefix}{value:.1f} ms"


def _num(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, int | float) else "-"


def _e(text: str) -> str:
    return html.escape(text, quote=True)
