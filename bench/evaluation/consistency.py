"""subject_consistency and background_consistency: VBench's first-and-previous cosine rule on each
clip (the slow branch), and VBench-Long's slow-fast fusion with the clip-to-clip (fast) branch."""

from __future__ import annotations

from bisect import bisect_left

import numpy as np
import torch

from .mapping_tables import BACKGROUND_MAPPING, SUBJECT_MAPPING

# vbench2_beta_long/configs/slow_fast_params.yaml: w_inclip_{sb,bg} and w_clip2clip_{sb,bg}.
FUSION_WEIGHTS = (0.5, 0.5)
MAPPING = {"subject_consistency": SUBJECT_MAPPING, "background_consistency": BACKGROUND_MAPPING}


def first_previous_similarity(features: torch.Tensor) -> float | None:
    """Mean over frames i >= 1 of (max(0, cos(f_{i-1}, f_i)) + max(0, cos(f_0, f_i))) / 2,
    for L2-normalised features (T, D); None for a single frame."""
    if len(features) < 2:
        return None
    previous = (features[1:] * features[:-1]).sum(-1).clamp(min=0)
    first = (features[1:] * features[:1]).sum(-1).clamp(min=0)
    return float(((previous + first) / 2).mean())


def map_fast_score(score: float, table: dict[float, float]) -> float:
    """Upstream's fuse_inclip_clip2clip lookup: linear between the two keys around `score`, the end
    values outside them."""
    keys = sorted(table)
    idx = bisect_left(keys, score)
    if idx == 0:
        return table[keys[0]]
    if idx == len(keys):
        return table[keys[-1]]
    k0, k1 = keys[idx - 1], keys[idx]
    return table[k0] + (table[k1] - table[k0]) * (score - k0) / (k1 - k0)


def fuse(slow: float, mapped_fast: float) -> float:
    """0.5 slow + 0.5 mapped fast; upstream keeps the slow score alone when the mapped score is 0."""
    if mapped_fast == 0.0:
        return slow
    return FUSION_WEIGHTS[0] * slow + FUSION_WEIGHTS[1] * mapped_fast


class Consistency:
    """One consistency dimension: `features` is the slow backbone, `fast` the optional fast one."""

    def __init__(self, name: str, features, fast=None) -> None:
        self.name, self.features, self.fast = name, features, fast
        self.info = features.info

    def score_clip(self, frames: np.ndarray, fps: int) -> float | None:
        return first_previous_similarity(self.features.features(frames))

    def fused(self, slow_video_score: float, first_frames: np.ndarray) -> dict:
        """The fast branch on the sequence of each clip's first frame, mapped and fused with the slow
        score of the video. A video of one clip has no fast branch (upstream skips it)."""
        fast = first_previous_similarity(self.fast.features(first_frames)) if len(first_frames) > 1 else None
        mapped = map_fast_score(fast, MAPPING[self.name]) if fast is not None else 0.0
        return {"slow": slow_video_score, "fast": fast, "mapped_fast": mapped, "score": fuse(slow_video_score, mapped)}
