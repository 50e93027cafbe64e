"""imaging_quality: the mean frame quality (MUSIQ-SPAQ in VBench; BRISQUE from the optional `brisque`
wheel as the offline substitute), frames with a longer side above 512 resized first."""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING

import numpy as np

from ..backbones.preprocess import limit_longer_side
from .base import Dimension, Missing

if TYPE_CHECKING:
    from ..builder import Builder

INSTALL_HINT = (
    "pip install 'relaxbench[quality]' (BRISQUE; needs a C compiler) or put MUSIQ-SPAQ's weights "
    "(pyiqa_model/musiq_spaq_ckpt-358bb6af.pth) in eval.weights_dir"
)


def brisque_available() -> bool:
    """The brisque wheel builds libsvm from source, so it is the `quality` extra, not a core dependency."""
    return importlib.util.find_spec("brisque") is not None


class ImagingQuality:
    name = "imaging_quality"

    def __init__(self, model) -> None:
        self.model = model
        self.info = model.info

    def score_clip(self, frames: np.ndarray, fps: int) -> float:
        """Mean over frames of the 0..100 frame score (frames in 0..1, longer side limited to 512), / 100."""
        return float(np.mean(self.model.frame_scores(limit_longer_side(frames))) / 100.0)


def build(builder: Builder) -> ImagingQuality | Missing:
    path = builder.exact_path("musiq_spaq", "imaging_quality")
    if path is not None:
        from ..backbones.musiq import MUSIQQuality

        return ImagingQuality(builder.load(lambda: MUSIQQuality(path, builder.device), path))
    if not brisque_available():
        return Missing(f"no score: the brisque wheel (eval.imaging=brisque) is not installed: {INSTALL_HINT}")
    from ..backbones.brisque import BRISQUEQuality

    return ImagingQuality(BRISQUEQuality())


DIMENSION = Dimension(
    name="imaging_quality",
    rule="mean frame score / 100, frames with a longer side above 512 resized to 512",
    vbench_backbone="musiq-spaq",
    weights=("musiq_spaq",),
    build=build,
    normalization=(0.0, 1.0),
    vbench_scale=100.0,  # MUSIQ is 0..100 per clip upstream
)
