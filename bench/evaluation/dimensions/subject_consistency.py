"""subject_consistency: VBench's first-and-previous cosine rule on DINO ViT-B/16 class tokens; no
honest substitute. VBench-Long's fast branch uses DINOv2 upstream (`dino` here, from weights_dir)."""

from __future__ import annotations

from ..consistency import build_consistency
from ..mapping_tables import SUBJECT_MAPPING
from .base import Dimension

DIMENSION = Dimension(
    name="subject_consistency",
    rule="mean_{i>=1} (max(0, cos(f_{i-1}, f_i)) + max(0, cos(f_0, f_i))) / 2 on DINO class tokens",
    vbench_backbone="dino-vitb16",
    weights=("dino_vitb16",),
    build=lambda builder: build_consistency(
        builder, "subject_consistency", "dino_vitb16", "DINO ViT-B/16", SUBJECT_MAPPING
    ),
    normalization=(0.1462, 1.0),
    fast_choices=("dino", "dinov2", "dreamsim"),  # upstream's --sb_clip2clip_feat_extractor
)
