"""temporal_flickering: no network, the exact VBench formula on the decoded frames."""

from __future__ import annotations

import cv2
import numpy as np

from ..backbones import BackboneInfo
from .base import Dimension


class TemporalFlickering:
    name = "temporal_flickering"
    info = BackboneInfo("none (pixel formula, exact)", exact=True)

    def score_clip(self, frames: np.ndarray, fps: int) -> float | None:
        """(255 - mean over i of mean |F_i - F_{i+1}|) / 255, in float32 and in BGR order like
        upstream, so that the result matches vbench's to the last bit."""
        if len(frames) < 2:
            return None
        bgr = np.ascontiguousarray(frames[..., ::-1]).astype(np.float32)
        mae = np.array([np.mean(cv2.absdiff(a, b)) for a, b in zip(bgr[:-1], bgr[1:])])
        return (255.0 - np.mean(mae).item()) / 255.0


DIMENSION = Dimension(
    name="temporal_flickering",
    rule="(255 - mean_i mean |F_i - F_{i+1}|) / 255",
    vbench_backbone="none (pixel formula)",
    weights=(),
    build=lambda builder: TemporalFlickering(),
    normalization=(0.6293, 1.0),
)
