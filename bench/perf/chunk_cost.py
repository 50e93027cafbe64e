"""Is a run's cost per chunk constant over the video? `python -m bench.perf.chunk_cost <run dir> [...]`

Reads each run's `per_chunk.jsonl` (one row per chunk, written as the run went) and prints, per run,
the median seconds per chunk in equal stretches of the video and the least-squares slope of the
per-chunk time against the video's own clock (milliseconds per chunk, per minute of video), with its
95 % confidence interval: "flat" when the interval holds zero. A chunk's time is the sum of the
sampler's top-level sections (selection, denoising, clean pass, and the run's decoding and writing of
that chunk); the first `warmup` chunks (the memory filling up) are left out.

The slope is fitted to the medians of consecutive blocks of chunks (one minute of video each by
default), not to the chunks themselves: a machine's speed wanders over minutes (two runs on the two
cores of this project's VM slow down and speed up together), so neighbouring chunks are not
independent and a fit to thousands of them would report a confidence interval far too narrow.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from bench.generation.sampler import SECONDS_PER_LATENT_FRAME
from bench.runs.outputs import PER_CHUNK_FILE, read_per_chunk

TOP_LEVEL = ("selection", "denoise", "clean_pass", "decode", "write")


@dataclass(frozen=True)
class ChunkCost:
    chunks: int
    median_s: float
    slope_ms_per_min: float  # per chunk, per minute of video
    ci95_ms_per_min: tuple[float, float]
    minutes: float  # of video covered by the fit

    @property
    def flat(self) -> bool:
        low, high = self.ci95_ms_per_min
        return low <= 0 <= high

    def change(self, slope_ms_per_min: float) -> float:
        """What a slope adds to a chunk over the whole video, as a fraction of the median chunk."""
        return slope_ms_per_min * self.minutes / 1000 / self.median_s


def chunk_seconds(rows: pd.DataFrame) -> pd.Series:
    """Seconds per chunk: the sum of the top-level sections present."""
    return rows[[c for c in TOP_LEVEL if c in rows]].sum(axis=1)


def chunk_cost(rows: pd.DataFrame, warmup: int, block_minutes: float = 1.0) -> ChunkCost:
    rows = rows.iloc[warmup:]
    minutes = rows["t"].to_numpy() * SECONDS_PER_LATENT_FRAME / 60
    blocks = pd.DataFrame({"block": ((minutes - minutes[0]) // block_minutes) if len(rows) else [],
                           "minute": minutes, "seconds": chunk_seconds(rows).to_numpy()})
    medians = blocks.groupby("block").median()
    if len(medians) < 3:
        raise ValueError(f"{len(medians)} blocks of {block_minutes} min after the warm-up; a slope needs at least 3")
    fit = stats.linregress(medians["minute"], medians["seconds"])
    half = stats.t.ppf(0.975, len(medians) - 2) * fit.stderr
    return ChunkCost(
        chunks=len(rows),
        median_s=float(blocks["seconds"].median()),
        slope_ms_per_min=1000 * fit.slope,
        ci95_ms_per_min=(1000 * (fit.slope - half), 1000 * (fit.slope + half)),
        minutes=float(minutes[-1] - minutes[0]),
    )


def stretches(rows: pd.DataFrame, parts: int) -> list[tuple[float, float, float]]:
    """(from, to) minutes of video and the median seconds per chunk, for `parts` equal stretches."""
    out = []
    for index in np.array_split(np.arange(len(rows)), parts):
        if len(index):
            part = rows.iloc[index]
            start, stop = (part["t"].iloc[[0, -1]] * SECONDS_PER_LATENT_FRAME / 60).tolist()
            out.append((start, stop, float(chunk_seconds(part).median())))
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run directories (each with per_chunk.jsonl)")
    parser.add_argument("--warmup", type=int, default=40, help="first chunks left out (default 40 = 30 s)")
    parser.add_argument("--parts", type=int, default=6, help="stretches of the video to show (default 6)")
    parser.add_argument("--block", type=float, default=1.0, help="minutes of video per fitted median (default 1)")
    args = parser.parse_args(argv)
    for run in args.runs:
        rows = read_per_chunk(run)
        if rows.empty:
            parser.error(f"{run / PER_CHUNK_FILE}: no per-chunk rows (not a run directory, or a run before any chunk)")
        try:
            cost = chunk_cost(rows, args.warmup, args.block)
        except ValueError as err:
            parser.error(f"{run}: {err}")
        low, high = cost.ci95_ms_per_min
        print(f"{run}: {cost.chunks} chunks after {args.warmup}, median {1000 * cost.median_s:.1f} ms per chunk")
        for start, stop, median in stretches(rows.iloc[args.warmup :], args.parts):
            print(f"  video {start:7.1f}-{stop:7.1f} min  median {1000 * median:8.1f} ms per chunk")
        print(f"  slope {cost.slope_ms_per_min:+.4f} ms per chunk per minute of video (95 % CI {low:+.4f} .. "
              f"{high:+.4f}; fitted to {args.block:g}-min medians) over {cost.minutes:.1f} min: "
              f"{'flat' if cost.flat else 'NOT flat'}; the chunk changes by {100 * cost.change(cost.slope_ms_per_min):+.2f} % "
              f"over the video (CI {100 * cost.change(low):+.2f} .. {100 * cost.change(high):+.2f} %)")


if __name__ == "__main__":
    main()
