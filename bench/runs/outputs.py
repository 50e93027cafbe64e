"""A run's files: writing them (atomic JSON, mp4 videos, the provenance every result carries) and
finding and reading them back (runs under a study folder, per-clip scores)."""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import imageio.v2 as imageio
import numpy as np
import pandas as pd
import torch

REPO = Path(__file__).resolve().parents[2]


def atomic_write_json(path: Path, obj: Any) -> None:
    """Write JSON through a temporary file and a rename, so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(obj, f, indent=2, default=str)
        f.write("\n")
    os.replace(tmp, path)


def write_video(path: Path, frames: np.ndarray, fps: float) -> None:
    """uint8 frames (T, H, W, 3) to an H.264 mp4 (near-lossless, yuv444 keeps small sprites' colours)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.mp4")
    writer = imageio.get_writer(
        tmp, fps=fps, codec="libx264", macro_block_size=1, ffmpeg_log_level="error",
        output_params=["-crf", "10", "-pix_fmt", "yuv444p", "-preset", "medium"],
    )
    try:
        for frame in frames:
            writer.append_data(frame)
    finally:
        writer.close()
    os.replace(tmp, path)


def video_name(index: int, prompt: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "_", prompt.lower()).strip("_")[:60]
    return f"{index:03d}_{slug}.mp4"


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=5,
        ).stdout.strip()
        return out + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def provenance(device: torch.device) -> dict:
    return {
        "commit": git_commit(),
        "device": device_name(device),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "host": platform.node(),
    }


def find_runs(study: Path) -> list[Path]:
    return sorted({p.parent for name in ("summary.json", "error.json") for p in study.rglob(name)})


def clip_scores(metrics: dict) -> pd.DataFrame:
    """metrics.json's per-clip scores (`dimensions.<name>.per_clip`: video -> clip index -> score)
    as rows (dimension, video, clip, score); clips that could not be scored are left out."""
    rows = [
        {"dimension": dimension, "video": video, "clip": int(clip), "score": float(score)}
        for dimension, entry in metrics.get("dimensions", {}).items()
        for video, clips in (entry.get("per_clip") or {}).items()
        for clip, score in clips.items()
        if score is not None
    ]
    return pd.DataFrame(rows, columns=["dimension", "video", "clip", "score"])
