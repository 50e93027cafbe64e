"""aesthetic_quality: the LAION aesthetic head on CLIP ViT-L/14 embeddings; no honest substitute."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .base import Dimension, Missing

if TYPE_CHECKING:
    from ..builder import Builder


class AestheticQuality:
    name = "aesthetic_quality"

    def __init__(self, model) -> None:
        self.model = model
        self.info = model.info

    def score_clip(self, frames: np.ndarray, fps: int) -> float:
        """Mean over frames of the LAION score / 10."""
        return float(np.mean(self.model.frame_scores(frames) / 10.0))


def build(builder: Builder) -> AestheticQuality | Missing:
    keys = ("clip_vitl14", "laion_head")
    clip_path, head_path = (builder.exact_path(key, "aesthetic_quality") for key in keys)
    if clip_path is None or head_path is None:
        return builder.no_substitute("CLIP ViT-L/14 and the LAION head", keys)
    from ..backbones.clip import LaionAesthetic

    return AestheticQuality(
        builder.load(lambda: LaionAesthetic(clip_path, head_path, builder.device), clip_path, head_path)
    )


DIMENSION = Dimension(
    name="aesthetic_quality",
    rule="mean over frames of the LAION head on the normalised CLIP L/14 embedding / 10",
    vbench_backbone="clip-vitl14 + laion-aesthetic head",
    weights=("clip_vitl14", "laion_head"),
    build=build,
    normalization=(0.0, 1.0),
)
