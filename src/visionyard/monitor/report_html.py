"""A :class:`~visionyard.monitor.report.Report` as one self-contained HTML page.

Every plot is a PNG drawn by matplotlib on its Agg canvas (no pyplot, no global backend
state, so the server may draw from a worker thread) and embedded as a ``data:`` URI; the
styles are inline; the page names no external URL and runs no script.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from visionyard.monitor.detectors import DetectorResult
from visionyard.monitor.report import Histogram, Projection, Report

if TYPE_CHECKING:
    from matplotlib.axes import Axes

REFERENCE_COLOUR = "#4c72b0"
LIVE_COLOUR = "#dd8452"
VERDICT_COLOUR = {"drift": "#c0392b", "ok": "#2e7d32", "not enough data": "#b7950b"}
STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem;color:#222;max-width:1200px}
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem}
.verdict{display:inline-block;padding:.3rem .8rem;border-radius:.3rem;color:#fff;font-weight:bold}
table{border-collapse:collapse;font-size:.85rem}
td,th{padding:.2rem .6rem;border-bottom:1px solid #ddd}
th{text-align:left;background:#f4f4f4}td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.drift td{background:#fdecea}.plots{display:flex;flex-wrap:wrap;gap:1rem}
figure{margin:0}figcaption{font-size:.8rem;color:#555}.note{color:#555;font-style:italic}
"""


def report_html(report: Report) -> str:
    """The whole page (UTF-8 text)."""
    about = report.about
    title = f"Drift report: {about.get('model')} v{about.get('version')}"
    parts = [
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{_e(title)}</title>",
        f"<link rel='icon' href='data:,'><style>{STYLE}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        verdict_badge(report.verdict),
        _about_table(about, report),
        "<h2>Features</h2>",
        feature_table(report.comparison.results),
        *plot_sections(report),
        "</body></html>",
    ]
    return "\n".join(parts)


def verdict_badge(verdict: str | None) -> str:
    text = verdict or "no verdict"
    colour = VERDICT_COLOUR.get(text, "#777")
    return f"<p>verdict: <span class='verdict' style='background:{colour}'>{_e(text)}</span></p>"


def feature_table(rows: list[DetectorResult]) -> str:
    head = "".join(
        f"<th>{h}</th>"
        for h in ("feature", "test", "statistic", "p-value", "adjusted", "PSI", "n ref",
                  "n live", "verdict")
    )  # fmt: skip
    body = "".join(_feature_row(r) for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def plot_sections(report: Report) -> list[str]:
    """The plots, each an ``<img>`` (one per name in ``report.plots``) under its heading."""
    parts = ["<h2>Reference vs live: continuous features</h2><div class='plots'>"]
    for name, hist in report.histograms.items():
        parts.append(_figure(f"histogram: {name}", partial(_hist, hist=hist, name=name)))
    parts.append("</div><h2>Mix: class and other categorical features</h2><div class='plots'>")
    for name, mix in report.mixes.items():
        parts.append(_figure(f"mix: {name}", partial(_bars, mix=mix, name=name)))
    parts.append("</div><h2>Confidence</h2>")
    if report.confidence is not None:
        name, hist = report.confidence
        parts.append(_figure(f"confidence: {name}", partial(_hist, hist=hist, name=name)))
    else:
        parts.append("<p class='note'>no confidence feature in the profile</p>")
    parts.append("<h2>Embeddings</h2>")
    if report.projection is not None:
        projection = report.projection
        parts.append(
            _figure("embeddings: 2-D projection", partial(_scatter, projection=projection))
        )
    if report.embedding_note:
        parts.append(f"<p class='note'>{_e(report.embedding_note)}</p>")
    return parts


def _about_table(about: dict[str, Any], report: Report) -> str:
    rows = {
        **{k: v for k, v in about.items() if k not in ("model", "version")},
        "alpha (after Benjamini-Hochberg)": report.comparison.options.alpha,
        "drifting": ", ".join(report.comparison.drifting) or "none",
    }
    body = "".join(f"<tr><th>{_e(k)}</th><td>{_e(str(v))}</td></tr>" for k, v in rows.items())
    return f"<table>{body}</table>"


def _feature_row(r: DetectorResult) -> str:
    cells = [_e(r.feature), _e(r.test)]
    numbers = [_num(r.statistic), _p(r.p_value), _p(r.p_adjusted), _num(r.psi)]
    verdict = _e(r.verdict + (f" ({r.note})" if r.note and not r.tested else ""))
    return (
        f"<tr class='{_e(r.verdict.replace(' ', '-'))}'>"
        + "".join(f"<td>{c}</td>" for c in cells)
        + "".join(f"<td class='num'>{n}</td>" for n in numbers)
        + f"<td class='num'>{r.reference_n}</td><td class='num'>{r.window_n}</td>"
        + f"<td>{verdict}</td></tr>"
    )


def _figure(caption: str, draw: Callable[[Axes], None]) -> str:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(4.2, 2.6), dpi=80, layout="constrained")
    FigureCanvasAgg(figure)
    draw(figure.add_subplot())
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    data = base64.b64encode(buffer.getvalue()).decode()
    return (
        f"<figure><img alt='{_e(caption)}' src='data:image/png;base64,{data}'>"
        f"<figcaption>{_e(caption)}</figcaption></figure>"
    )


def _hist(ax: Axes, hist: Histogram, name: str) -> None:
    edges = hist.edges
    widths = [b - a for a, b in zip(edges, edges[1:], strict=False)]
    for values, colour, label, n in (
        (hist.reference, REFERENCE_COLOUR, "reference", hist.reference_n),
        (hist.live, LIVE_COLOUR, "live", hist.live_n),
    ):
        ax.bar(edges[:-1], values, widths, align="edge", alpha=0.55, color=colour,
               label=f"{label} (n={n})")  # fmt: skip
    ax.set_title(name, fontsize=9)
    ax.set_ylabel("share", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=7, loc="upper right")  # "best" searches the data: slow, and warns


def _bars(ax: Axes, mix: dict[str, tuple[float, float]], name: str) -> None:
    labels = list(mix)
    positions = list(range(len(labels)))
    ax.bar([p - 0.2 for p in positions], [mix[k][0] for k in labels], 0.4,
           color=REFERENCE_COLOUR, label="reference")  # fmt: skip
    ax.bar([p + 0.2 for p in positions], [mix[k][1] for k in labels], 0.4,
           color=LIVE_COLOUR, label="live")  # fmt: skip
    ax.set_xticks(positions, labels, rotation=30 if len(labels) > 4 else 0, fontsize=7)
    ax.set_title(name, fontsize=9)
    ax.set_ylabel("share", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=7, loc="upper right")  # "best" searches the data: slow, and warns


def _scatter(ax: Axes, projection: Projection) -> None:
    ref = projection.reference
    ax.scatter(ref[:, 0], ref[:, 1], s=6, alpha=0.5, color=REFERENCE_COLOUR, label="reference")
    if projection.live is not None:
        live = projection.live
        ax.scatter(live[:, 0], live[:, 1], s=6, alpha=0.6, color=LIVE_COLOUR, label="live")
    first, second = projection.explained
    ax.set_xlabel(f"PC1 ({first:.0%})", fontsize=8)
    ax.set_ylabel(f"PC2 ({second:.0%})", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=7, loc="upper right")  # "best" searches the data: slow, and warns


def _e(text: str) -> str:
    return html.escape(text, quote=True)


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def _p(value: float | None) -> str:
    return "-" if value is None else f"{value:.2e}" if value < 1e-3 else f"{value:.3f}"
