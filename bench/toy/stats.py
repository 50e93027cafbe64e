"""Pixel statistics of toy-model videos: where the sprite is, how fast it moves, whether it lasts.

Used by the tests on the shipped weights and by `python -m bench.toy.stats <run dir>...`, which
prints, per run and per 30 s window, the mean frame change and the fraction of frames in which an
object is visible — the toy's view of the long-video "temporal wall".
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np

from bench.runs.videos import read_video


def object_mask(frames: np.ndarray, threshold: float = 60.0) -> np.ndarray:
    """Pixels far (L2 over RGB, uint8 scale) from the per-frame median colour: (T, H, W) bool.

    Sprites cover a small part of a plain background, so the median is the background colour.
    (Striped backgrounds are not plain: use prompts without a background for these statistics.)
    """
    x = frames.astype(np.float32)
    background = np.median(x.reshape(len(x), -1, 3), axis=1)[:, None, None, :]
    return np.linalg.norm(x - background, axis=-1) > threshold


def largest_blob_fraction(mask: np.ndarray) -> float:
    """Share of the mask's pixels in its largest 8-connected component (1.0 for one solid sprite)."""
    count, _, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if count <= 1:
        return 0.0
    sizes = stats[1:, cv2.CC_STAT_AREA]  # label 0 is the background
    return float(sizes.max() / sizes.sum())


def centroids(mask: np.ndarray) -> np.ndarray:
    """(T, 2) centroid (x, y) of each frame's mask in pixels; NaN where the mask is empty."""
    out = np.full((len(mask), 2), np.nan)
    for i, m in enumerate(mask):
        ys, xs = np.nonzero(m)
        if len(xs):
            out[i] = xs.mean(), ys.mean()
    return out


def mean_speed(mask: np.ndarray) -> float:
    """Mean centroid displacement per frame over frames where the object is visible in both."""
    steps = np.linalg.norm(np.diff(centroids(mask), axis=0), axis=1)
    return float(np.nanmean(steps)) if np.isfinite(steps).any() else float("nan")


def video_stats(frames: np.ndarray, scale: int = 1, min_area: int = 8) -> dict:
    """Frame change, visibility and speed of one video (frames uint8 (T, H, W, 3))."""
    small = frames[:, ::scale, ::scale]
    mask = object_mask(small)
    area = mask.reshape(len(mask), -1).sum(1)
    change = np.abs(np.diff(small.astype(np.float32), axis=0)).mean(axis=(1, 2, 3))
    return {
        "frames": len(small),
        "mean_frame_change": float(change.mean()) if len(change) else 0.0,
        "visible_fraction": float((area >= min_area).mean()),
        "mean_area": float(area.mean()),
        "speed_px_per_frame": mean_speed(mask),
    }


def windows(frames: np.ndarray, size: int) -> list[np.ndarray]:
    return [frames[i : i + size] for i in range(0, len(frames), size)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="run directories (with videos/*.mp4)")
    parser.add_argument("--scale", type=int, default=4, help="video pixels per model pixel (toy: 4)")
    parser.add_argument("--window", type=int, default=120, help="frames per reported window (120 = 30 s)")
    args = parser.parse_args(argv)
    for run in args.runs:
        videos = sorted((run / "videos").glob("*.mp4"))
        if not videos:
            raise SystemExit(f"error: {run / 'videos'} holds no mp4 files")
        rows = [[video_stats(w, args.scale) for w in windows(read_video(v)[0], args.window)] for v in videos]
        summary = {
            f"window_{i}": {k: float(np.nanmean([r[i][k] for r in rows])) for k in rows[0][i]}
            for i in range(min(len(r) for r in rows))
        }
        print(json.dumps({"run": str(run), "videos": len(videos), **summary}, indent=1))


if __name__ == "__main__":
    main()
