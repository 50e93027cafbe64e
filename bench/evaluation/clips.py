"""VBench-Long's clip rule: fixed clips of int(fps) * 2 s frames, the remainder as one more full clip
that ends on the last frame, and a video shorter than one clip kept whole."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from bench.runs.videos import VideoError, probe, stream_video
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


def stream_clips(path: Path, settings: dict) -> tuple[float, list[tuple[int, int]], Iterator[np.ndarray]]:
    """Frame rate, VBench-Long clip bounds (from the header's frame count) and the clips of a video in
    order, decoded as they are asked for: only the frames of the current clip are held, so memory does
    not grow with the video's length. Records the video in `settings["videos"]`."""
    info = probe(path)
    if min(info.height, info.width) < MIN_SIDE:
        raise VideoError(
            f"video {path} is {info.width}x{info.height} pixels; "
            f"the evaluation needs frames of at least {MIN_SIDE}x{MIN_SIDE}"
        )
    if info.frame_count < 1:
        raise VideoError(f"video {path} declares no frame count in its header; re-mux it (ffmpeg -c copy) to add one")
    try:
        bounds = clip_bounds(info.frame_count, info.fps)
    except ConfigError as err:
        raise VideoError(f"video {path}: {err}") from None
    settings["videos"][path.name] = {
        "frames": info.frame_count,
        "fps": info.fps,
        "clip_frames": clip_length(info.fps),
        "clips": [list(b) for b in bounds],
    }
    return info.fps, bounds, _clips(path, info.frame_count, bounds)


def _clips(path: Path, frame_count: int, bounds: list[tuple[int, int]]) -> Iterator[np.ndarray]:
    """The (T, H, W, 3) frames of each clip of `bounds`, keeping the last clip length of frames (the
    remainder clip overlaps the one before it)."""
    recent: deque[np.ndarray] = deque(maxlen=max(stop - start for start, stop in bounds))
    pending = iter(bounds)
    start, stop = next(pending)
    for index, frame in enumerate(stream_video(path)):
        if index >= frame_count:
            raise VideoError(f"video {path} decodes more frames than the {frame_count} its header declares")
        recent.append(frame)
        while stop == index + 1:
            yield np.stack(list(recent)[len(recent) - (stop - start):])
            start, stop = next(pending, (None, None))
