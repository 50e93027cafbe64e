"""background_consistency: VBench's first-and-previous cosine rule on CLIP ViT-B/32 embeddings; no
honest substitute. VBench-Long's fast branch uses DreamSim upstream (`clip` here, from weights_dir)."""

from __future__ import annotations

from ..consistency import build_consistency
from ..mapping_tables import BACKGROUND_MAPPING
from .base import Dimension

DIMENSION = Dimension(
    name="background_consistency",
    rule="mean_{i>=1} (max(0, cos(f_{i-1}, f_i)) + max(0, cos(f_0, f_i))) / 2 on CLIP image embeddings",
    vbench_backbone="clip-vitb32",
    weights=("clip_vitb32",),
    build=lambda builder: build_consistency(
        builder, "background_consistency", "clip_vitb32", "CLIP ViT-B/32", BACKGROUND_MAPPING
    ),
    normalization=(0.2615, 1.0),
    fast_choices=("clip", "dreamsim"),  # upstream's --bg_clip2clip_feat_extractor
)
