"""VBench's motion rules: dynamic_degree (optical flow) and motion_smoothness (frame interpolation).
Each takes one clip of uint8 RGB frames (T, H, W, 3) and its integer frame rate."""

from __future__ import annotations

import cv2
import numpy as np

TOP_FRACTION = 0.05  # dynamic_degree scores a pair by the mean of its largest 5 % flow magnitudes


def sampling_interval(fps: int) -> int:
    """dynamic_degree keeps every interval-th frame, about 8 per second (Python's round, as upstream)."""
    return max(1, round(fps / 8))


def dynamic_thresholds(height: int, width: int, sampled_frames: int) -> tuple[float, int]:
    """(thres, count_num): a clip is dynamic once count_num frame pairs move more than thres pixels."""
    return 6.0 * min(height, width) / 256.0, round(4 * sampled_frames / 16.0)


def top_motion(flow: np.ndarray) -> float:
    """Mean of the int(h * w * 0.05) largest flow magnitudes of one (H, W, 2) flow field."""
    magnitude = np.hypot(flow[..., 0], flow[..., 1]).ravel()
    k = int(magnitude.size * TOP_FRACTION)
    if k == 0:  # fewer than 20 pixels: upstream's mean of nothing
        return float("nan")
    return float(np.partition(magnitude, magnitude.size - k)[-k:].mean())


class DynamicDegree:
    name = "dynamic_degree"

    def __init__(self, flow) -> None:
        self.flow = flow
        self.info = flow.info

    def pair_motions(self, frames: np.ndarray, fps: int) -> list[float]:
        sampled = frames[:: sampling_interval(fps)]
        return [top_motion(self.flow.flow(a, b)) for a, b in zip(sampled[:-1], sampled[1:])]

    def score_clip(self, frames: np.ndarray, fps: int) -> float:
        """1.0 if the clip is dynamic, else 0.0."""
        sampled = len(frames[:: sampling_interval(fps)])
        thres, count_num = dynamic_thresholds(frames.shape[1], frames.shape[2], sampled)
        motions = self.pair_motions(frames, fps)
        return float(bool(motions) and sum(m > thres for m in motions) >= count_num)


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Float RGB in [0, 1] to uint8 the way VBench's AMT wrapper does it (scale, clip, truncate)."""
    return np.clip(image * 255.0, 0, 255).astype(np.uint8)


class MotionSmoothness:
    name = "motion_smoothness"

    def __init__(self, interpolator) -> None:
        self.interpolator = interpolator
        self.info = interpolator.info

    def score_clip(self, frames: np.ndarray, fps: int) -> float | None:
        """(255 - mean |interpolated odd frame - real odd frame|) / 255, interpolating from the even frames."""
        evens, odds = frames[0::2], frames[1::2]
        if len(evens) < 2:
            return None
        predicted = [to_uint8(self.interpolator.midpoint(a, b)) for a, b in zip(evens[:-1], evens[1:])]
        diffs = [np.mean(cv2.absdiff(real, pred)) for real, pred in zip(odds, predicted)]
        return float((255.0 - np.mean(diffs)) / 255.0)
