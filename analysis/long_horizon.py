"""The long-horizon table: per point (a configuration, its seeds pooled), relaxbench's own metrics over
the length of its videos (docs/evaluation.md, "Long-horizon metrics"): Δ_drift and the slope per
minute of each per-clip dimension, time to freeze, frozen clips, collapse toward the first clip. Each
cell is the mean over the point's videos ± the half-width of its 95 % Student-t interval."""

from __future__ import annotations

import pandas as pd

from bench.evaluation.long_horizon import DRIFT

from .names import DIMENSIONS, OWN_METRICS, TITLES, scale
from .spread import INTERVAL, summarise
from .tables import MISSING, booktabs_table

FREEZE, FROZEN, COLLAPSE = "time_to_freeze_s", "frozen_fraction", "collapse_fraction"
DRIFT_TITLES = dict(zip(DRIFT, ("Δ_drift", "Slope/min")))
NOTE = (
    "relaxbench's own metrics (not VBench), mean over videos ± half-width of the "
    f"{INTERVAL}; Δ_drift = |mean of the first 5 s - mean of the last 5 s| and slope = least-squares slope "
    "per minute of video, both in the dimension's unit x100; time to freeze: mean over the videos that "
    "freeze; frozen clips and collapse in %"
)


def metric_order(metrics: set[str]) -> list[str]:
    """Δ_drift of each dimension, then slopes, then the freeze and collapse metrics, as present."""
    names = [*DIMENSIONS, *OWN_METRICS, "temporal_flickering"]
    names += sorted({m.split(".", 1)[1] for m in metrics if "." in m} - set(names))
    drift = [f"{key}.{name}" for key in DRIFT for name in names if f"{key}.{name}" in metrics]
    freeze = [FREEZE, FROZEN] if FREEZE in metrics or FROZEN in metrics else []  # "never" is a result too
    return drift + freeze + ([COLLAPSE] if COLLAPSE in metrics else [])


def unit_scale(metric: str) -> float:
    if "." in metric:
        return scale(metric.split(".", 1)[1])
    return 100.0 if metric in (FROZEN, COLLAPSE) else 1.0


def header(metric: str) -> str:
    key, _, name = metric.partition(".")
    if name:
        return f"{DRIFT_TITLES[key]} {TITLES.get(name, name)}"
    return {FREEZE: "Time to freeze (s)", FROZEN: "Frozen clips (%)", COLLAPSE: "Collapse (%)"}[metric]


def horizon_stats(runs: pd.DataFrame, horizon: pd.DataFrame) -> pd.DataFrame:
    """Per point and metric: mean, half, low, high, n over videos, in the table's units (results CSV)."""
    if horizon.empty:
        return pd.DataFrame(columns=["point", "metric", "mean", "half", "low", "high", "n"])
    stats = summarise(horizon, ["point", "metric"])
    for column in ("mean", "half", "low", "high"):
        stats[column] = stats[column] * stats["metric"].map(unit_scale)
    lengths = runs[runs["status"] == "complete"].groupby("point", sort=False)["seconds"].first()
    return stats.assign(length_s=stats["point"].map(lengths))


def cell(mean: float, half: float) -> str:
    if pd.isna(mean):
        return MISSING
    mean = round(mean, 2) + 0.0  # no "-0.00" for a slope of -1e-16
    return f"{mean:.2f}" if pd.isna(half) else f"{mean:.2f} ± {half:.2f}"


def count(videos: pd.DataFrame, metric: str) -> int:
    """How many videos (of every run of the point: seeds reuse names) have a value of `metric`."""
    return len(videos.loc[videos["metric"] == metric, ["run_dir", "video"]].drop_duplicates())


def horizon_table(stats: pd.DataFrame, horizon: pd.DataFrame) -> pd.DataFrame:
    """One row per point with text cells; "Frozen videos" counts the videos that freeze."""
    metrics = metric_order(set(stats["metric"]))
    rows = []
    for point, group in stats.groupby("point", sort=False):
        mine = group.set_index("metric")
        videos = horizon[horizon["point"] == point]
        row = {"Length": f"{group['length_s'].iloc[0]:g} s", "Method": point}
        for metric in metrics:
            found = metric in mine.index
            row[header(metric)] = cell(mine.at[metric, "mean"], mine.at[metric, "half"]) if found else MISSING
        if FROZEN in metrics:
            row["Frozen videos"] = f"{count(videos, FREEZE)} of {count(videos, FROZEN)}"
        row["Videos"] = str(len(videos[["run_dir", "video"]].drop_duplicates()))
        rows.append(row)
    return pd.DataFrame(rows)


def to_markdown(table: pd.DataFrame) -> str:
    parts = ["# Long-horizon metrics (relaxbench)", "", f"{NOTE}.", ""]
    if table.empty:
        return "\n".join([*parts, "No run of this study has long-horizon metrics (eval=offline computes them).", ""])
    for length, block in table.groupby("Length", sort=False):
        parts += [f"## {length}", "", block.drop(columns="Length").to_markdown(index=False, disable_numparse=True), ""]
    return "\n".join(parts)


def latex_symbols(text: str) -> str:
    """Δ_drift and ± as math (after escaping, the underscore is `\\_`), so pdflatex needs no Unicode font."""
    return text.replace("Δ\\_drift", "$\\Delta_\\mathrm{drift}$").replace("±", "$\\pm$")


def to_latex(table: pd.DataFrame) -> str:
    """The long-horizon table as one booktabs table (`tables.booktabs_table`)."""
    if table.empty:
        table = pd.DataFrame({"Length": [MISSING], "Method": ["no long-horizon metrics"]})
    caption = NOTE.replace("%", "\\%").replace("_", "\\_")
    return latex_symbols(booktabs_table(table, f"Long-horizon metrics ({caption}).", "tab:long_horizon"))
