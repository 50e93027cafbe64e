"""motion_magnitude: relaxbench's own metric, not VBench's. The continuous quantity dynamic_degree
thresholds: per sampled frame pair the mean of the largest 5 % flow magnitudes, divided by the frame
diagonal; per clip the mean over its pairs. Same flow backbone and frame sampling as dynamic_degree,
so a clip is "dynamic" exactly when enough of these pair values exceed 6 min(H,W) / (256 diagonal)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..backbones import BackboneInfo
from ..motion import PairMotions, pair_motions
from .base import Dimension

if TYPE_CHECKING:
    from ..builder import Builder


class MotionMagnitude:
    name = "motion_magnitude"

    def __init__(self, motions: PairMotions) -> None:
        self.motions = motions
        # never the VBench kernel, whichever flow it runs on
        self.info = BackboneInfo(f"relaxbench metric on {motions.info.name.removesuffix(' (VBench)')}", exact=False)

    def score_clip(self, frames: np.ndarray, fps: int) -> float | None:
        """Mean over sampled pairs of the top-5 % flow magnitude / sqrt(H^2 + W^2); None when fewer
        than two frames are sampled."""
        motions = self.motions(frames, fps)
        if not motions:
            return None
        return float(np.mean(motions) / np.hypot(frames.shape[1], frames.shape[2]))


def build(builder: Builder) -> MotionMagnitude:
    return MotionMagnitude(pair_motions(builder, "motion_magnitude"))


DIMENSION = Dimension(
    name="motion_magnitude",
    rule="frames every max(1, round(fps/8)); mean over pairs of the top-5 % flow magnitude / frame diagonal",
    vbench_backbone="none (relaxbench's own metric)",
    weights=("raft",),
    build=build,
    normalization=None,
    vbench=False,
)
