"""``visionyard monitor profile | show | compare | report``: reference profiles and drift.

Heavy imports (mlflow, onnxruntime, scipy) happen inside the commands.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.markup import escape
from rich.table import Table

from visionyard.cli.console import app_context, emit_json, err, out
from visionyard.cli.data import progress_bar
from visionyard.errors import ConfigError, DatasetError

if TYPE_CHECKING:
    from visionyard.monitor import CompareOptions, Comparison, Profile
    from visionyard.monitor.report import Report
    from visionyard.monitor.store import Images
    from visionyard.settings import Settings

app = typer.Typer(help="Reference profiles and drift of registered versions.", no_args_is_help=True)
_VERDICT_STYLE = {"drift": "bold red", "ok": "green", "not enough data": "yellow", "skipped": "dim"}


@app.command("profile")
def profile(
    ctx: typer.Context,
    reference: str = typer.Argument(..., help="NAME/VERSION (or NAME@ALIAS)."),
    data: Path = typer.Option(..., "--data", help="Folder of the version's validation images."),
    split: str = typer.Option("val", "--split", help="Sub-folder to use when it exists."),
    limit: int | None = typer.Option(None, "--limit", min=1, help="At most N images."),
) -> None:
    """Build the version's reference profile and store it beside the version."""
    profile_now(ctx, reference, data, split, limit)


def profile_now(
    ctx: typer.Context, reference: str, data: Path, split: str | None = "val",
    limit: int | None = None,
) -> None:  # fmt: skip
    """Profile ``reference`` on ``data`` and store it (``monitor profile``, and ``register
    --profile-data`` / ``export`` for a version without a profile yet)."""
    from visionyard.monitor.store import profile_version
    from visionyard.tracking.mlflow_model import scratch_dir

    images = _images(data, split, limit)
    settings = app_context(ctx).settings
    with scratch_dir("vy-monitor-") as workdir, _lazy_bar("profiling") as bar:
        info, built, digest = profile_version(settings, reference, images, workdir, progress=bar)
    out().print(_summary_table(built, f"profile of {escape(info.name)} v{info.version}"))
    out().print(f"stored beside {escape(info.name)}/{info.version}: {digest}", highlight=False)
    window = settings.monitor.window_size
    if built.images < window:
        err().print(
            f"note: the profile holds {built.images} images, fewer than a server window "
            f"(monitor.window_size = {window}); a full window can flag what is only chance in "
            "so small a reference: profile more images if you have them",
            highlight=False,
        )


@app.command("show")
def show(
    ctx: typer.Context,
    reference: str = typer.Argument(..., help="NAME/VERSION or NAME@ALIAS."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """The stored profile of a version: metadata and a summary of every feature."""
    from visionyard.monitor.store import load_version_profile
    from visionyard.tracking.mlflow_model import scratch_dir

    with scratch_dir("vy-monitor-") as workdir:
        info, stored = load_version_profile(app_context(ctx).settings, reference, workdir)
    if as_json:
        body = {**stored.meta, "summary": stored.sample.summary(), "shares": stored.sample.shares()}
        emit_json(body)
        return
    out().print(_summary_table(stored, f"profile of {escape(info.name)} v{info.version}"))


@app.command("compare")
def compare_cmd(
    ctx: typer.Context,
    reference: str = typer.Argument(..., help="NAME@ALIAS or NAME/VERSION."),
    data: Path = typer.Option(..., "--data", help="Folder of images to compare."),
    limit: int | None = typer.Option(None, "--limit", min=1, help="At most N images."),
    alpha: float = typer.Option(0.005, "--alpha", min=1e-6, max=0.5, help="After correction."),
    min_samples: int = typer.Option(30, "--min-samples", min=2, help="Per feature and side."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Compare a folder of images with the version's profile (exit 0 either way)."""
    from visionyard.monitor import CompareOptions
    from visionyard.monitor.store import compare_version
    from visionyard.tracking.mlflow_model import scratch_dir

    images = _images(data, None, limit)
    options = CompareOptions(alpha=alpha, min_samples=min_samples)
    with scratch_dir("vy-monitor-") as workdir, _lazy_bar("comparing") as bar:
        found = compare_version(
            app_context(ctx).settings, reference, images, workdir, options=options, progress=bar
        )
    info, result = found.version, found.comparison
    if as_json:
        about = {"model": info.name, "version": info.version, "data": str(data)}
        emit_json({**about, **result.to_dict(), "unreadable": found.collected.unreadable})
        return
    out().print(
        _comparison_table(result, f"{escape(info.name)} v{info.version} vs {escape(str(data))}")
    )
    style = _VERDICT_STYLE[result.verdict]
    out().print(f"verdict: [{style}]{result.verdict}[/] ({result.window_images} images)")
    if found.collected.unreadable:
        err().print(f"note: {len(found.collected.unreadable)} unreadable image(s) skipped")


@app.command("report")
def report_cmd(
    ctx: typer.Context,
    reference: str = typer.Argument(..., help="NAME@ALIAS or NAME/VERSION."),
    data: Path | None = typer.Option(None, "--data", help="Folder of live images."),
    captures: Path | None = typer.Option(
        None, "--captures", help="Or a capture folder: the model's captured images."
    ),
    window: Path | None = typer.Option(
        None,
        "--window",
        help="Or a window saved from a server (GET .../monitor/window).",
    ),
    out_file: Path | None = typer.Option(None, "--out", help="Write the HTML report here."),
    limit: int | None = typer.Option(None, "--limit", min=1, help="At most N images."),
    alpha: float = typer.Option(0.01, "--alpha", min=1e-6, max=0.5, help="After correction."),
    min_samples: int = typer.Option(30, "--min-samples", min=2, help="Per feature and side."),
    as_json: bool = typer.Option(False, "--json", help="Print the report's content as JSON."),
) -> None:
    """A self-contained HTML drift report (plots embedded) of live images vs the profile."""
    from visionyard.monitor import CompareOptions
    from visionyard.monitor.report import build_report
    from visionyard.monitor.report_html import report_html
    from visionyard.monitor.store import compare_version
    from visionyard.tracking.mlflow_model import scratch_dir

    if out_file is None and not as_json:
        raise ConfigError("monitor report needs --out report.html, --json or both")
    if sum(x is not None for x in (data, captures, window)) != 1:
        raise ConfigError("monitor report needs exactly one of --data, --captures or --window")
    options = CompareOptions(alpha=alpha, min_samples=min_samples)
    settings = app_context(ctx).settings
    if window is not None:
        built = _window_report(settings, reference, window, options)
    else:
        images, live = _live_images(reference, data, captures, limit)
        with scratch_dir("vy-monitor-") as workdir, _lazy_bar("comparing") as bar:
            found = compare_version(
                settings, reference, images, workdir, options=options, progress=bar
            )
        info = found.version
        about = {"model": info.name, "version": info.version, "live": live}
        built = build_report(found.profile, found.collected.sample, found.comparison, about)
    if out_file is not None:
        out_file.write_text(report_html(built), encoding="utf-8")
        err().print(f"report written: {escape(str(out_file))} (verdict: {built.verdict})")
    if as_json:
        emit_json(built.to_dict())


def _window_report(
    settings: Settings, reference: str, path: Path, options: CompareOptions
) -> Report:
    """A saved window (:mod:`visionyard.monitor.saved_window`) against the version's profile."""
    from visionyard.monitor import compare
    from visionyard.monitor.report import build_report
    from visionyard.monitor.saved_window import read_window
    from visionyard.monitor.store import load_version_profile
    from visionyard.tracking.mlflow_model import scratch_dir

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DatasetError(f"cannot read {path} ({exc.strerror or exc})") from exc
    saved = read_window(data, str(path))
    with scratch_dir("vy-monitor-") as workdir:
        info, profile = load_version_profile(settings, reference, workdir)
    if saved.model and saved.model != info.name:
        raise ConfigError(
            f"{path} is a window of model {saved.model}, not {info.name}: "
            f"report it against {saved.model}@ALIAS"
        )
    live = f"window {path.name} (version {saved.version}, saved {saved.meta.get('saved', '-')})"
    about = {"model": info.name, "version": info.version, "live": live}
    comparison = compare(profile.sample, saved.sample, options)
    return build_report(profile, saved.sample, comparison, about)


def _live_images(
    reference: str, data: Path | None, captures: Path | None, limit: int | None
) -> tuple[Images, str]:
    """The live side of a report: a folder of images, or the model's captured images."""
    from visionyard.data.captures import iter_captures
    from visionyard.monitor.store import Images

    if data is not None:
        return _images(data, None, limit), f"folder {data}"
    assert captures is not None
    name = reference.split("@", 1)[0].rsplit("/", 1)[0]
    paths = [c.image for c in iter_captures(captures, model=name)]
    if not paths:
        raise DatasetError(f"no captured images of model {name} in {captures}")
    return Images(paths[:limit] if limit else paths, captures), f"captures {captures}/{name}"


@contextmanager
def _lazy_bar(description: str) -> Iterator[Callable[[int, int], None]]:
    """A progress bar that appears with the first image, so that an error found before any
    image is read (no profile, unknown version) is the only line on stderr."""
    with ExitStack() as stack:
        bar: list[Callable[[int, int], None]] = []

        def update(done: int, total: int) -> None:
            if not bar:
                bar.append(stack.enter_context(progress_bar(description)))
            bar[0](done, total)

        yield update


def _images(data: Path, split: str | None, limit: int | None) -> Images:
    from visionyard.monitor import image_files
    from visionyard.monitor.store import Images

    if not data.is_dir():
        raise DatasetError(f"{data} is not a folder of images")
    paths = image_files(data, split)
    if not paths:
        raise DatasetError(f"no images (jpg, png, webp, ...) below {data}")
    base = data / split if split and (data / split).is_dir() else data
    return Images(paths[:limit] if limit else paths, base)


def _summary_table(stored: Profile, title: str) -> Table:
    meta = stored.meta
    table = Table(title=f"{title}: {stored.images} images, {meta.get('created', '-')}")
    for column in ("feature", "n", "mean", "std", "p5", "p50", "p95"):
        table.add_column(column, justify="left" if column == "feature" else "right")
    for name, row in stored.sample.summary().items():
        cells = [_number(row.get(k)) for k in ("n", "mean", "std", "p5", "p50", "p95")]
        table.add_row(escape(name), *cells)
    for name, shares in stored.sample.shares().items():
        text = ", ".join(f"{k} {v:.0%}" for k, v in list(shares.items())[:8])
        table.add_row(
            escape(name), str(sum(stored.sample.categorical[name].values())), escape(text)
        )
    embeddings = stored.sample.embeddings
    rows = (
        "none (no embedding output)"
        if embeddings is None
        else f"{embeddings.shape[0]} x {embeddings.shape[1]}"
    )
    table.caption = f"data {meta.get('data_digest', '-')}; embeddings {rows}"
    return table


def _comparison_table(result: Comparison, title: str) -> Table:
    table = Table(title=title)
    for column in (
        "feature",
        "test",
        "statistic",
        "p-value",
        "adjusted",
        "PSI",
        "n ref",
        "n new",
        "verdict",
    ):
        table.add_column(column)
    for r in result.results:
        style = _VERDICT_STYLE[r.verdict]
        table.add_row(
            escape(r.feature), r.test, _number(r.statistic), _p(r.p_value), _p(r.p_adjusted),
            _number(r.psi), str(r.reference_n), str(r.window_n),
            f"[{style}]{r.verdict}[/]" + _note(r.note if not r.tested else ""),
        )  # fmt: skip
    return table


def _note(text: str) -> str:
    return f" ({escape(text)})" if text else ""


def _number(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}"


def _p(value: float | None) -> str:
    return "-" if value is None else f"{value:.2e}" if value < 1e-3 else f"{value:.3f}"
