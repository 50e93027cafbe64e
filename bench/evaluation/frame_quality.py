"""Per-frame quality dimensions: aesthetic_quality (LAION head on CLIP L/14) and imaging_quality
(MUSIQ upstream; here the exact kernel only under eval=vbench, BRISQUE as the offline substitute)."""

from __future__ import annotations

import cv2
import numpy as np

MAX_SIDE = 512  # imaging_quality ('longer' mode): frames whose longer side exceeds 512 are resized to it


def limit_longer_side(frame: np.ndarray) -> np.ndarray:
    height, width = frame.shape[:2]
    if max(height, width) <= MAX_SIDE:
        return frame
    scale = MAX_SIDE / max(height, width)
    return cv2.resize(frame, (int(scale * width), int(scale * height)), interpolation=cv2.INTER_LINEAR)


class AestheticQuality:
    name = "aesthetic_quality"

    def __init__(self, model) -> None:
        self.model = model
        self.info = model.info

    def score_clip(self, frames: np.ndarray, fps: int) -> float:
        """Mean over frames of the LAION score / 10."""
        return float(np.mean(self.model.frame_scores(frames) / 10.0))


class ImagingQuality:
    name = "imaging_quality"

    def __init__(self, model) -> None:
        self.model = model
        self.info = model.info

    def score_clip(self, frames: np.ndarray, fps: int) -> float:
        """Mean over frames of the 0..100 frame score, / 100."""
        return float(np.mean([self.model.frame_score(limit_longer_side(f)) for f in frames]) / 100.0)
