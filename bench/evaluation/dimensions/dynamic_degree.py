"""dynamic_degree: a clip is dynamic (1) when enough of its sampled frame pairs move, by optical flow
(RAFT in VBench; OpenCV's DIS or Farnebäck flow as offline substitutes)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..motion import PairMotions, pair_motions
from .base import Dimension

if TYPE_CHECKING:
    from ..builder import Builder


def dynamic_thresholds(height: int, width: int, sampled_frames: int) -> tuple[float, int]:
    """(thres, count_num): a clip is dynamic once count_num frame pairs move more than thres pixels."""
    return 6.0 * min(height, width) / 256.0, round(4 * sampled_frames / 16.0)


class DynamicDegree:
    name = "dynamic_degree"

    def __init__(self, motions: PairMotions) -> None:
        self.motions = motions
        self.info = motions.info

    def score_clip(self, frames: np.ndarray, fps: int) -> float | None:
        """1.0 if the clip is dynamic, else 0.0; None when fewer than two frames are sampled."""
        motions = self.motions(frames, fps)
        if not motions:
            return None
        thres, count_num = dynamic_thresholds(frames.shape[1], frames.shape[2], len(motions) + 1)
        return float(sum(m > thres for m in motions) >= count_num)


def build(builder: Builder) -> DynamicDegree:
    return DynamicDegree(pair_motions(builder, "dynamic_degree"))


DIMENSION = Dimension(
    name="dynamic_degree",
    rule="frames every max(1, round(fps/8)); dynamic when round(4n/16) pairs move more than 6 min(H,W)/256 px",
    vbench_backbone="raft-things",
    weights=("raft",),
    build=build,
    normalization=(0.0, 1.0),
    quality_weight=0.5,
)
