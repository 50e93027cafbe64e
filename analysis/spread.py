"""How much a point's number would move with other videos: the mean over videos (prompts x seeds)
with a Student-t confidence interval, and per-point statistics for tables and curves."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

CONFIDENCE = 0.95
INTERVAL = "95 % Student-t interval of the mean over videos"


def t_interval(values) -> tuple[float, float, int]:
    """(mean, half-width, n) of the values that are not NaN; the half-width is NaN below 2 values
    (one video says nothing about the spread)."""
    data = np.asarray([v for v in values if v is not None and not pd.isna(v)], dtype=float)
    n = len(data)
    if n == 0:
        return math.nan, math.nan, 0
    if n == 1:
        return float(data[0]), math.nan, 1
    half = stats.t.ppf(0.5 + CONFIDENCE / 2, n - 1) * data.std(ddof=1) / math.sqrt(n)
    return float(data.mean()), float(half), n


def summarise(rows: pd.DataFrame, by: list[str], value: str = "score") -> pd.DataFrame:
    """One row per group of `by`: mean, half (the interval's half-width), low, high and n of `value`."""
    records = []
    for key, group in rows.groupby(by, sort=False, dropna=False):
        mean, half, n = t_interval(group[value])
        key = key if isinstance(key, tuple) else (key,)
        records.append(dict(zip(by, key)) | {"mean": mean, "half": half, "low": mean - half, "high": mean + half, "n": n})
    return pd.DataFrame(records, columns=[*by, "mean", "half", "low", "high", "n"])


def point_scores(runs: pd.DataFrame, videos: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """Per point and metric (`dimension`): mean, half, low, high and n over the point's videos. A run
    without per-video scores counts as one video with its run-level score (`average` is `average6`)."""
    done = runs[runs["status"] == "complete"].rename(columns={"average6": "average"})
    columns = ["run_dir", "point", "dimension", "video", "score"]
    have = set(videos["run_dir"]) if not videos.empty else set()
    fallback = [
        {"run_dir": run["run_dir"], "point": run["point"], "dimension": metric, "video": run["run_dir"], "score": run[metric]}
        for _, run in done[~done["run_dir"].isin(have)].iterrows()
        for metric in metrics
        if metric in run and pd.notna(run[metric])
    ]
    rows = pd.concat([videos[columns] if have else pd.DataFrame(columns=columns), pd.DataFrame(fallback, columns=columns)])
    rows = rows[rows["dimension"].isin(metrics)]
    return summarise(rows, ["point", "dimension"])
