"""The study's plots, each saved as PNG and PDF; a plot without data is skipped, not drawn empty.

Every plotted score is a point's mean over its videos (prompts x seeds) with error bars or a band for
the 95 % Student-t interval of that mean (analysis.spread); costs are medians over the chunks the
profiler timed, with the interquartile range. One panel per metric, one colour per run group (never
reused within a figure), legends outside the data, no per-point text.

- sizes: each metric and the attention cost vs each size a method's runs vary (any policy field);
- dynamic_vs_attended: dynamic degree and motion magnitude vs attended latent frames per chunk;
- attention_vs_attended: per-chunk attention and DiT time vs attended frames (the profiler's
  per-chunk rows), and the `bench.perf.attention` microbenchmark when the study holds an attention.json;
- clip_drift: each per-clip dimension and relaxbench's similarity to the first clip over the seconds
  of the video (drift, freeze, collapse).
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .load import SETTINGS_PREFIX, format_value, varied_settings
from .names import (
    DIMENSIONS,
    MOTION,
    OWN_METRICS,
    SIMILARITY,
    SIMILARITY_BACKBONE,
    TITLES,
    UNITS,
    backbone_labels,
    colours,
    scale,
)
from .spread import INTERVAL, point_scores, summarise

Plot = tuple[Figure, pd.DataFrame]  # the figure and the values it draws, one row per drawn point
PANEL = (4.0, 2.9)  # inches per panel
LEGEND_HEAD, LEGEND_LINE = 1.2, 0.17  # inches: a legend's title and margins, one 7-point entry
COST = "attention_ms"
COST_NOTE = "median over chunks, bars: interquartile range"
SCORE_NOTE = f"bars: {INTERVAL}"


def save(fig: Figure, out_dir: Path, name: str) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    for suffix in ("png", "pdf"):
        fig.savefig(out_dir / f"{name}.{suffix}", dpi=120)
    return out_dir / f"{name}.png"


def panels(rows: int, cols: int, entries: int) -> tuple[Figure, np.ndarray]:
    """A grid of panels with room on the right for a legend of `entries` lines (it sets the height
    when it is the taller)."""
    height = max(PANEL[1] * rows, LEGEND_HEAD + LEGEND_LINE * entries)
    fig = Figure(figsize=(PANEL[0] * cols + 2.8, height), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.flat:
        ax.tick_params(labelsize=7)
    return fig, axes


def metric_title(runs: pd.DataFrame, metric: str, width: int = 48) -> str:
    """The metric's name over what produced it, wrapped to fit a panel."""
    title = TITLES.get(metric, metric)
    if metric in runs:
        title += f" [{'; '.join(backbone_labels(runs, metric))}]"
    return "\n".join(textwrap.wrap(title, width))


def y_label(metric: str) -> str:
    if metric == COST:
        return "attention ms / chunk"
    return f"{TITLES.get(metric, metric).removesuffix(' (relaxbench)')} ({UNITS.get(metric, 'x100')})"


def legend(fig: Figure, axes: np.ndarray, title: str, note: str) -> None:
    """One legend for the figure, right of every panel; its title says what the bars or bands are."""
    handles: dict[str, object] = {}
    for ax in axes.flat:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    if handles:
        title = "\n".join([title, *textwrap.wrap(f"({note})", 34)])
        fig.legend(list(handles.values()), list(handles), loc="outside right upper", fontsize=7, title=title,
                   title_fontsize=7, alignment="left")


def draw(ax: Axes, curve: pd.DataFrame, colour: tuple, label: str) -> None:
    """Means (or medians) with bars from `low` to `high`; joined by a line when the x values are distinct."""
    curve = curve.sort_values("x")
    line = "-" if curve["x"].is_unique and len(curve) > 1 else "none"
    bars = [(curve["mean"] - curve["low"]).fillna(0), (curve["high"] - curve["mean"]).fillna(0)]
    ax.errorbar(curve["x"], curve["mean"], yerr=bars, color=colour, label=label, marker="o",
                markersize=4, linestyle=line, capsize=3, linewidth=1.2)


def plotted_metrics(runs: pd.DataFrame) -> list[str]:
    """The measured Table-1 dimensions and relaxbench's own metrics."""
    return [d for d in (*DIMENSIONS, *OWN_METRICS) if d in runs and runs[d].notna().any()]


def points(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per point: its settings (from its first run), group, and x = attended frames per chunk."""
    first = runs.groupby("point", sort=False).first()
    attended = pd.to_numeric(runs["attended_per_chunk"], errors="coerce") if "attended_per_chunk" in runs else np.nan
    first["x"] = runs.assign(x=attended).groupby("point", sort=False)["x"].mean()
    return first.reset_index()


def scores(runs: pd.DataFrame, videos: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """Per point and metric: mean, half, n in the plotted unit, with the point's group and x."""
    stats = point_scores(runs, videos, metrics).rename(columns={"dimension": "metric"})
    for column in ("mean", "half", "low", "high"):
        stats[column] = stats[column] * stats["metric"].map(scale)
    return stats.merge(points(runs)[["point", "group", "x"]], on="point")


def chunk_costs(chunks: pd.DataFrame, by: list[str], section: str) -> pd.DataFrame:
    """Median (`mean` column, for drawing) and interquartile range `low`..`high` (ms) of a per-chunk
    section over the chunks of each group of `by`."""
    timed = chunks[chunks[section].notna()] if section in chunks else chunks.iloc[0:0]
    grouped = timed.groupby(by, sort=False)[section]
    table = pd.DataFrame({"mean": grouped.median(), "low": grouped.quantile(0.25), "high": grouped.quantile(0.75)})
    return table.mul(1000).reset_index()


def size_curves(done: pd.DataFrame) -> dict[str, list[tuple[str, pd.DataFrame]]]:
    """Per varied policy field: (curve name, the points along it). A curve is a group's points that differ
    only in that field, or in fields that move with it (infinity_rope's tail and reservoir)."""
    pts = points(done)
    curves: dict[str, list[tuple[str, pd.DataFrame]]] = {}
    for group, rows in pts.groupby("group", sort=False):
        varied = [c for c in varied_settings(rows) if c.startswith(SETTINGS_PREFIX)]
        covered: set[str] = set()  # fields that moved with an earlier axis: no axis of their own
        for column in varied:
            if column in covered or not pd.api.types.is_numeric_dtype(rows[column]):
                continue
            moving = [c for c in varied if c != column and rows.groupby(column)[c].nunique(dropna=False).max() == 1]
            covered.update(moving)
            others = [c for c in varied if c not in (column, *moving)]
            for key, curve in rows.groupby(others, dropna=False) if others else [((), rows)]:
                if curve[column].nunique() < 2:
                    continue
                key = key if isinstance(key, tuple) else (key,)
                fixed = ", ".join(f"{c.removeprefix(SETTINGS_PREFIX)}={format_value(v)}" for c, v in zip(others, key))
                name = group + (f" ({fixed})" if fixed else "")
                curves.setdefault(column.removeprefix(SETTINGS_PREFIX), []).append((name, curve))
    return curves


def plot_sizes(done: pd.DataFrame, videos: pd.DataFrame, chunks: pd.DataFrame) -> Plot | None:
    curves = size_curves(done)
    if not curves:
        return None
    metrics = plotted_metrics(done)
    stats = scores(done, videos, metrics)
    costs = chunk_costs(chunks, ["point"], "attention").assign(metric=COST) if "point" in chunks else pd.DataFrame()
    stats = pd.concat([stats, costs], ignore_index=True)
    metrics += [COST] if not costs.empty else []
    names = list(dict.fromkeys(name for found in curves.values() for name, _ in found))
    palette = colours(names)
    fig, axes = panels(len(metrics), len(curves), len(names))
    drawn = []
    for col, (size, found) in enumerate(curves.items()):
        for name, curve in found:
            for row, metric in enumerate(metrics):
                values = stats[(stats["metric"] == metric) & stats["point"].isin(curve["point"])]
                values = values.drop(columns="x", errors="ignore").merge(
                    curve[["point", f"policy.{size}"]].rename(columns={f"policy.{size}": "x"}), on="point"
                )
                if values.empty:
                    continue
                draw(axes[row, col], values, palette[name], name)
                drawn.append(values.assign(size=size, curve=name))
        for row, metric in enumerate(metrics):
            ax = axes[row, col]
            ax.set_xlabel(f"{size}")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_ylabel(y_label(metric), fontsize=8)
            ax.set_title(metric_title(done, metric) if metric != COST else "Attention per chunk", fontsize=8)
    legend(fig, axes, "run group", f"{SCORE_NOTE}; attention: {COST_NOTE}")
    return fig, pd.concat(drawn, ignore_index=True)


def plot_dynamic_vs_attended(done: pd.DataFrame, videos: pd.DataFrame) -> Plot | None:
    metrics = [m for m in MOTION if m in done and done[m].notna().any()]
    if not metrics:
        return None
    stats = scores(done, videos, metrics)
    groups = list(dict.fromkeys(stats["group"]))
    palette = colours(groups)
    fig, axes = panels(1, len(metrics), len(groups))
    for ax, metric in zip(axes[0], metrics):
        for group in groups:
            curve = stats[(stats["metric"] == metric) & (stats["group"] == group)]
            if not curve.empty:
                draw(ax, curve, palette[group], group)
        ax.set_xlabel("attended latent frames per chunk\n(memory besides the chunk; median over chunks)", fontsize=8)
        ax.set_ylabel(y_label(metric), fontsize=8)
        ax.set_title(metric_title(done, metric), fontsize=8)
    legend(fig, axes, "run group", SCORE_NOTE)
    return fig, stats


def plot_attention(chunks: pd.DataFrame, bench: pd.DataFrame, device: str) -> Plot | None:
    sections = [s for s in ("attention", "dit") if s in chunks and chunks[s].notna().any()]
    if not sections and bench.empty:
        return None
    names = {"attention": "self-attention", "dit": "DiT forward (all steps)"}
    count = len(sections) + (not bench.empty)
    groups = list(dict.fromkeys(chunks["group"])) if sections else []
    fig, axes = panels(1, count, len(groups) + 2 * bench["source"].nunique() if not bench.empty else len(groups))
    drawn = []
    palette = colours(groups)
    for ax, section in zip(axes[0], sections):
        costs = chunk_costs(chunks, ["group", "attended"], section).rename(columns={"attended": "x"})
        for group in groups:
            draw(ax, costs[costs["group"] == group], palette[group], group)
        drawn.append(costs.assign(section=section))
        ax.set_title("\n".join(textwrap.wrap(f"{names[section]} per chunk, the study's runs on {device}", 48)), fontsize=8)
        ax.set_ylabel("ms per chunk (all layers, all steps)", fontsize=8)
        ax.set_xlabel("attended latent frames (this chunk)", fontsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if not bench.empty:
        ax = axes[0, -1]
        series = [(source, column) for source, _ in bench.groupby("source") for column in ("kernel_ms", "self_attn_ms")
                  if column in bench]
        palette = colours([f"{column} ({source or 'study'})" for source, column in series])
        for (source, column), (name, colour) in zip(series, palette.items()):
            rows = bench[bench["source"] == source].sort_values("frames")
            ax.plot(rows["frames"], rows[column], marker="o", color=colour, label=name)
        ax.set_title("\n".join(textwrap.wrap(f"attention microbenchmark, {', '.join(bench['device'].unique())}", 48)),
                     fontsize=8)
        ax.set_ylabel("ms per call", fontsize=8)
        ax.set_xlabel("attended latent frames", fontsize=8)
    legend(fig, axes, "run group / series", COST_NOTE)
    return fig, pd.concat(drawn, ignore_index=True) if drawn else bench


def series_title(runs: pd.DataFrame, dimension: str) -> str:
    """A per-clip panel's title: the dimension and its backbone, or the similarity and what computed it."""
    if dimension != SIMILARITY:
        return metric_title(runs, dimension)
    names = runs[SIMILARITY_BACKBONE].dropna().unique() if SIMILARITY_BACKBONE in runs else []
    return "\n".join(textwrap.wrap(f"{TITLES[SIMILARITY]} [{'; '.join(sorted(names)) or 'backbone not recorded'}]", 48))


def plot_clip_drift(clips: pd.DataFrame, done: pd.DataFrame) -> Plot | None:
    """Each per-clip dimension and the similarity to the first clip against the clip's time in the
    video (its centre, s): one panel each, points overlaid, bands over videos."""
    if clips.empty:
        return None
    order = (*DIMENSIONS, *OWN_METRICS, "temporal_flickering", SIMILARITY)
    dimensions = [d for d in order if d in set(clips["dimension"])]
    dimensions += [d for d in clips["dimension"].unique() if d not in dimensions]
    stats = summarise(clips, ["point", "dimension", "clip"])
    for column in ("mean", "half", "low", "high"):
        stats[column] = stats[column] * stats["dimension"].map(scale)
    times = clips.groupby(["point", "dimension", "clip"], sort=False)["seconds"].mean().rename("seconds")
    stats = stats.merge(times.reset_index(), on=["point", "dimension", "clip"])
    palette = colours(list(dict.fromkeys(stats["point"])))
    fig, axes = panels(len(dimensions), 1, len(palette))
    for ax, dimension in zip(axes[:, 0], dimensions):
        for point, curve in stats[stats["dimension"] == dimension].groupby("point", sort=False):
            curve = curve.sort_values("seconds")
            ax.plot(curve["seconds"], curve["mean"], marker=".", color=palette[point], label=point)
            ax.fill_between(curve["seconds"], curve["low"], curve["high"], color=palette[point], alpha=0.15, linewidth=0)
        ax.set_xlabel("seconds of video (centre of each 2 s clip)", fontsize=8)
        ax.set_ylabel(y_label(dimension), fontsize=8)
        ax.set_title(series_title(done, dimension), fontsize=8)
    legend(fig, axes, "point", f"mean over videos per clip; bands: {INTERVAL}")
    return fig, stats


def figures(
    runs: pd.DataFrame, chunks: pd.DataFrame, clips: pd.DataFrame, videos: pd.DataFrame, bench: pd.DataFrame
) -> dict[str, Plot]:
    """Every plot that has data, by name, with the values it draws."""
    done = runs[runs["status"] == "complete"]
    device = ", ".join(done["device"].dropna().unique())
    plots = {
        "sizes": plot_sizes(done, videos, chunks),
        "dynamic_vs_attended": plot_dynamic_vs_attended(done, videos),
        "attention_vs_attended": plot_attention(chunks, bench, device),
        "clip_drift": plot_clip_drift(clips, done),
    }
    return {name: plot for name, plot in plots.items() if plot is not None}


def all_plots(
    runs: pd.DataFrame, chunks: pd.DataFrame, clips: pd.DataFrame, videos: pd.DataFrame, bench: pd.DataFrame,
    out_dir: Path,
) -> dict[str, Path]:
    """Every plot that has data, saved, by name."""
    return {name: save(fig, out_dir, name) for name, (fig, _) in figures(runs, chunks, clips, videos, bench).items()}
