"""VBench-Long's clip rule: fixed clips of int(fps) * 2 s frames, the remainder as one more full clip
that ends on the last frame, and a video shorter than one clip kept whole."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bench.runs.videos import VideoError, read_video
from memory_policies import ConfigError

CLIP_SECONDS = 2
MIN_SIDE = 16  # OpenCV's DIS flow needs 12 px, the top-5 % motion 20 pixels; below this no kernel is defined


def clip_length(fps: float) -> int:
    """Frames per clip. Upstream reads fps as an integer (decord's average rate, truncated)."""
    frames = int(fps) * CLIP_SECONDS
    if frames < 1:
        raise ConfigError(f"video fps must be at least 1 to cut {CLIP_SECONDS} s clips, got {fps}")
    return frames


def clip_bounds(num_frames: int, fps: float) -> list[tuple[int, int]]:
    """[start, stop) frame ranges of the clips of a video with `num_frames` frames."""
    if num_frames < 1:
        raise ConfigError(f"a video needs at least one frame, got {num_frames}")
    length = clip_length(fps)
    if num_frames < length:
        return [(0, num_frames)]
    full = num_frames // length
    bounds = [(i * length, (i + 1) * length) for i in range(full)]
    if num_frames % length:
        bounds.append((num_frames - length, num_frames))
    return bounds


def read_clipped(path: Path, settings: dict) -> tuple[np.ndarray, float, list[tuple[int, int]]]:
    """Frames, fps and VBench-Long clip bounds of a video; records them in `settings["videos"]`."""
    frames, info = read_video(path)
    height, width = frames.shape[1:3]
    if min(height, width) < MIN_SIDE:
        raise VideoError(
            f"video {path} is {width}x{height} pixels; the evaluation needs frames of at least {MIN_SIDE}x{MIN_SIDE}"
        )
    try:
        bounds = clip_bounds(len(frames), info.fps)
    except ConfigError as err:
        raise VideoError(f"video {path}: {err}") from None
    settings["videos"][path.name] = {
        "frames": len(frames),
        "fps": info.fps,
        "clip_frames": clip_length(info.fps),
        "clips": [list(b) for b in bounds],
    }
    return frames, info.fps, bounds
