"""Per-frame quality dimensions: aesthetic_quality (LAION head on CLIP L/14) and imaging_quality
(MUSIQ-SPAQ, or BRISQUE as the offline substitute)."""

from __future__ import annotations

import numpy as np

from bench.evaluation.backbones.preprocess import limit_longer_side


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
        """Mean over frames of the 0..100 frame score (frames in 0..1, longer side limited to 512), / 100."""
        return float(np.mean(self.model.frame_scores(limit_longer_side(frames))) / 100.0)
