"""VBench-Long's clip rule: fixed clips of int(fps) * 2 s frames, the remainder as one more full clip
that ends on the last frame, and a video shorter than one clip kept whole."""

from __future__ import annotations

from memory_policies import ConfigError

CLIP_SECONDS = 2


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
