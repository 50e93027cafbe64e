"""BRISQUE (no-reference image quality, Mittal et al. 2012) from the `brisque` wheel, which ships its
LIVE-trained SVM: the offline substitute for MUSIQ. BRISQUE is 0 (best) .. 100 (worst), MUSIQ
0 (worst) .. 100 (best), so the substitute frame score is 100 - BRISQUE clipped to [0, 100]."""

from __future__ import annotations

import numpy as np
import torch

from . import BackboneInfo


def _brisque_model():
    # The `quality` extra; dimensions/imaging_quality.py reports the dimension missing without it.
    from brisque import BRISQUE

    class _NumpyTwoBRISQUE(BRISQUE):
        """brisque 0.2.0 keeps some features as 1-element arrays and float() of those fails on numpy 2;
        flatten them before its own min-max scaling."""

        def scale_features(self, features):
            flat = np.concatenate([np.ravel(np.asarray(f, dtype=np.float64)) for f in features])
            low = np.asarray(self.scale_params["min_"], dtype=np.float64)
            high = np.asarray(self.scale_params["max_"], dtype=np.float64)
            return -1 + 2.0 / (high - low) * (flat - low)

    return _NumpyTwoBRISQUE(url=False)


class BRISQUEQuality:
    info = BackboneInfo("brisque 0.2.0, 100 - BRISQUE (substitute for MUSIQ)", exact=False)

    def __init__(self) -> None:
        self._model = _brisque_model()

    def frame_scores(self, images: torch.Tensor) -> np.ndarray:
        """RGB (T, 3, H, W) in 0..1 -> (T,) scores in 0..100, higher is better (MUSIQ's direction)."""
        frames = (images * 255).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
        return np.clip(100.0 - np.array([self._model.score(frame) for frame in frames]), 0.0, 100.0)
