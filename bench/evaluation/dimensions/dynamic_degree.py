"""dynamic_degree: a clip is dynamic (1) when enough of its sampled frame pairs move, by optical flow
(RAFT in VBench; OpenCV's DIS or Farnebäck flow as offline substitutes)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .base import Dimension

if TYPE_CHECKING:
    from ..builder import Builder

TOP_FRACTION = 0.05  # a pair is scored by the mean of its largest 5 % flow magnitudes


def sampling_interval(fps: int) -> int:
    """Every interval-th frame is kept, about 8 per second (Python's round, as upstream)."""
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

    def score_clip(self, frames: np.ndarray, fps: int) -> float | None:
        """1.0 if the clip is dynamic, else 0.0; None when fewer than two frames are sampled."""
        motions = self.pair_motions(frames, fps)
        if not motions:
            return None
        thres, count_num = dynamic_thresholds(frames.shape[1], frames.shape[2], len(motions) + 1)
        return float(sum(m > thres for m in motions) >= count_num)


def build(builder: Builder) -> DynamicDegree:
    path = builder.exact_path("raft", "dynamic_degree")
    if path is not None:
        from ..backbones.raft import RAFTFlow

        return DynamicDegree(builder.load(lambda: RAFTFlow(path, builder.device), path))
    from ..backbones.flow import DISFlow, FarnebackFlow

    return DynamicDegree({"dis": DISFlow, "farneback": FarnebackFlow}[builder.settings["flow"]]())


DIMENSION = Dimension(
    name="dynamic_degree",
    rule="frames every max(1, round(fps/8)); dynamic when round(4n/16) pairs move more than 6 min(H,W)/256 px",
    vbench_backbone="raft-things",
    weights=("raft",),
    build=build,
    normalization=(0.0, 1.0),
    quality_weight=0.5,
)
