"""The study's plots, each saved as PNG and PDF; a plot without data is skipped, not drawn empty.

- sizes: each metric vs sink / history / tail size, one line per group of runs that differ only there;
- dynamic_vs_attended: dynamic degree vs attended latent frames per chunk;
- attention_vs_attended: attention time vs attended frames (per-chunk profile of the runs and the
  `bench.perf.attention` microbenchmark when the study holds an attention.json);
- clip_drift: each dimension per 2 s clip over the length of the video (drift), mean over videos.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .load import format_value, varied_settings
from .names import DIMENSIONS, METHODS, SIZES, TITLES, backbone_labels


def save(fig: Figure, out_dir: Path, name: str) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    for suffix in ("png", "pdf"):
        fig.savefig(out_dir / f"{name}.{suffix}", dpi=120)
    return out_dir / f"{name}.png"


def metric_title(runs: pd.DataFrame, metric: str) -> str:
    """The metric's name with what produced it, e.g. "Dynamic Degree [opencv-dis (not VBench)]"."""
    return f"{TITLES.get(metric, metric)} [{'; '.join(backbone_labels(runs, metric))}]"


def plotted_metrics(runs: pd.DataFrame) -> list[str]:
    """The measured dimensions, then generation speed (present even when a study skips evaluation)."""
    return [d for d in DIMENSIONS if d in runs and runs[d].notna().any()] + ["latent_frames_per_s"]


def size_curves(runs: pd.DataFrame, size: str) -> list[tuple[str, pd.DataFrame]]:
    """(name, runs sorted by size): per method, one curve per combination of its other varied settings."""
    column = f"policy.{size}"
    if column not in runs:
        return []
    curves = []
    for policy, rows in runs[runs[column].notna()].groupby("policy"):
        others = [c for c in varied_settings(rows) if c != column]
        for key, group in rows.groupby(others) if others else [((), rows)]:
            if group[column].nunique() < 2:
                continue
            fixed = ", ".join(f"{c.removeprefix('policy.')}={format_value(v)}" for c, v in zip(others, key))
            curves.append((METHODS.get(policy, policy) + (f" ({fixed})" if fixed else ""), group.sort_values(column)))
    return curves


def plot_sizes(runs: pd.DataFrame, out_dir: Path) -> Path | None:
    curves = {size: found for size in SIZES if (found := size_curves(runs, size))}
    if not curves:
        return None
    metrics = plotted_metrics(runs)
    fig = Figure(figsize=(4.2 * len(curves), 2.8 * len(metrics)))
    axes = fig.subplots(len(metrics), len(curves), squeeze=False)
    for col, size in enumerate(curves):
        for name, curve in curves[size]:
            for row, metric in enumerate(metrics):
                scale = 100 if metric in DIMENSIONS else 1
                axes[row, col].plot(curve[f"policy.{size}"], curve[metric] * scale, marker="o", label=name)
        for row, metric in enumerate(metrics):
            axes[row, col].set_xlabel(f"{size} (latent frames)")
            axes[row, col].xaxis.set_major_locator(MaxNLocator(integer=True))
            axes[row, col].set_ylabel(TITLES.get(metric, metric))
            if metric in DIMENSIONS:
                axes[row, col].set_title(metric_title(runs, metric), fontsize=8)
        axes[0, col].legend(fontsize=7)
    return save(fig, out_dir, "sizes")


def plot_dynamic_vs_attended(runs: pd.DataFrame, out_dir: Path) -> Path | None:
    if "dynamic_degree" not in runs or runs["dynamic_degree"].isna().all():
        return None
    done = runs[runs["dynamic_degree"].notna()]
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    for policy, rows in done.groupby("policy"):
        ax.scatter(rows["attended_frames"], rows["dynamic_degree"] * 100, label=METHODS.get(policy, policy))
        for row in rows.itertuples():
            ax.annotate(row.label, (row.attended_frames, row.dynamic_degree * 100), fontsize=6, alpha=0.7)
    ax.set_xlabel("attended latent frames per chunk (memory, current chunk excluded)")
    ax.set_ylabel("Dynamic Degree")
    ax.set_title(metric_title(runs, "dynamic_degree"), fontsize=8)
    ax.legend(fontsize=7)
    return save(fig, out_dir, "dynamic_vs_attended")


def plot_attention(chunks: pd.DataFrame, bench: pd.DataFrame, out_dir: Path, device: str) -> Path | None:
    panels = []
    if "attention" in chunks and chunks["attention"].notna().any():
        panels.append("runs")
    if not bench.empty:
        panels.append("bench")
    if not panels:
        return None
    fig = Figure(figsize=(5.5 * len(panels), 4))
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, panel in zip(axes, panels):
        if panel == "runs":
            per = chunks.groupby(["policy", "attended"])["attention"].median().mul(1000).reset_index()
            for policy, rows in per.groupby("policy"):
                ax.plot(rows["attended"], rows["attention"], marker="o", label=METHODS.get(policy, policy))
            ax.set_title(f"runs of the study: attention per chunk (median), {device}", fontsize=8)
            ax.set_ylabel("ms per chunk (all layers, all steps)")
        else:
            for source, rows in bench.groupby("source"):
                for column in ("kernel_ms", "self_attn_ms"):
                    if column in rows:
                        ax.plot(rows["frames"], rows[column], marker="o", label=f"{column} ({source or 'study'})")
            ax.set_title(f"attention microbenchmark, {', '.join(bench['device'].unique())}", fontsize=8)
            ax.set_ylabel("ms per call")
        ax.set_xlabel("attended latent frames")
        ax.legend(fontsize=7)
    return save(fig, out_dir, "attention_vs_attended")


def plot_clip_drift(clips: pd.DataFrame, runs: pd.DataFrame, out_dir: Path) -> Path | None:
    if clips.empty:
        return None
    dimensions = list(clips["dimension"].unique())
    fig = Figure(figsize=(5, 2.8 * len(dimensions)))
    axes = fig.subplots(len(dimensions), 1, squeeze=False)[:, 0]
    for ax, dimension in zip(axes, dimensions):
        mean = clips[clips["dimension"] == dimension].groupby(["label", "clip"])["score"].mean().mul(100)
        for label, curve in mean.groupby(level="label"):
            ax.plot(curve.index.get_level_values("clip"), curve.values, marker=".", label=label)
        ax.set_xlabel("clip (2 s each) over the video")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(TITLES.get(dimension, dimension))
        ax.set_title(metric_title(runs, dimension) if dimension in runs else dimension, fontsize=8)
        ax.legend(fontsize=6)
    return save(fig, out_dir, "clip_drift")


def all_plots(
    runs: pd.DataFrame, chunks: pd.DataFrame, clips: pd.DataFrame, bench: pd.DataFrame, out_dir: Path
) -> dict[str, Path]:
    """Every plot that has data, by name."""
    done = runs[runs["status"] == "complete"]
    device = ", ".join(done["device"].dropna().unique())
    plots = {
        "sizes": plot_sizes(done, out_dir),
        "dynamic_vs_attended": plot_dynamic_vs_attended(done, out_dir),
        "attention_vs_attended": plot_attention(chunks, bench, out_dir, device),
        "clip_drift": plot_clip_drift(clips, done, out_dir),
    }
    return {name: path for name, path in plots.items() if path is not None}
